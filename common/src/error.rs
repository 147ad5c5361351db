//! Errors shared across crates. Each error says whether retrying can help, so one retry
//! function (and one mapping to gRPC status) can decide for all of them.

/// Whether the operation that failed may succeed if tried again unchanged.
pub trait Retryable {
    fn is_retryable(&self) -> bool;
}

/// A protobuf value that decodes but does not make sense as a Weir domain value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error("cannot decode {message}: {reason}")]
    Decode { message: &'static str, reason: String },
    #[error("{message}.{field}: {reason}")]
    InvalidField { message: &'static str, field: &'static str, reason: String },
    #[error(
        "{message} has format_version {found}, newer than this Weir understands ({supported}); upgrade Weir before reading this checkpoint"
    )]
    NewerFormat { message: &'static str, found: u32, supported: u32 },
}

impl Retryable for ProtoError {
    /// Bad bytes stay bad: never retry.
    fn is_retryable(&self) -> bool {
        false
    }
}
