//! Why a `[transform]` section cannot be compiled into a pipeline. Every error names the step as
//! `transform.steps[i] (type)`, the key, the value and what was expected.
//!
//! A build error is a config error: it is never retryable, the process should refuse to start.

/// A configured step that cannot be compiled. See [`crate::transform::Pipeline::build`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A `user` step names a transform the executor binary did not register.
    #[error(
        "transform.steps[{step}] (user): no transform registered as {name:?}; registered: {}",
        quoted_list(.registered)
    )]
    UnknownTransform { step: usize, name: String, registered: Vec<String> },

    /// A `filter` step sets none, or more than one, of `equals`, `not_equals`, `exists`.
    #[error(
        "transform.steps[{step}] (filter): set exactly one of equals, not_equals, exists; got {}",
        plain_list(.set)
    )]
    FilterCondition { step: usize, set: Vec<&'static str> },

    /// A `filter` compares with a value JSON cannot hold or that is not a scalar.
    #[error(
        "transform.steps[{step}] (filter): {key}: expected a string, integer, finite float or boolean, got {value} ({found})"
    )]
    FilterValue { step: usize, key: &'static str, value: String, found: &'static str },

    /// A `filter` or `key_from_field` step with `field = ""`.
    #[error(
        "transform.steps[{step}] ({kind}): field: expected a field name or a dotted path, got \"\""
    )]
    EmptyField { step: usize, kind: &'static str },

    /// A `rename` step maps two old names to the same new name.
    #[error(
        "transform.steps[{step}] (rename): fields: {first:?} and {second:?} both rename to {new:?}"
    )]
    RenameCollision { step: usize, first: String, second: String, new: String },
}

impl BuildError {
    /// The index of the offending step in `transform.steps`.
    pub fn step(&self) -> usize {
        match self {
            BuildError::UnknownTransform { step, .. }
            | BuildError::FilterCondition { step, .. }
            | BuildError::FilterValue { step, .. }
            | BuildError::EmptyField { step, .. }
            | BuildError::RenameCollision { step, .. } => *step,
        }
    }
}

/// `"a", "b"`, or `none`.
fn quoted_list(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names.iter().map(|name| format!("{name:?}")).collect::<Vec<_>>().join(", ")
}

/// `equals, exists`, or `none`.
fn plain_list(names: &[&str]) -> String {
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}
