//! The driver's HTTP endpoints: `/api/status` (JSON) and `/metrics` (Prometheus).

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::DriverError;
use crate::status::Status;

/// Binds `addr` and serves until `stop`; the returned task ends when the server has stopped.
pub async fn serve(
    addr: SocketAddr,
    status: watch::Receiver<Status>,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, DriverError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DriverError::Listen { what: "driver.http_listen", addr, source })?;
    let json = status.clone();
    let app = Router::new()
        .route("/api/status", get(move || async move { axum::Json(json.borrow().clone()) }))
        .route("/metrics", get(move || async move { status.borrow().metrics() }));
    Ok(tokio::spawn(async move {
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await });
        if let Err(e) = server.await {
            tracing::warn!(error = %e, "The status server stopped");
        }
    }))
}
