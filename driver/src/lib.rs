//! The Weir driver: plans micro-batches of Kafka offset ranges, checkpoints them in etcd and
//! assigns them to executors over gRPC.
//!
//! Foundation stage: the process starts, logs, and stops cleanly on SIGTERM. Planning, the
//! checkpoint store and the scheduler arrive with the core-pipeline issue.

use std::future::Future;

/// Runs the driver until `shutdown` resolves.
pub async fn run(shutdown: impl Future<Output = &'static str>) -> anyhow::Result<()> {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "Driver started; no job planning in this build yet"
    );
    let signal = shutdown.await;
    tracing::info!(signal, "Driver stopping");
    Ok(())
}
