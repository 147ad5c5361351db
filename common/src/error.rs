//! Errors shared across crates, with fields rather than pre-formatted strings.

/// A protobuf value that cannot be read as a Weir domain value: bad bytes, a bad field, or a
/// format newer than this build.
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
