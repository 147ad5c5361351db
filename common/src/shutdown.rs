//! The process-level shutdown signal. `run` functions take a shutdown future instead of
//! listening for signals themselves, so tests decide when an in-process driver or executor stops.

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal as listen};

/// Installs SIGTERM and SIGINT handlers *now* and returns a future that resolves on the first of
/// them with the signal's name.
///
/// The handlers are installed before this returns, not on first poll: a supervisor that sends
/// SIGTERM right after the process says it started must get a clean stop, not a default death.
/// Call it inside the runtime, before the process announces that it is up.
pub fn signal() -> impl Future<Output = &'static str> {
    let term = listen(SignalKind::terminate());
    let int = listen(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "Cannot install signal handlers; stop this process with SIGKILL");
                std::future::pending().await
            }
        }
    }
}

/// A token cancelled when `shutdown` resolves, logging the signal: the root of a process's
/// cancellation tree. Must be called inside the runtime.
pub fn cancel_on(
    shutdown: impl Future<Output = &'static str> + Send + 'static,
) -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let on_signal = token.clone();
    tokio::spawn(async move {
        let signal = shutdown.await;
        tracing::info!(signal, "Shutdown requested");
        on_signal.cancel();
    });
    token
}
