//! `weir-faulty-executor`: the stock executor (same flags) with two user transforms that fail the
//! way buggy user code does, for the fault tests:
//!
//! - `panics`: panics on a record whose payload contains `panic-me`;
//! - `hangs`: blocks for ever on a record whose payload contains the value of `WEIR_HANG_ON`
//!   (when set), as a transform stuck on a dead file system of one host would.
//!
//! Every other record passes unchanged.

use std::time::Duration;

use weir_common::Record;
use weir_executor::{Transform, TransformRegistry};

struct Panics;

impl Transform for Panics {
    fn apply<'a>(&self, record: Record<'a>) -> Result<Option<Record<'a>>, String> {
        if contains(&record, b"panic-me") {
            panic!("the test transform met a poison record");
        }
        Ok(Some(record))
    }
}

struct Hangs {
    marker: Option<Vec<u8>>,
}

impl Transform for Hangs {
    fn apply<'a>(&self, record: Record<'a>) -> Result<Option<Record<'a>>, String> {
        if self.marker.as_deref().is_some_and(|m| contains(&record, m)) {
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Ok(Some(record))
    }
}

fn contains(record: &Record<'_>, marker: &[u8]) -> bool {
    record.payload.as_deref().is_some_and(|p| p.windows(marker.len()).any(|w| w == marker))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut registry = TransformRegistry::new();
    registry.register("panics", Panics);
    registry.register(
        "hangs",
        Hangs { marker: std::env::var("WEIR_HANG_ON").ok().map(String::into_bytes) },
    );
    weir_executor::cli::main(registry).await
}
