//! The Weir executor: attaches to the job's leading driver, runs the tasks it assigns (read an
//! offset range, transform, write to the sink), reports them, and follows the leader when the
//! driver changes.
//!
//! `run` takes the transforms the binary registers, so a user builds an executor with their own
//! transform by calling it from their own `main` (see `examples/custom_transform.rs`).

pub mod cli;
mod context;
mod error;
mod kafka;
mod session;
mod sink;
mod task;

use std::future::Future;
use std::time::Duration;

use tracing::{Instrument, info, info_span};
use weir_common::retry::Backoff;
pub use weir_common::transform::{Transform, TransformRegistry};

pub use error::ExecutorError;
pub use session::ExecutorOptions;

use crate::session::{Attacher, SessionEnd};

/// Between driver sessions. The loop in `run` waits with these delays itself rather than through
/// `common::retry`: a session is not an operation that succeeds once but runs until the driver
/// goes, and the wait must end at once on a stop.
const FIND_DRIVER: Backoff = Backoff {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(3),
    give_up_after: None,
};

/// Runs the executor until `shutdown` resolves; then it finishes its running tasks, reports
/// them and returns.
pub async fn run(
    options: ExecutorOptions,
    transforms: TransformRegistry,
    shutdown: impl Future<Output = &'static str> + Send + 'static,
) -> Result<(), ExecutorError> {
    let span = info_span!("executor", job = %options.job, executor = %options.id);
    let stop = weir_common::shutdown::cancel_on(shutdown);
    async move {
        info!(slots = options.slots, "Executor started");
        let mut attacher = Attacher::new(options, transforms);
        let mut attempt = 0;
        loop {
            let found = tokio::select! {
                found = attacher.find_driver() => found,
                _ = stop.cancelled() => return Ok(()),
            };
            let end = match found {
                Ok(url) => attacher.session(&url, &stop).await,
                Err(e) => SessionEnd::Lost(e.to_string()),
            };
            match end {
                SessionEnd::Stopped => return Ok(()),
                SessionEnd::Lost(reason) => {
                    attempt += 1;
                    let delay = FIND_DRIVER.delay(attempt.min(5));
                    // Waiting for a driver is normal at start and during a failover: log it
                    // once per streak, then quietly.
                    if attempt == 1 {
                        info!(%reason, "No driver session; looking for the leader");
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
    .instrument(span)
    .await
}
