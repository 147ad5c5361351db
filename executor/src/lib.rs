//! The Weir executor: attaches to the job's leading driver, runs the tasks it assigns (read an
//! offset range, transform, write to the sink), reports them, and follows the leader when the
//! driver changes.
//!
//! `run` takes the transforms the binary registers, so a user builds an executor with their own
//! transform by calling it from their own `main` (see `examples/custom_transform.rs`).
//! `run_with_http` also serves `/healthz`, `/readyz` and `/metrics` for the whole run.

pub mod cli;
mod context;
mod error;
mod http;
mod kafka;
mod metrics;
mod readiness;
mod session;
mod sink;
mod task;
mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span};
use weir_common::retry::{Backoff, Retryable};
pub use weir_common::transform::{Transform, TransformRegistry};

pub use error::ExecutorError;
pub use session::ExecutorOptions;

use crate::metrics::ExecutorMetrics;
use crate::readiness::Readiness;
use crate::session::{Attacher, SessionEnd};

/// Between driver sessions. The loop in `run` waits with these delays itself rather than through
/// `common::retry`: a session is not an operation that succeeds once but runs until the driver
/// goes, and the wait must end at once on a stop.
const FIND_DRIVER: Backoff = Backoff {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(3),
    give_up_after: None,
};

/// How long a stopped executor lets its HTTP server finish the requests it is answering.
const HTTP_DRAIN: Duration = Duration::from_secs(2);

/// Runs the executor until `shutdown` resolves; then it finishes its running tasks, reports
/// them and returns.
pub async fn run(
    options: ExecutorOptions,
    transforms: TransformRegistry,
    shutdown: impl Future<Output = &'static str> + Send + 'static,
) -> Result<(), ExecutorError> {
    run_with_http(options, transforms, None, shutdown).await
}

/// [`run`], serving `/healthz`, `/readyz` and `/metrics` on `http` (when given) from the start,
/// before any driver is found, until the executor has stopped.
pub async fn run_with_http(
    options: ExecutorOptions,
    transforms: TransformRegistry,
    http: Option<TcpListener>,
    shutdown: impl Future<Output = &'static str> + Send + 'static,
) -> Result<(), ExecutorError> {
    let span = info_span!("executor", job = %options.job, executor = %options.id);
    let stop = weir_common::shutdown::cancel_on(shutdown);
    async move {
        info!(slots = options.slots, "Executor started");
        let metrics = Arc::new(ExecutorMetrics::new(&options.job, &options.id));
        let (readiness, watched) = watch::channel(Readiness::Looking);
        // Its own token: the server keeps answering while a stopping executor finishes its tasks.
        let http_stop = CancellationToken::new();
        let server = http.map(|listener| {
            if let Ok(address) = listener.local_addr() {
                info!(%address, "Serving /healthz, /readyz and /metrics");
            }
            http::serve(listener, watched, metrics.clone(), http_stop.clone())
        });
        let attacher = Attacher::new(options, transforms, metrics, readiness);
        let result = attach_until_stopped(attacher, &stop).await;
        http_stop.cancel();
        if let Some(server) = server {
            let _ = tokio::time::timeout(HTTP_DRAIN, server).await;
        }
        result
    }
    .instrument(span)
    .await
}

/// How much longer than the driver's `executor_timeout` a refused executor keeps trying before
/// it concludes that another live process has its id.
const DUPLICATE_GRACE: Duration = Duration::from_secs(2);

/// The attach loop: one driver session after another until `stop`.
async fn attach_until_stopped(
    mut attacher: Attacher,
    stop: &CancellationToken,
) -> Result<(), ExecutorError> {
    let mut attempt = 0;
    // The reason last logged: a new one is logged even within a streak.
    let mut last_reason: Option<String> = None;
    // Since when the driver refuses this executor's id (another process has it).
    let mut refused_since: Option<tokio::time::Instant> = None;
    loop {
        let found = tokio::select! {
            found = attacher.find_driver() => found,
            _ = stop.cancelled() => return Ok(()),
        };
        let end = match found {
            Ok(url) => attacher.session(&url, stop).await,
            // Refused credentials or permissions: no wait mends them.
            Err(e) if !e.is_retryable() => return Err(e),
            Err(e) => SessionEnd::Lost(e.to_string()),
        };
        if !matches!(end, SessionEnd::DuplicateId { .. }) {
            refused_since = None;
        }
        match end {
            SessionEnd::Stopped => return Ok(()),
            SessionEnd::DuplicateId { message, retry_for } => {
                // A process that died moments ago may still hold the id until the driver
                // notices (its executor_timeout); a refusal that outlasts that is a duplicate.
                let since = *refused_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() > retry_for + DUPLICATE_GRACE {
                    return Err(ExecutorError::DuplicateId(message));
                }
                attacher.set_readiness(Readiness::Detached { reason: message.clone() });
                tracing::warn!(%message, "Refused; trying again until the driver's executor_timeout has passed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.cancelled() => return Ok(()),
                }
            }
            SessionEnd::Lost(reason) => {
                attacher.set_readiness(Readiness::Detached { reason: reason.clone() });
                attempt += 1;
                let delay = FIND_DRIVER.delay(attempt.min(5));
                // Waiting for a driver is normal at start and during a failover: log it
                // once per streak, then quietly; but every new reason (a refusal after "no
                // leader yet") once.
                if attempt == 1 || last_reason.as_deref() != Some(reason.as_str()) {
                    info!(%reason, "No driver session; looking for the leader");
                    last_reason = Some(reason.clone());
                } else {
                    tracing::debug!(%reason, attempt, "Still looking for the leader");
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => return Ok(()),
                }
            }
        }
        if stop.is_cancelled() {
            return Ok(());
        }
    }
}
