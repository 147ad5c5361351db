//! Runs one task: reads each range, passes every record through the transform, writes the
//! results to the sink and the rejects by `on_record_error`, then finishes the sink. Blocking
//! code (librdkafka polls), run on a blocking thread; records stream through one at a time.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rdkafka::message::{BorrowedMessage, Headers, Message};
use weir_common::protocol::{TaskId, TaskMetrics};
use weir_common::transform::{OnRecordError, Outcome};
use weir_common::{Header, OffsetRange, Record};

use crate::context::JobContext;
use crate::error::TaskError;
use crate::session::TaskControl;
use crate::sink::record_bytes;

pub fn run_task(
    ctx: &JobContext,
    task: TaskId,
    ranges: &[OffsetRange],
    control: &TaskControl,
) -> Result<TaskMetrics, TaskError> {
    let started = Instant::now();
    let mut metrics = TaskMetrics::default();
    let mut output = ctx.sink.begin(task, ranges)?;
    let mut dead_letters = ctx.dead_letters.as_ref().map(|d| d.begin());
    for range in ranges {
        ctx.consumers.read(range, &control.cancel, |message| {
            let record = record_of(message);
            metrics.records_in += 1;
            if metrics.records_in % 1024 == 0 {
                control.records_in.store(metrics.records_in, Ordering::Relaxed);
            }
            metrics.bytes_in += record_bytes(&record);
            match ctx.pipeline.apply(record) {
                Outcome::Emit(record) => {
                    metrics.bytes_out += output.write(&record)?;
                    metrics.records_out += 1;
                }
                Outcome::Filtered => metrics.records_filtered += 1,
                Outcome::Rejected { record, reason } => {
                    metrics.records_rejected += 1;
                    match (ctx.on_record_error, dead_letters.as_mut()) {
                        (OnRecordError::Skip, _) => {}
                        (OnRecordError::DeadLetter, Some(dead)) => dead.write(&record, &reason)?,
                        _ => {
                            return Err(TaskError::fatal(format!(
                                "record {}-{}@{} rejected: {reason} (transform.on_record_error = \"fail\")",
                                record.topic, record.partition, record.offset
                            )));
                        }
                    }
                }
            }
            Ok(())
        })?;
    }
    metrics.read_ms = started.elapsed().as_millis() as u64;
    let flushing = Instant::now();
    output.finish()?;
    if let Some(dead) = dead_letters {
        dead.finish()?;
    }
    metrics.flush_ms = flushing.elapsed().as_millis() as u64;
    metrics.total_ms = started.elapsed().as_millis() as u64;
    Ok(metrics)
}

/// A record borrowing the consumer's buffers: nothing is copied here.
fn record_of<'a>(m: &'a BorrowedMessage<'a>) -> Record<'a> {
    let headers = match m.headers() {
        Some(h) => h
            .iter()
            .map(|h| Header { key: Cow::Borrowed(h.key), value: h.value.map(Cow::Borrowed) })
            .collect(),
        None => Vec::new(),
    };
    Record {
        topic: m.topic(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(Cow::Borrowed),
        payload: m.payload().map(Cow::Borrowed),
        headers,
        timestamp_ms: m.timestamp().to_millis(),
    }
}
