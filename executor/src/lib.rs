//! The Weir executor: reads the offset ranges the driver assigns, runs the transform and writes
//! the results to the sink.
//!
//! Foundation stage: the process starts, logs, and stops cleanly on SIGTERM. Attaching to a
//! driver, the range reader and the sinks arrive with the core-pipeline issue.

use std::future::Future;

/// Runs the executor until `shutdown` resolves.
pub async fn run(shutdown: impl Future<Output = &'static str>) -> anyhow::Result<()> {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "Executor started; no task execution in this build yet"
    );
    let signal = shutdown.await;
    tracing::info!(signal, "Executor stopping");
    Ok(())
}
