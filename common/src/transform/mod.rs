//! Record transforms: the built-in cleaning steps, the trait for a user's own transform, and the
//! pipeline that runs the configured steps over each record.
//!
//! This module owns the [`Transform`] trait, the [`TransformRegistry`] an executor binary fills
//! with its own transforms, and [`Outcome`]; [`Pipeline`] (in `pipeline.rs`) compiles and runs the
//! `[transform]` steps, `json_steps.rs` holds the built-in JSON steps.
//!
//! # Steps
//!
//! Steps run in order. Each one emits the record (changed or not), filters it out, or rejects it
//! with a reason; a rejected record then follows `on_record_error`, and the executor writes the
//! reason into the dead-letter header.
//!
//! - `identity`: nothing. A pipeline of only `identity` steps is [`Pipeline::is_identity`].
//! - `parse_json`: the payload must be a JSON object. A tombstone (`record has no payload`),
//!   invalid JSON (`payload is not valid JSON: expected value at line 1 column 1`) or another
//!   JSON value (`payload is a JSON array, not an object`) is rejected. The JSON steps below parse
//!   the same way, with the same rejections, when no `parse_json` comes before them.
//! - `filter { field, equals | not_equals | exists }`: keeps the records whose field matches;
//!   exactly one condition must be set. `field` is a top-level name or a dotted path into nested
//!   objects (`"user.id"`); a top-level field whose name is exactly `field` (dots included) wins
//!   over the path. `equals` and `not_equals` take a string, integer, float or boolean; numbers
//!   compare by value (`3` equals `3.0`). A missing field never equals (so `not_equals` keeps
//!   it); a field set to `null` exists.
//! - `keep { fields }` / `drop { fields }`: keep only, or remove, these top-level fields.
//! - `rename { fields = { old = "new" } }`: all renames happen at once (`{ a = "b", b = "a" }`
//!   swaps); a missing old field is ignored; a new name replaces a field already called that;
//!   two old names with one new name is a build error.
//! - `key_from_field { field }`: the output key is the field's value (a name or dotted path, as in
//!   `filter`): a string's bytes without quotes, any other value as compact JSON text. A missing
//!   or `null` field rejects the record (`field "user" is missing`, `field "user" is null`)
//!   rather than silently writing records under no key.
//! - `user { name }`: the [`Transform`] registered under `name`, given the record as bytes.
//!
//! Topic, partition, offset, headers and timestamp pass through unchanged.
//!
//! # Cost
//!
//! An empty or identity pipeline moves the record through: nothing copied, nothing allocated.
//! Consecutive JSON steps share one parse into a `serde_json::Map` and one serialization at the end
//! (or before a `user` step); when none of them changed the object (only `parse_json`, `filter`,
//! `key_from_field` ran, or `drop` found nothing) the original payload bytes are kept, borrowed.
//! A re-serialized object is compact JSON with its fields in their original order (a renamed
//! field keeps its place; `serde_json` is built with `preserve_order`), and integers beyond 64
//! bits become floats (`serde_json`'s number model).
//! [`Outcome::Rejected`] carries the record exactly as it entered [`Pipeline::apply`]; keeping it
//! costs nothing for JSON steps and one clone of the record (its header `Vec`; borrowed bytes stay
//! borrowed) per `user` step.
//!
//! # A user transform
//!
//! ```
//! use weir_common::Record;
//! use weir_common::transform::{Outcome, Pipeline, Transform, TransformConfig, TransformRegistry};
//!
//! /// Upper-cases payloads; drops tombstones; rejects payloads that are not UTF-8.
//! struct Upper;
//!
//! impl Transform for Upper {
//!     fn apply<'a>(&self, mut record: Record<'a>) -> Result<Option<Record<'a>>, String> {
//!         let Some(payload) = record.payload.as_mut() else { return Ok(None) };
//!         if std::str::from_utf8(payload).is_err() {
//!             return Err("payload is not UTF-8".to_owned());
//!         }
//!         payload.to_mut().make_ascii_uppercase(); // copies the bytes only now
//!         Ok(Some(record))
//!     }
//! }
//!
//! // In the executor binary, before the executor starts:
//! let mut registry = TransformRegistry::new();
//! registry.register("upper", Upper);
//!
//! // In the job config: `steps = [..., { type = "user", name = "upper" }]`.
//! let config: TransformConfig = toml::from_str(
//!     r#"steps = [
//!         { type = "drop", fields = ["password"] },
//!         { type = "user", name = "upper" },
//!     ]"#,
//! )?;
//! let pipeline = Pipeline::build(&config, &registry)?;
//!
//! let input = Record::with_payload("logins", 0, 7, br#"{"name":"ann","password":"x"}"#);
//! match pipeline.apply(input) {
//!     Outcome::Emit(output) => assert_eq!(output.payload.as_deref(), Some(&br#"{"NAME":"ANN"}"#[..])),
//!     other => panic!("expected the record, got {other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod error;
mod json_steps;
mod pipeline;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use config::{OnRecordError, StepConfig, TransformConfig};
pub use error::BuildError;
pub use pipeline::Pipeline;

use crate::record::Record;

/// A user's own transform, registered by name in an executor binary and used in config as
/// `{ type = "user", name = "..." }`. One instance serves all tasks at once, hence `Sync`.
pub trait Transform: Send + Sync + 'static {
    /// `Ok(Some(record))` passes the record on (changed or not), `Ok(None)` drops it (filtered),
    /// `Err(reason)` rejects it: it then follows `on_record_error`, and the reason reaches the
    /// dead-letter header. Leave topic, partition and offset as they are.
    fn apply<'a>(&self, record: Record<'a>) -> Result<Option<Record<'a>>, String>;
}

/// The user transforms an executor binary offers, by name.
#[derive(Default, Clone)]
pub struct TransformRegistry {
    transforms: BTreeMap<String, Arc<dyn Transform>>,
}

impl TransformRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `transform` as `name`, replacing any transform registered under that name.
    pub fn register(&mut self, name: impl Into<String>, transform: impl Transform) -> &mut Self {
        self.transforms.insert(name.into(), Arc::new(transform));
        self
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Transform>> {
        self.transforms.get(name).cloned()
    }

    /// The registered names, in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.transforms.keys().map(String::as_str)
    }
}

impl fmt::Debug for TransformRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

/// What [`Pipeline::apply`] did with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Write this record to the sink.
    Emit(Record<'a>),
    /// A `filter` (or a user transform) dropped the record.
    Filtered,
    /// A step rejected the record; `record` is the original, exactly as it entered the pipeline.
    Rejected { record: Record<'a>, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;
    impl Transform for Nothing {
        fn apply<'a>(&self, record: Record<'a>) -> Result<Option<Record<'a>>, String> {
            Ok(Some(record))
        }
    }

    #[test]
    fn registry_finds_registered_transforms_by_name() {
        let mut registry = TransformRegistry::new();
        assert!(registry.get("nothing").is_none());
        registry.register("nothing", Nothing).register("again", Nothing);
        assert_eq!(registry.names().collect::<Vec<_>>(), ["again", "nothing"]);
        assert_eq!(format!("{registry:?}"), r#"{"again", "nothing"}"#);

        let transform = registry.get("nothing").expect("registered");
        let record = Record::with_payload("t", 0, 1, b"x");
        assert_eq!(transform.apply(record.clone()), Ok(Some(record)));
        assert!(registry.clone().get("again").is_some());
    }
}
