//! What the status page remembers: the latest batches with their tasks (a batch table like
//! Spark's streaming tab), the latest failures, lag over time, and how long each partition's
//! oldest unplanned record has waited. Bounded: `driver.status_history` batches, a fixed number
//! of failures and samples.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use weir_common::batch::BatchPlan;
use weir_common::protocol::{TaskId, TaskMetrics};

/// Failures kept for the page.
const FAILURES_KEPT: usize = 20;
/// Lag samples kept (one a second at most: ten minutes).
const SAMPLES_KEPT: usize = 600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchState {
    Recorded,
    Running,
    Committed,
}

/// One row of the batch table, with what opens in its detail view.
#[derive(Debug, Clone, Serialize)]
pub struct BatchView {
    pub id: u64,
    pub status: BatchState,
    pub planned_at_ms: i64,
    /// Records the batch's ranges span (the most it can read).
    pub records_planned: u64,
    pub records_in: u64,
    pub records_out: u64,
    pub records_filtered: u64,
    /// Rejected by a transform: dead-lettered or skipped (`on_record_error`).
    pub records_rejected: u64,
    pub records_lost: u64,
    /// Record to first dispatch, first dispatch to commit, planning to commit.
    pub scheduling_delay_ms: Option<u64>,
    pub processing_ms: Option<u64>,
    pub total_delay_ms: Option<u64>,
    pub tasks: usize,
    /// Task attempts started (a retried or moved task counts each time).
    pub attempts: u32,
    pub replayed: bool,
    pub ranges: Vec<RangeView>,
    pub runs: Vec<TaskRun>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RangeView {
    pub lane: u32,
    pub partition: String,
    pub from: i64,
    pub until: i64,
}

/// One attempt of one task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRun {
    pub lane: u32,
    pub attempt: u32,
    pub executor: String,
    pub started_at_ms: i64,
    pub records_in: u64,
    pub duration_ms: Option<u64>,
    /// `running`, `succeeded`, `failed`, `lost`.
    pub outcome: &'static str,
    pub failure: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailureView {
    pub at_ms: i64,
    pub batch: u64,
    pub lane: u32,
    pub attempt: u32,
    pub executor: String,
    /// `transient`, `config`, `data`, or `lost` (the executor went away).
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct LagSample {
    pub at_ms: i64,
    pub lag: i64,
}

/// The batches, failures and lag the page shows.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    #[serde(skip)]
    limit: usize,
    pub batches: VecDeque<BatchView>,
    pub failures: VecDeque<FailureView>,
    pub lag_samples: VecDeque<LagSample>,
}

impl Default for History {
    /// With the default `driver.status_history`.
    fn default() -> Self {
        History::new(100)
    }
}

impl History {
    pub fn new(limit: usize) -> Self {
        History {
            limit: limit.max(1),
            batches: VecDeque::new(),
            failures: VecDeque::new(),
            lag_samples: VecDeque::new(),
        }
    }

    pub fn batch(&self, id: u64) -> Option<&BatchView> {
        self.batches.iter().rev().find(|b| b.id == id)
    }

    fn batch_mut(&mut self, id: u64) -> Option<&mut BatchView> {
        self.batches.iter_mut().rev().find(|b| b.id == id)
    }

    fn run_mut(&mut self, task: TaskId, executor: &str) -> Option<&mut TaskRun> {
        self.batch_mut(task.batch)?
            .runs
            .iter_mut()
            .rev()
            .find(|r| r.lane == task.lane && r.attempt == task.attempt && r.executor == executor)
    }

    pub fn recorded(&mut self, plan: &BatchPlan, replayed: bool) {
        let ranges = plan
            .tasks
            .iter()
            .flat_map(|t| {
                t.ranges.iter().map(move |r| RangeView {
                    lane: t.lane,
                    partition: r.topic_partition().to_string(),
                    from: r.from(),
                    until: r.until(),
                })
            })
            .collect();
        self.batches.push_back(BatchView {
            id: plan.id,
            status: BatchState::Recorded,
            planned_at_ms: plan.planned_at_ms,
            records_planned: plan.max_records(),
            records_in: 0,
            records_out: 0,
            records_filtered: 0,
            records_rejected: 0,
            records_lost: plan.records_lost(),
            scheduling_delay_ms: None,
            processing_ms: None,
            total_delay_ms: None,
            tasks: plan.tasks.len(),
            attempts: 0,
            replayed,
            ranges,
            runs: Vec::new(),
        });
        while self.batches.len() > self.limit {
            self.batches.pop_front();
        }
    }

    pub fn dispatched(&mut self, task: TaskId, executor: &str, now_ms: i64) {
        if let Some(batch) = self.batch_mut(task.batch) {
            batch.status = BatchState::Running;
            batch.attempts += 1;
            batch.runs.push(TaskRun {
                lane: task.lane,
                attempt: task.attempt,
                executor: executor.to_owned(),
                started_at_ms: now_ms,
                records_in: 0,
                duration_ms: None,
                outcome: "running",
                failure: None,
            });
        }
    }

    pub fn progress(&mut self, task: TaskId, executor: &str, records_in: u64) {
        if let Some(run) = self.run_mut(task, executor) {
            run.records_in = records_in;
        }
    }

    pub fn succeeded(&mut self, task: TaskId, executor: &str, metrics: &TaskMetrics) {
        if let Some(run) = self.run_mut(task, executor) {
            run.outcome = "succeeded";
            run.records_in = metrics.records_in;
            run.duration_ms = Some(metrics.total_ms);
        }
    }

