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

/// Refuses a stored value whose `format_version` is missing or newer than this build reads.
pub(crate) fn check_format_version(
    message: &'static str,
    found: u32,
    supported: u32,
) -> Result<(), ProtoError> {
    match found {
        0 => Err(ProtoError::InvalidField {
            message,
            field: "format_version",
            reason: "missing (0); not written by Weir".into(),
        }),
        v if v > supported => Err(ProtoError::NewerFormat { message, found: v, supported }),
        _ => Ok(()),
    }
}

/// Decodes protobuf bytes, naming the message on failure.
pub(crate) fn decode<M: prost::Message + Default>(
    message: &'static str,
    bytes: &[u8],
) -> Result<M, ProtoError> {
    M::decode(bytes).map_err(|e| ProtoError::Decode { message, reason: e.to_string() })
}
