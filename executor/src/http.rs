//! The executor's HTTP endpoints (`--http-listen`): `/healthz` (the process runs), `/readyz`
//! (attached to a driver, or why not) and `/metrics` (Prometheus). Served from start to exit,
//! whether or not a driver is found, so an orchestrator sees a live process that is not ready
//! rather than no answer. The handlers only read: readiness from the attach loop's `watch`,
//! numbers from the shared metrics.

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::{CONTENT_TYPE, ExecutorMetrics};
use crate::readiness::Readiness;

/// Serves on `listener` until `stop`; the returned task ends when the server has stopped.
pub fn serve(
    listener: tokio::net::TcpListener,
    readiness: watch::Receiver<Readiness>,
    metrics: Arc<ExecutorMetrics>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                let (code, text) = readiness.borrow().answer();
                let code = StatusCode::from_u16(code).expect("readiness answers a valid status");
                (code, text)
            }),
        )
        .route(
            "/metrics",
            get(move || async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.encode()) }),
        );
    tokio::spawn(async move {
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await });
        if let Err(e) = server.await {
            tracing::warn!(error = %e, "The health and metrics server stopped");
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::watch;
    use tokio_util::sync::CancellationToken;
    use weir_common::health::get;

    use super::serve;
    use crate::metrics::ExecutorMetrics;
    use crate::readiness::Readiness;

    #[tokio::test]
    async fn the_endpoints_answer_from_the_shared_state() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = listener.local_addr().unwrap().to_string();
        let (readiness, watched) = watch::channel(Readiness::Looking);
        let metrics = Arc::new(ExecutorMetrics::new("j", "e"));
        let stop = CancellationToken::new();
        let server = serve(listener, watched, metrics.clone(), stop.clone());
        let limit = Duration::from_secs(5);

        assert_eq!(get(&base, "/healthz", limit).await.unwrap(), (200, "ok".into()));
        let (code, text) = get(&base, "/readyz", limit).await.unwrap();
        assert_eq!((code, text.trim()), (503, "not attached: looking for the leader"));

        readiness.send_replace(Readiness::Attached { url: "http://d:7070".into(), generation: 2 });
        metrics.set_slots(3);
        let (code, text) = get(&base, "/readyz", limit).await.unwrap();
        assert_eq!((code, text.trim()), (200, "attached to driver http://d:7070 (generation 2)"));
        let (code, text) = get(&base, "/metrics", limit).await.unwrap();
        assert_eq!(code, 200);
        assert!(text.contains("\nweir_executor_slots{job=\"j\",executor=\"e\"} 3\n"), "{text}");

        assert_eq!(get(&base, "/nothing", limit).await.unwrap().0, 404);
        stop.cancel();
        tokio::time::timeout(limit, server).await.expect("stops on cancel").unwrap();
    }
}
