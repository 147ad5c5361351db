//! Shared by every Weir process: the job config, the record and its transforms, domain types and
//! their one conversion to and from `weir.v1`, errors, how to reach etcd, telemetry set-up and
//! the shutdown signal.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod control;
pub mod error;
pub mod etcd;
pub mod failure;
pub mod health;
pub mod kafka_refusal;
pub mod lanes;
pub mod limits;
pub mod offset_range;
pub mod protocol;
pub mod record;
pub mod retry;
pub mod shutdown;
pub mod telemetry;
pub mod transform;

pub use checkpoint::OffsetsCheckpoint;
pub use error::ProtoError;
pub use offset_range::{OffsetRange, TopicPartition};
pub use record::{Header, Record};
