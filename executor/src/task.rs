//! Runs one task: reads each range, passes every record through the transform, writes the
//! results to the sink and the rejects by `on_record_error`, then finishes the sink. A record the
//! sink's topic would refuse (too large, a timestamp out of its bounds, a partition it does not
//! have: `sink/admission.rs`) is a reject too, on the same path: it is never written, so it
//! cannot fail the task on every attempt. A task the sink finds already committed (an
//! exactly-once replay) reads and writes nothing. Blocking code (librdkafka polls), run on a
//! blocking thread; records stream through one at a time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::{debug, info_span, warn};
use weir_common::protocol::{TaskId, TaskMetrics};
use weir_common::transform::{OnRecordError, Outcome};
use weir_common::{OffsetRange, Record, TopicPartition};

use crate::context::JobContext;
use crate::error::TaskError;
use crate::sink::{Begun, TaskOutput, record_bytes};

/// The ranges still to read when part of the task is durable: each from where `from` says
/// (never outside the range); ranges already read to their end are left out.
fn resume_ranges(ranges: &[OffsetRange], from: &BTreeMap<TopicPartition, i64>) -> Vec<OffsetRange> {
    ranges
        .iter()
        .filter_map(|r| {
            let start = from.get(r.topic_partition()).copied().unwrap_or(r.from());
            let start = start.clamp(r.from(), r.until());
            (start < r.until())
                .then(|| OffsetRange::new(r.topic_partition().clone(), start, r.until()))?
                .ok()
        })
        .collect()
}

/// A finished task: its id and how it ended.
pub type Done = (TaskId, Result<TaskMetrics, TaskError>);

/// What the session shares with a running task: a cancel flag it polls and the progress it
/// reports with every heartbeat.
#[derive(Default)]
pub struct TaskControl {
    pub cancel: AtomicBool,
    /// Records read so far; updated every 1024 records, not per record.
    pub records_in: AtomicU64,
    /// The most records the task's ranges hold (`until - from`, summed).
    pub records_to_read: u64,
    /// Whether the task handed anything to its sink (a record or a dead letter): a task that
    /// fails before may run again even at-most-once, since nothing of it can appear twice.
    pub wrote_output: AtomicBool,
}

impl TaskControl {
    fn for_ranges(ranges: &[OffsetRange]) -> Self {
        TaskControl {
            records_to_read: ranges.iter().map(OffsetRange::max_records).sum(),
            ..TaskControl::default()
        }
    }

    /// Records the task's ranges still hold to read, as far as its last progress update tells.
    /// Offsets without a record (transaction markers, compacted ones) count until the task ends.
    pub fn records_left(&self) -> u64 {
        self.records_to_read.saturating_sub(self.records_in.load(Ordering::Relaxed))
    }
}

/// The range lag of the running tasks: the records their ranges still hold to read, summed.
pub fn range_lag<'a>(running: impl IntoIterator<Item = &'a TaskControl>) -> u64 {
    running.into_iter().map(TaskControl::records_left).sum()
}

pub fn spawn_task(
    ctx: Arc<JobContext>,
    id: TaskId,
    ranges: Vec<OffsetRange>,
    done: mpsc::UnboundedSender<Done>,
) -> Arc<TaskControl> {
    let control = Arc::new(TaskControl::for_ranges(&ranges));
    let task_control = control.clone();
    let span = info_span!("task", batch = id.batch, lane = id.lane, attempt = id.attempt);
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        // A panic anywhere in the task (a sink, a library) fails the task with its message
        // instead of losing it: a lost task would stall its batch for ever.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_task(&ctx, id, &ranges, &task_control)
        }));
        let result = run.unwrap_or_else(|panic| {
            let message = weir_common::failure::panic_message(panic.as_ref());
            Err(TaskError::data(format!("the task panicked: {message}")))
        });
        match &result {
            Ok(m) => debug!(
                records_in = m.records_in,
                records_out = m.records_out,
                took_ms = m.total_ms,
                "Task done"
            ),
            Err(e) => warn!(kind = %e.kind, error = %e, "Task failed"),
        }
        let _ = done.send((id, result));
    });
    control
}