    /// A task failed (`kind` from the executor) or was lost with its executor (`kind` `lost`).
    pub fn failed(&mut self, task: TaskId, executor: &str, kind: &str, message: &str, now_ms: i64) {
        if let Some(run) = self.run_mut(task, executor) {
            run.outcome = if kind == "lost" { "lost" } else { "failed" };
            run.duration_ms = Some(now_ms.saturating_sub(run.started_at_ms).max(0) as u64);
            run.failure = Some(message.to_owned());
        }
        self.failures.push_back(FailureView {
            at_ms: now_ms,
            batch: task.batch,
            lane: task.lane,
            attempt: task.attempt,
            executor: executor.to_owned(),
            kind: kind.to_owned(),
            message: message.to_owned(),
        });
        while self.failures.len() > FAILURES_KEPT {
            self.failures.pop_front();
        }
    }

    pub fn committed(
        &mut self,
        id: u64,
        metrics: &TaskMetrics,
        scheduling_delay_ms: u64,
        processing_ms: u64,
        now_ms: i64,
    ) {
        if let Some(batch) = self.batch_mut(id) {
            batch.status = BatchState::Committed;
            batch.records_in = metrics.records_in;
            batch.records_out = metrics.records_out;
            batch.records_filtered = metrics.records_filtered;
            batch.records_rejected = metrics.records_rejected;
            batch.records_lost += metrics.records_lost;
            batch.scheduling_delay_ms = Some(scheduling_delay_ms);
            batch.processing_ms = Some(processing_ms);
            batch.total_delay_ms = Some(now_ms.saturating_sub(batch.planned_at_ms).max(0) as u64);
        }
    }

    /// Samples the lag, at most once a second.
    pub fn sample_lag(&mut self, now_ms: i64, lag: i64) {
        if self.lag_samples.back().is_some_and(|s| now_ms - s.at_ms < 1_000) {
            return;
        }
        self.lag_samples.push_back(LagSample { at_ms: now_ms, lag });
        while self.lag_samples.len() > SAMPLES_KEPT {
            self.lag_samples.pop_front();
        }
    }
}

/// How long each partition's oldest record not yet planned has waited, measured from when the
/// driver first saw the log end pass it (its planning rounds read every log end anyway, so this
/// costs no Kafka request). Within one batch interval of the record's arrival; a record that
/// was already in the log when the driver started counts from the start.
#[derive(Debug, Default)]
pub struct LagClock {
    /// Per partition: (first seen at, log end) each time the log end grew, oldest first.
    seen: BTreeMap<String, VecDeque<(i64, i64)>>,
}

/// Growth steps kept per partition; older ones merge into the oldest kept.
const STEPS_KEPT: usize = 256;

impl LagClock {
    /// Notes the log ends seen now, forgets what is planned, and returns each lagging
    /// partition's wait in milliseconds.
    pub fn observe(
        &mut self,
        now_ms: i64,
        partitions: impl Iterator<Item = (String, i64, i64)>,
    ) -> BTreeMap<String, u64> {
        let mut ages = BTreeMap::new();
        for (partition, planned, log_end) in partitions {
            let steps = self.seen.entry(partition.clone()).or_default();
            if steps.back().is_none_or(|&(_, end)| log_end > end) {
                steps.push_back((now_ms, log_end));
            }
            while steps.front().is_some_and(|&(_, end)| end <= planned) {
                steps.pop_front();
            }
            while steps.len() > STEPS_KEPT {
                let (at, _) = steps.pop_front().expect("longer than the limit");
                if let Some(front) = steps.front_mut() {
                    front.0 = at;
                }
            }
            if let Some(&(at, _)) = steps.front() {
                ages.insert(partition, now_ms.saturating_sub(at).max(0) as u64);
            }
        }
        ages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_clock_counts_from_when_the_oldest_unplanned_record_was_seen() {
        let mut clock = LagClock::default();
        let at = |clock: &mut LagClock, now, planned, end| {
            clock.observe(now, std::iter::once(("p".to_owned(), planned, end))).get("p").copied()
        };
        assert_eq!(at(&mut clock, 1_000, 0, 0), None, "nothing to plan");
        assert_eq!(at(&mut clock, 2_000, 0, 10), Some(0), "records seen now");
        assert_eq!(at(&mut clock, 3_000, 0, 20), Some(1_000), "the oldest waits since 2 s");
        assert_eq!(
            at(&mut clock, 4_000, 10, 20),
            Some(1_000),
            "planned up to 10: the rest since 3 s"
        );
        assert_eq!(at(&mut clock, 5_000, 20, 20), None, "all planned");
    }

    #[test]
    fn history_keeps_the_latest_batches_and_their_runs() {
        let mut history = History::new(2);
        for id in 1..=3 {
            let plan = BatchPlan { id, tasks: Vec::new(), planned_at_ms: 0, data_lost: Vec::new() };
            history.recorded(&plan, false);
        }
        assert_eq!(history.batches.iter().map(|b| b.id).collect::<Vec<_>>(), [2, 3]);
        let task = TaskId { batch: 3, lane: 0, attempt: 0 };
        history.dispatched(task, "e1", 100);
        history.failed(task, "e1", "transient", "broker away", 300);
        let retry = TaskId { attempt: 1, ..task };
        history.dispatched(retry, "e2", 400);
        history.succeeded(
            retry,
            "e2",
            &TaskMetrics { records_in: 5, total_ms: 50, ..Default::default() },
        );
        let batch = history.batch(3).unwrap();
        assert_eq!((batch.status, batch.attempts), (BatchState::Running, 2));
        assert_eq!(batch.runs[0].outcome, "failed");
        assert_eq!(batch.runs[0].duration_ms, Some(200));
        assert_eq!((batch.runs[1].outcome, batch.runs[1].records_in), ("succeeded", 5));
        assert_eq!(history.failures.len(), 1);
    }
}
