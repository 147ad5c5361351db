//! The driver's HTTP endpoints: `/api/status` (JSON) and `/metrics` (Prometheus).

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::status::Status;

/// Serves on `listener` until `stop`; the returned task ends when the server has stopped.
pub fn serve(
    listener: tokio::net::TcpListener,
    status: watch::Receiver<Status>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let json = status.clone();
    let app = Router::new()
        .route("/api/status", get(move || async move { axum::Json(json.borrow().clone()) }))
        .route("/metrics", get(move || async move { status.borrow().metrics() }));
    tokio::spawn(async move {
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await });
        if let Err(e) = server.await {
            tracing::warn!(error = %e, "The status server stopped");
        }
    })
}

/// The status URL others should use: the bound address, or, when it listens on every
/// interface (`0.0.0.0`), the host executors are told to reach the gRPC service at.
pub fn public_url(bound: SocketAddr, grpc_url: &str) -> String {
    if !bound.ip().is_unspecified() {
        return format!("http://{bound}");
    }
    let host = grpc_url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.rsplit_once(':').map(|(host, _)| host))
        .unwrap_or("127.0.0.1");
    format!("http://{host}:{}", bound.port())
}

#[cfg(test)]
mod tests {
    use super::public_url;

    #[test]
    fn a_wildcard_listen_address_is_published_with_the_advertised_host() {
        let bound = "0.0.0.0:7071".parse().unwrap();
        assert_eq!(public_url(bound, "http://driver-1:7070"), "http://driver-1:7071");
        let bound = "127.0.0.1:9000".parse().unwrap();
        assert_eq!(public_url(bound, "http://driver-1:7070"), "http://127.0.0.1:9000");
    }
}
