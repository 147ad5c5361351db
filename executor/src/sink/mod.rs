//! Sinks: where a task's output goes. A task opens a [`TaskOutput`], writes its records, and
//! finishes it; only a successful `finish` makes the output durable, so the task is reported done
//! only after it. The scope of one `TaskOutput` is one task, the unit a transactional sink will
//! commit atomically.

pub mod file;
pub mod kafka;
pub mod stdout;

use weir_common::protocol::TaskId;
use weir_common::{OffsetRange, Record};

use crate::error::TaskError;

pub trait Sink: Send + Sync {
    fn begin(
        &self,
        task: TaskId,
        ranges: &[OffsetRange],
    ) -> Result<Box<dyn TaskOutput + '_>, TaskError>;
}

pub trait TaskOutput {
    /// Writes one record; returns the bytes it wrote (for metrics).
    fn write(&mut self, record: &Record<'_>) -> Result<u64, TaskError>;
    /// Makes everything written durable.
    fn finish(self: Box<Self>) -> Result<(), TaskError>;
}

pub fn record_bytes(record: &Record<'_>) -> u64 {
    (record.key.as_deref().map_or(0, <[u8]>::len)
        + record.payload.as_deref().map_or(0, <[u8]>::len)) as u64
}
