//! An executor with your own transform: implement [`Transform`], register it under a name, and
//! start the executor with that registry. Everything else is the stock `weir-executor`.
//!
//! A job uses the transform by name in its config:
//!
//! ```toml
//! [transform]
//! steps = [{ type = "user", name = "redact" }]
//! ```
//!
//! Build and run it in place of `weir-executor`, with the same flags:
//!
//! ```text
//! cargo build -p weir-executor --examples
//! target/debug/examples/custom_transform --job clean-events --etcd http://127.0.0.1:2379
//! ```

use weir_common::Record;
use weir_executor::{Transform, TransformRegistry};

/// Replaces every ASCII digit of the payload with `#` (account numbers, phone numbers...).
/// Keys, headers and tombstones pass through unchanged.
struct Redact;

impl Transform for Redact {
    fn apply<'a>(&self, mut record: Record<'a>) -> Result<Option<Record<'a>>, String> {
        if let Some(payload) = record.payload.as_mut() {
            // The payload borrows the consumer's buffer; `to_mut` copies it only when we change
            // it, so records without digits cost nothing.
            if payload.iter().any(u8::is_ascii_digit) {
                for byte in payload.to_mut().iter_mut().filter(|b| b.is_ascii_digit()) {
                    *byte = b'#';
                }
            }
        }
        // `Ok(None)` would drop the record; `Err(reason)` would reject it (see on_record_error).
        Ok(Some(record))
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // The transforms this executor offers, by the name a job config uses.
    let mut registry = TransformRegistry::new();
    registry.register("redact", Redact);
    // The stock executor's flags (--job, --etcd, --prefix, --slots, --id, --driver); runs until
    // SIGTERM or Ctrl-C, then finishes its running tasks and returns.
    weir_executor::cli::main(registry).await
}