pub fn run_task(
    ctx: &JobContext,
    task: TaskId,
    ranges: &[OffsetRange],
    control: &TaskControl,
) -> Result<TaskMetrics, TaskError> {
    let started = Instant::now();
    let mut metrics = TaskMetrics::default();
    // The consumer connects and fetches while the sink begins (a new lane producer's
    // init_transactions takes a round trip or two).
    ctx.consumers.prepare(task.lane, ranges);
    let (mut output, resumed) = match ctx.sink.begin(task, ranges)? {
        Begun::Write(output) => (output, None),
        Begun::Resume(output, from) => (output, Some(resume_ranges(ranges, &from))),
        Begun::AlreadyCommitted => {
            metrics.tasks_already_committed = 1;
            metrics.total_ms = started.elapsed().as_millis() as u64;
            return Ok(metrics);
        }
    };
    let ranges = resumed.as_deref().unwrap_or(ranges);
    if let Some(dead_letters) = &ctx.dead_letters {
        output = dead_letters.wrap(output, ranges);
    }
    let mut admission = ctx.output_gate.as_deref().map(|gate| gate.admission());
    let mut wrote_output = false;
    metrics.records_lost += ctx.consumers.read(task.lane, ranges, &control.cancel, |input| {
        let record = input.clone();
        metrics.records_in += 1;
        if metrics.records_in % 1024 == 0 {
            control.records_in.store(metrics.records_in, Ordering::Relaxed);
        }
        metrics.bytes_in += record_bytes(&record);
        let outcome = match ctx.pipeline.apply(record) {
            Outcome::Emit(out) => match admission.as_mut().and_then(|a| a.refusal(&out, &[])) {
                // The input record, unchanged, as a transform's reject is.
                Some(refusal) => {
                    Outcome::Rejected { record: input.clone(), reason: refusal.to_string() }
                }
                None => Outcome::Emit(out),
            },
            outcome => outcome,
        };
        let writes = match &outcome {
            Outcome::Emit(_) => true,
            Outcome::Rejected { .. } => ctx.on_record_error == OnRecordError::DeadLetter,
            Outcome::Filtered => false,
        };
        if writes && !wrote_output {
            wrote_output = true;
            control.wrote_output.store(true, Ordering::Relaxed);
        }
        match outcome {
            Outcome::Emit(record) => {
                metrics.bytes_out += output.write(&record)?;
                metrics.records_out += 1;
            }
            Outcome::Filtered => metrics.records_filtered += 1,
            Outcome::Rejected { record, reason } => {
                metrics.records_rejected += 1;
                reject(ctx.on_record_error, output.as_mut(), &record, &reason)?;
            }
        }
        Ok(())
    })?;
    metrics.read_ms = started.elapsed().as_millis() as u64;
    let flushing = Instant::now();
    output.finish()?;
    metrics.flush_ms = flushing.elapsed().as_millis() as u64;
    metrics.total_ms = started.elapsed().as_millis() as u64;
    Ok(metrics)
}

/// A rejected record (by a transform, or refused by the sink's topic), as `on_record_error` says.
fn reject(
    on_record_error: OnRecordError,
    output: &mut dyn TaskOutput,
    record: &Record<'_>,
    reason: &str,
) -> Result<(), TaskError> {
    match on_record_error {
        OnRecordError::Skip => Ok(()),
        OnRecordError::DeadLetter => output.write_dead_letter(record, reason),
        OnRecordError::Fail => Err(TaskError::data(format!(
            "record {}-{}@{} rejected: {reason} (transform.on_record_error = \"fail\")",
            record.topic, record.partition, record.offset
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use weir_common::{OffsetRange, TopicPartition};

    use super::{TaskControl, range_lag};

    fn range(partition: i32, from: i64, until: i64) -> OffsetRange {
        OffsetRange::new(TopicPartition::new("in", partition), from, until).unwrap()
    }

    #[test]
    fn the_range_lag_is_what_the_running_tasks_have_still_to_read() {
        let first = TaskControl::for_ranges(&[range(0, 100, 1_100), range(1, 0, 500)]);
        let second = TaskControl::for_ranges(&[range(2, 7, 7)]);
        assert_eq!(first.records_to_read, 1_500);
        assert_eq!(range_lag([&first, &second]), 1_500, "nothing read yet");

        first.records_in.store(1_024, Ordering::Relaxed);
        assert_eq!(range_lag([&first, &second]), 476);

        // A count past the ranges (it cannot happen) must not wrap the gauge around.
        first.records_in.store(2_000, Ordering::Relaxed);
        assert_eq!(range_lag([&first, &second]), 0);
        assert_eq!(range_lag([]), 0, "no running task, no lag");
    }
}
