//! Shared by every Weir process: domain types and their one conversion to and from `weir.v1`,
//! errors, telemetry set-up and the shutdown signal.

pub mod checkpoint;
pub mod error;
pub mod offset_range;
pub mod shutdown;
pub mod telemetry;

pub use checkpoint::OffsetsCheckpoint;
pub use error::ProtoError;
pub use offset_range::{OffsetRange, TopicPartition};
