//! The driver's HTTP endpoints, served from the start (a standby answers too):
//! `/` (the status page), `/batches/{id}` (a batch's detail), `/api/status` (JSON),
//! `/metrics` (Prometheus), `/healthz` (the process is alive) and `/readyz` (it leads and plans,
//! or stands by ready to take over).

use std::net::SocketAddr;
use std::sync::Arc;
use weir_common::config::secrets::same_secret;

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::DriverMetrics;
use crate::status::{Role, Status, page};

/// Serves on `listener` until `stop`; the returned task ends when the server has stopped.
pub fn serve(
    listener: tokio::net::TcpListener,
    status: watch::Receiver<Status>,
    metrics: Arc<DriverMetrics>,
    token: Option<String>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (home, detail, json, ready) = (status.clone(), status.clone(), status.clone(), status);
    let guarded = Router::new()
        .route("/", get(move || async move { Html(page::render(&home.borrow())) }))
        .route(
            "/batches/{id}",
            get(move |Path(id): Path<u64>| async move {
                match page::batch(&detail.borrow(), id) {
                    Some(html) => Html(html).into_response(),
                    None => (StatusCode::NOT_FOUND, format!("batch {id} is not in the history"))
                        .into_response(),
                }
            }),
        )
        .route("/api/status", get(move || async move { axum::Json(json.borrow().clone()) }))
        .route(
            "/metrics",
            get(move || async move {
                let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                ([(header::CONTENT_TYPE, content_type)], metrics.encode())
            }),
        );
    // With `driver.http_token`, everything but health needs the token (health checks carry none).
    let guarded = match token {
        Some(token) => {
            let expected: Arc<str> = format!("Bearer {token}").into();
            guarded.layer(axum::middleware::from_fn(move |request, next| {
                require(expected.clone(), request, next)
            }))
        }
        None => guarded,
    };
    let app = guarded
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(move || async move { readiness(&ready.borrow()) }));
    tokio::spawn(async move {
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await });
        if let Err(e) = server.await {
            tracing::warn!(error = %e, "The status server stopped");
        }
    })
}

/// Passes a request that carries the token on; answers any other with 401.
async fn require(
    expected: Arc<str>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let given = request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if given.is_some_and(|given| same_secret(given, expected.as_bytes())) {
        return next.run(request).await;
    }
    let challenge = [(header::WWW_AUTHENTICATE, "Bearer")];
    (StatusCode::UNAUTHORIZED, challenge, "this needs driver.http_token as a bearer token\n")
        .into_response()
}

/// 200 with what the driver does when it is ready, 503 with why not.
fn readiness(status: &Status) -> Response {
    let text = match (status.role, &status.leader) {
        (Role::Leader, _) => {
            format!("leading job {} (generation {})", status.job, status.generation)
        }
        (Role::Standby, Some(l)) => {
            format!("standby: driver {} leads at {}", l.driver_id, l.address)
        }
        (Role::Standby, None) => "standby: campaigning".to_owned(),
        (Role::Starting, _) => "starting: reaching etcd".to_owned(),
    };
    if status.ready {
        (StatusCode::OK, text).into_response()
    } else {
        let why = status.waiting_for.as_deref().unwrap_or("not ready yet");
        (StatusCode::SERVICE_UNAVAILABLE, format!("{text}; {why}")).into_response()
    }
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
