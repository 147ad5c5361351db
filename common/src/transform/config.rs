//! The `[transform]` section of a job config: the built-in steps in order and what happens to a
//! record a step rejects.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[transform]`. Without the section, records pass through unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// Applied in order to every record.
    #[serde(default)]
    pub steps: Vec<StepConfig>,
    /// What to do with a record a step rejects (for example a payload that is not a JSON object).
    #[serde(default)]
    pub on_record_error: OnRecordError,
    /// Where rejected records go when `on_record_error = "dead-letter"`; the reason travels in the
    /// `weir.error` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnRecordError {
    /// The task fails and is not retried; the job stops with the record's position and reason.
    #[default]
    Fail,
    /// The record is counted and dropped.
    Skip,
    /// The record goes, unchanged, to `dead_letter_topic` with the reason in a header.
    DeadLetter,
}

/// One built-in step, written as an inline table: `{ type = "filter", field = "level", equals = "error" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepConfig {
    /// Records unchanged.
    Identity,
    /// Parse the payload as a JSON object; anything else is rejected.
    ParseJson,
    /// Keep only records whose field matches. Exactly one of `equals`, `not_equals`, `exists`.
    Filter {
        field: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        equals: Option<toml::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_equals: Option<toml::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exists: Option<bool>,
    },
    /// Keep only these top-level fields.
    Keep { fields: Vec<String> },
    /// Remove these top-level fields.
    Drop { fields: Vec<String> },
    /// Rename top-level fields: `{ old = "new" }`.
    Rename { fields: BTreeMap<String, String> },
    /// Set the output key to this field's value (strings as-is, other values as JSON text).
    KeyFromField { field: String },
    /// A transform the executor binary registered under `name` (see `TransformRegistry`).
    User { name: String },
}
