//! Logging set-up for every Weir binary: `tracing` to stderr, filtered by `WEIR_LOG`
//! (`RUST_LOG` syntax, default `info`), JSON lines when `WEIR_LOG_FORMAT=json`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init() {
    let filter = EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("WEIR_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in log files.
        .with_ansi(std::io::stderr().is_terminal());
    // try_init: a second call (tests starting two components in one process) keeps the first.
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
