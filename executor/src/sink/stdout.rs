//! The stdout sink: each record's payload on its own line, flushed when the task finishes. For
//! trying a job out; logs go to stderr, so they never mix with the output.

use std::io::Write;

use weir_common::protocol::TaskId;
use weir_common::{OffsetRange, Record};

use super::dead_letters::no_dead_letter_topic;
use super::{Begun, Sink, TaskOutput};
use crate::error::TaskError;

pub struct StdoutSink;

impl Sink for StdoutSink {
    fn begin(&self, _task: TaskId, _ranges: &[OffsetRange]) -> Result<Begun<'_>, TaskError> {
        Ok(Begun::Write(Box::new(StdoutOutput { buffer: Vec::new() })))
    }
}

/// Buffers the task's lines so that concurrent tasks never interleave within a line.
struct StdoutOutput {
    buffer: Vec<u8>,
}

const FLUSH_AT: usize = 1 << 20;

impl TaskOutput for StdoutOutput {
    fn write(&mut self, record: &Record<'_>) -> Result<u64, TaskError> {
        let payload = record.payload.as_deref().unwrap_or_default();
        self.buffer.extend_from_slice(payload);
        self.buffer.push(b'\n');
        if self.buffer.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(payload.len() as u64 + 1)
    }

    fn write_dead_letter(&mut self, record: &Record<'_>, _reason: &str) -> Result<(), TaskError> {
        Err(no_dead_letter_topic(record))
    }

    fn finish(mut self: Box<Self>) -> Result<(), TaskError> {
        self.flush()
    }
}

impl StdoutOutput {
    fn flush(&mut self) -> Result<(), TaskError> {
        let mut out = std::io::stdout().lock();
        out.write_all(&self.buffer)
            .and_then(|()| out.flush())
            .map_err(|e| TaskError::transient(format!("writing to stdout: {e}")))?;
        self.buffer.clear();
        Ok(())
    }
}
