//! Sinks: where a task's output goes. A task opens a [`TaskOutput`], writes its records (and its
//! dead letters), and finishes it; only a successful `finish` makes the output durable, so the
//! task is reported done only after it. The scope of one `TaskOutput` is one task: the unit the
//! transactional sink commits atomically, with the task's input offsets.

pub mod admission;
pub mod dead_letters;
pub mod file;
pub mod kafka;
pub mod progress;
pub mod stdout;
pub mod transactional;

use std::collections::BTreeMap;

use weir_common::protocol::TaskId;
use weir_common::{OffsetRange, Record, TopicPartition};

use crate::error::TaskError;

pub trait Sink: Send + Sync {
    /// Opens the task's output; [`Begun::AlreadyCommitted`] when the sink knows the task's output
    /// is already durable (an exactly-once replay), so the task must not run again.
    fn begin(&self, task: TaskId, ranges: &[OffsetRange]) -> Result<Begun<'_>, TaskError>;

    /// The executor lost its driver session: whatever it held for its lanes may now belong to
    /// another executor, so forget it (the transactional sink drops its lane producers).
    fn forget_lanes(&self) {}

    /// Messages waiting in the queues of the producers the sink owns itself (the exactly-once
    /// sink's lane producers), for the metrics. The executor's shared producers are counted by
    /// the job context, once each.
    fn queued_messages(&self) -> u64 {
        0
    }
}

pub enum Begun<'a> {
    Write(Box<dyn TaskOutput + 'a>),
    /// Part of the task is already durable (an exactly-once task that committed in steps before
    /// it failed): write from these offsets on, per partition.
    Resume(Box<dyn TaskOutput + 'a>, BTreeMap<TopicPartition, i64>),
    AlreadyCommitted,
}

pub trait TaskOutput {
    /// Writes one record; returns the bytes it wrote (for metrics).
    fn write(&mut self, record: &Record<'_>) -> Result<u64, TaskError>;
    /// Writes a rejected record, unchanged, with the reason, to the dead-letter topic (shaped by
    /// `dead_letters::fit` when the topic could not take it as it is).
    fn write_dead_letter(&mut self, record: &Record<'_>, reason: &str) -> Result<(), TaskError>;
    /// Makes everything written durable. An output dropped without `finish` leaves nothing that
    /// readers of committed output can see, where the sink can promise that (transactions).
    fn finish(self: Box<Self>) -> Result<(), TaskError>;
}

pub fn record_bytes(record: &Record<'_>) -> u64 {
    (record.key.as_deref().map_or(0, <[u8]>::len)
        + record.payload.as_deref().map_or(0, <[u8]>::len)) as u64
}
