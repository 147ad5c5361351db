//! The scheduler: pure state of who runs what. It owns the recorded-but-uncommitted batches, the
//! live executors and the lane owners, and decides the next task assignments. No I/O: the job
//! loop feeds it events and carries out the assignments it returns.
//!
//! Invariants kept here:
//! - a lane's tasks run strictly in batch order, one at a time;
//! - a lane has at most one owner, a live executor that is not leaving; lanes stay with their
//!   owner (warm caches) unless the owner goes or owns clearly more than another executor;
//! - an executor runs at most `slots` tasks;
//! - a report for an attempt that is no longer current (a lost executor's) changes nothing;
//! - at-most-once, a task runs at most once: failed or lost, it is abandoned, never retried.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;
use weir_common::OffsetRange;
use weir_common::batch::{BatchPlan, LaneId};
use weir_common::failure::FailureKind;
use weir_common::protocol::{TaskId, TaskMetrics};
use weir_common::retry::Backoff;

pub type ExecutorId = String;

/// The longest backoff between a task's retries.
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The longest wait before a task that met an unreachable Kafka runs again.
const OUTAGE_RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Failures of one task (retryable ones) before the job stops.
    pub max_attempts: u32,
    /// The delay before the first retry; doubles per failure.
    pub retry_backoff: Duration,
    /// Whether a task that failed or whose executor was lost runs again. At-most-once says no:
    /// its batch was committed before dispatch, so the task is abandoned and its records lost.
    pub run_again: bool,
    /// How long a task may keep failing because Kafka does not answer (`Unavailable`) before
    /// the job stops; `None`: for ever.
    pub outage_limit: Option<Duration>,
}

#[derive(Debug)]
struct Executor {
    slots: u32,
    running: BTreeSet<TaskId>,
    leaving: bool,
    last_seen: Instant,
    /// Lanes given to this executor since it attached (its first lanes, and lanes moved from
    /// another executor).
    lanes_taken: u64,
    /// Lanes whose task stalled here: given to another executor while there is one.
    stalled_lanes: BTreeSet<LaneId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TaskState {
    Waiting {
        not_before: Instant,
    },
    Running {
        executor: ExecutorId,
        /// The records read as last reported, and when that number last grew (or the task
        /// started): a task whose number stops growing has stalled.
        records_in: u64,
        progressed_at: Instant,
    },
    Done,
    /// At-most-once: failed or lost, not run again.
    Abandoned,
}

impl TaskState {
    fn finished(&self) -> bool {
        matches!(self, TaskState::Done | TaskState::Abandoned)
    }
}

#[derive(Debug)]
struct Task {
    ranges: Vec<OffsetRange>,
    attempt: u32,
    /// Failures that count against `max_attempts` (not those of an unreachable Kafka).
    failures: u32,
    /// Since when the task fails only because Kafka does not answer; reset by a failure of
    /// its own.
    unavailable_since: Option<Instant>,
    state: TaskState,
}

/// A recorded batch on its way to commit.
#[derive(Debug)]
pub struct Batch {
    pub plan: BatchPlan,
    pub recorded_at: Instant,
    pub first_dispatch: Option<Instant>,
    pub metrics: TaskMetrics,
    /// The same per source topic, for the metrics.
    pub metrics_by_topic: BTreeMap<String, TaskMetrics>,
    /// At-most-once: records of abandoned tasks (read or not, their output is not known).
    pub records_abandoned: u64,
    /// The same per source topic.
    pub abandoned_by_topic: BTreeMap<String, u64>,
    tasks: BTreeMap<LaneId, Task>,
}

/// Run `task` (its `ranges`) on `executor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub executor: ExecutorId,
    pub task: TaskId,
    pub ranges: Vec<OffsetRange>,
}

/// A task that cannot succeed: the job must stop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task {task} failed after {failures} attempt(s) ({kind}): {message}")]
pub struct JobFailure {
    pub task: TaskId,
    pub failures: u32,
    pub kind: FailureKind,
    pub message: String,
}

/// A row of the status page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExecutorStatus {
    pub id: ExecutorId,
    /// Where the executor says it runs (its host); filled in by the job loop.
    pub address: String,
    pub slots: u32,
    pub running: usize,
    pub lanes: usize,
    pub leaving: bool,
    /// Milliseconds since the executor was last heard from.
    pub last_heard_ms: u64,
    /// Lanes given to it since it attached.
    pub lanes_taken: u64,
}

/// Why tasks of recorded batches are not running: what the job waits for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Tasks ready to run and not running.
    pub waiting_tasks: usize,
    /// Live executors that are not leaving.
    pub executors: usize,
    /// Free slots on those executors.
    pub free_slots: usize,
}

#[derive(Debug)]
pub struct Scheduler {
    settings: Settings,
    executors: BTreeMap<ExecutorId, Executor>,
    owners: BTreeMap<LaneId, ExecutorId>,
    batches: BTreeMap<u64, Batch>,
}

impl Scheduler {
    pub fn new(settings: Settings) -> Self {
        Scheduler {
            settings,
            executors: BTreeMap::new(),
            owners: BTreeMap::new(),
            batches: BTreeMap::new(),
        }
    }

    /// Adds an executor; one that was already known is first removed (its tasks run again).
    pub fn add_executor(&mut self, id: ExecutorId, slots: u32, now: Instant) {
        self.remove_executor(&id, now);
        let executor = Executor {
            slots: slots.max(1),
            running: BTreeSet::new(),
            leaving: false,
            last_seen: now,
            lanes_taken: 0,
            stalled_lanes: BTreeSet::new(),
        };
        self.executors.insert(id, executor);
    }

    /// Forgets an executor; its running tasks wait to run again elsewhere (or, at-most-once,
    /// are abandoned), its lanes lose their owner. Returns the tasks it was running.
    pub fn remove_executor(&mut self, id: &str, now: Instant) -> Vec<TaskId> {
        let Some(executor) = self.executors.remove(id) else { return Vec::new() };
        self.owners.retain(|_, owner| owner != id);
        for task_id in &executor.running {
            if self.settings.run_again {
                if let Some(task) = self.task_mut(task_id) {
                    task.attempt += 1;
                    task.state = TaskState::Waiting { not_before: now };
                }
            } else {
                self.abandon(task_id);
            }
        }
        executor.running.into_iter().collect()
    }

    pub fn has_executor(&self, id: &str) -> bool {
        self.executors.contains_key(id)
    }

    pub fn executor_seen(&mut self, id: &str, now: Instant) {
        if let Some(e) = self.executors.get_mut(id) {
            e.last_seen = now;
        }
    }

    /// The executor is shutting down: it gets no new task and its lanes move once idle.
    pub fn executor_leaving(&mut self, id: &str) {
        if let Some(e) = self.executors.get_mut(id) {
            e.leaving = true;
        }
        self.owners.retain(|_, owner| owner != id);
    }

    /// Leaving executors with nothing left to run: they may go.
    pub fn idle_leaving_executors(&self) -> Vec<ExecutorId> {
        self.executors
            .iter()
            .filter(|(_, e)| e.leaving && e.running.is_empty())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Executors not heard from for longer than `timeout`.
    pub fn silent_executors(&self, now: Instant, timeout: Duration) -> Vec<ExecutorId> {
        self.executors
            .iter()
            .filter(|(_, e)| now.duration_since(e.last_seen) > timeout)
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn add_batch(&mut self, plan: BatchPlan, now: Instant) {
        let tasks = plan
            .tasks
            .iter()
            .map(|t| {
                let task = Task {
                    ranges: t.ranges.clone(),
                    attempt: 0,
                    failures: 0,
                    unavailable_since: None,
                    state: TaskState::Waiting { not_before: now },
                };
                (t.lane, task)
            })
            .collect();
        let batch = Batch {
            plan,
            recorded_at: now,
            first_dispatch: None,
            metrics: TaskMetrics::default(),
            metrics_by_topic: BTreeMap::new(),
            records_abandoned: 0,
            abandoned_by_topic: BTreeMap::new(),
            tasks,
        };
        self.batches.insert(batch.plan.id, batch);
    }

    /// Batches recorded and not yet committed.
    pub fn batches_in_flight(&self) -> usize {
        self.batches.len()
    }

    /// Records a success. Returns false (and changes nothing) for an attempt that is not current.
    pub fn task_succeeded(&mut self, executor: &str, id: TaskId, metrics: TaskMetrics) -> bool {
        if !self.is_current(executor, &id) {
            return false;
        }
        self.release(executor, &id);
        let batch = self.batches.get_mut(&id.batch).expect("current task has a batch");
        batch.metrics.add(&metrics);
        let task = batch.tasks.get_mut(&id.lane).expect("current task");
        if let Some(topic) = task.ranges.first().map(|r| r.topic().to_owned()) {
            batch.metrics_by_topic.entry(topic).or_default().add(&metrics);
        }
        task.state = TaskState::Done;
        task.unavailable_since = None;
        true
    }

    /// Records a failure: a transient one waits for a retry with backoff; any other kind, or
    /// one too many, stops the job. An `Unavailable` one (Kafka did not answer) is waited out:
    /// retried without counting, until `outage_limit`. `Ok(false)` for an attempt that is not
    /// current.
    ///
    /// The backoff is a scheduling decision, not a wait: the task waits in the queue (the loop
    /// never sleeps), so it does not go through `common::retry`; it uses its `Backoff` delays.
    pub fn task_failed(
        &mut self,
        executor: &str,
        id: TaskId,
        kind: FailureKind,
        message: &str,
        now: Instant,
    ) -> Result<bool, JobFailure> {
        self.fail(executor, id, kind, message, now, self.settings.run_again)
    }

    /// [`task_failed`](Self::task_failed) for a task that handed nothing to its sink: running it
    /// again cannot write a record twice, so even at-most-once runs it again (with the same
    /// attempt rules) instead of abandoning its records.
    pub fn task_failed_before_output(
        &mut self,
        executor: &str,
        id: TaskId,
        kind: FailureKind,
        message: &str,
        now: Instant,
    ) -> Result<bool, JobFailure> {
        self.fail(executor, id, kind, message, now, true)
    }

    fn fail(
        &mut self,
        executor: &str,
        id: TaskId,
        kind: FailureKind,
        message: &str,
        now: Instant,
        run_again: bool,
    ) -> Result<bool, JobFailure> {
        if !self.is_current(executor, &id) {
            return Ok(false);
        }
        self.release(executor, &id);
        let settings = self.settings;
        let backoff = Backoff {
            initial: settings.retry_backoff,
            max: RETRY_BACKOFF_MAX,
            give_up_after: None,
        };
        let retryable = kind.is_retryable();
        if retryable && !run_again {
            self.abandon(&id);
            return Ok(true);
        }
        let task = self.task_mut(&id).expect("current task");
        let failure =
            |failures| JobFailure { task: id, failures, kind, message: message.to_owned() };
        let delay = if kind == FailureKind::Unavailable {
            let since = *task.unavailable_since.get_or_insert(now);
            if settings.outage_limit.is_some_and(|limit| now.duration_since(since) >= limit) {
                return Err(failure(task.failures + 1));
            }
            // Every attempt in an outage already waited for Kafka's own timeouts: retry soon,
            // so the output resumes within seconds of Kafka's return.
            settings.retry_backoff.min(OUTAGE_RETRY)
        } else {
            task.unavailable_since = None;
            task.failures += 1;
            if !retryable || task.failures >= settings.max_attempts {
                return Err(failure(task.failures));
            }
            backoff.delay(task.failures)
        };
        task.attempt += 1;
        task.state = TaskState::Waiting { not_before: now + delay };
        Ok(true)
    }

    /// Since when some recorded task has failed only because Kafka did not answer (the oldest
    /// such outage); `None` when no task is waiting one out.
    pub fn unavailable_since(&self) -> Option<Instant> {
        self.batches
            .values()
            .flat_map(|b| b.tasks.values())
            .filter_map(|t| t.unavailable_since)
            .min()
    }

    /// The next assignments: every waiting task whose lane is free (its earlier tasks done) and
    /// whose owner has a free slot.
    pub fn dispatch(&mut self, now: Instant) -> Vec<Assignment> {
        let mut assignments = Vec::new();
        let mut busy_lanes = BTreeSet::new();
        let batch_ids: Vec<u64> = self.batches.keys().copied().collect();
        for batch_id in batch_ids {
            let lanes: Vec<LaneId> = self.batches[&batch_id].tasks.keys().copied().collect();
            for lane in lanes {
                let task = &self.batches[&batch_id].tasks[&lane];
                match task.state {
                    TaskState::Done | TaskState::Abandoned => continue,
                    _ if busy_lanes.contains(&lane) => continue,
                    TaskState::Running { .. } => {
                        busy_lanes.insert(lane);
                        continue;
                    }
                    TaskState::Waiting { not_before } => {
                        busy_lanes.insert(lane);
                        if not_before > now {
                            continue;
                        }
                    }
                }
                let Some(owner) = self.owner_for(lane) else { return assignments };
                let executor = self.executors.get_mut(&owner).expect("owner is live");
                if executor.running.len() >= executor.slots as usize {
                    continue;
                }
                let batch = self.batches.get_mut(&batch_id).expect("batch");
                batch.first_dispatch.get_or_insert(now);
                let task = batch.tasks.get_mut(&lane).expect("task");
                let id = TaskId { batch: batch_id, lane, attempt: task.attempt };
                task.state = TaskState::Running {
                    executor: owner.clone(),
                    records_in: 0,
                    progressed_at: now,
                };
                executor.running.insert(id);
                assignments.push(Assignment {
                    executor: owner,
                    task: id,
                    ranges: task.ranges.clone(),
                });
            }
        }
        assignments
    }

    /// The oldest batch, if all its tasks are finished: the next to commit (batches commit in
    /// order).
    pub fn committable(&self) -> Option<&Batch> {
        let (_, batch) = self.batches.first_key_value()?;
        batch.tasks.values().all(|t| t.state.finished()).then_some(batch)
    }

    pub fn remove_batch(&mut self, id: u64) -> Option<Batch> {
        self.batches.remove(&id)
    }

    /// Running tasks, for cancelling them when the job stops.
    pub fn running(&self) -> Vec<(ExecutorId, TaskId)> {
        self.executors
            .iter()
            .flat_map(|(id, e)| e.running.iter().map(move |t| (id.clone(), *t)))
            .collect()
    }

    pub fn executor_status(&self, now: Instant) -> Vec<ExecutorStatus> {
        self.executors
            .iter()
            .map(|(id, e)| ExecutorStatus {
                id: id.clone(),
                address: String::new(),
                slots: e.slots,
                running: e.running.len(),
                lanes: self.owners.values().filter(|o| *o == id).count(),
                leaving: e.leaving,
                last_heard_ms: now.saturating_duration_since(e.last_seen).as_millis() as u64,
                lanes_taken: e.lanes_taken,
            })
            .collect()
    }

    /// Tasks waiting to run against the executors and slots there are.
    pub fn backlog(&self, now: Instant) -> Backlog {
        let waiting_tasks = self
            .batches
            .values()
            .flat_map(|b| b.tasks.values())
            .filter(|t| matches!(t.state, TaskState::Waiting { not_before } if not_before <= now))
            .count();
        let live = self.executors.values().filter(|e| !e.leaving);
        Backlog {
            waiting_tasks,
            executors: live.clone().count(),
            free_slots: live.map(|e| (e.slots as usize).saturating_sub(e.running.len())).sum(),
        }
    }

    /// The lane's owner, choosing one when it has none or when its owner holds clearly more lanes
    /// than the least loaded executor (so executors that attach later take lanes over). Called
    /// only for a lane with no running task, so a move never splits a lane's work.
    fn owner_for(&mut self, lane: LaneId) -> Option<ExecutorId> {
        let load = |s: &Self, id: &str| s.owners.values().filter(|o| *o == id).count();
        // Executors where this lane's task stalled come last.
        let least_loaded = self
            .executors
            .iter()
            .filter(|(_, e)| !e.leaving)
            .map(|(id, e)| (e.stalled_lanes.contains(&lane), load(self, id), id.clone()))
            .min()
            .map(|(_, load, id)| (load, id))?;
        match self.owners.get(&lane) {
            Some(owner) if load(self, owner) <= least_loaded.0 + 1 => Some(owner.clone()),
            _ => {
                self.owners.insert(lane, least_loaded.1.clone());
                if let Some(e) = self.executors.get_mut(&least_loaded.1) {
                    e.lanes_taken += 1;
                }
                Some(least_loaded.1)
            }
        }
    }

    fn is_current(&self, executor: &str, id: &TaskId) -> bool {
        self.batches.get(&id.batch).and_then(|b| b.tasks.get(&id.lane)).is_some_and(|t| {
            t.attempt == id.attempt
                && matches!(&t.state, TaskState::Running { executor: e, .. } if e == executor)
        })
    }

    /// A running task's progress, as its executor reports with each heartbeat.
    pub fn task_progress(&mut self, executor: &str, id: TaskId, records: u64, now: Instant) {
        if !self.is_current(executor, &id) {
            return;
        }
        if let Some(TaskState::Running { records_in, progressed_at, .. }) =
            self.task_mut(&id).map(|t| &mut t.state)
            && records > *records_in
        {
            *records_in = records;
            *progressed_at = now;
        }
    }

    /// Running tasks that read no new record for `limit`.
    pub fn stalled_tasks(&self, now: Instant, limit: Duration) -> Vec<(ExecutorId, TaskId)> {
        let mut stalled = Vec::new();
        for (&batch, b) in &self.batches {
            for (&lane, t) in &b.tasks {
                if let TaskState::Running { executor, progressed_at, .. } = &t.state
                    && now.duration_since(*progressed_at) > limit
                {
                    stalled.push((executor.clone(), TaskId { batch, lane, attempt: t.attempt }));
                }
            }
        }
        stalled
    }

    /// A stalled task: a failed attempt (transient, so it runs again while attempts are left),
    /// and its lane goes to another executor, since this one may stay stuck in it.
    pub fn task_stalled(
        &mut self,
        executor: &str,
        id: TaskId,
        message: &str,
        now: Instant,
    ) -> Result<bool, JobFailure> {
        if let Some(e) = self.executors.get_mut(executor) {
            e.stalled_lanes.insert(id.lane);
        }
        if self.owners.get(&id.lane).is_some_and(|o| o == executor) {
            self.owners.remove(&id.lane);
        }
        self.task_failed(executor, id, FailureKind::Transient, message, now)
    }

    fn release(&mut self, executor: &str, id: &TaskId) {
        if let Some(e) = self.executors.get_mut(executor) {
            e.running.remove(id);
        }
    }

    /// At-most-once: the task is not run again; its records count as lost.
    fn abandon(&mut self, id: &TaskId) {
        let Some(batch) = self.batches.get_mut(&id.batch) else { return };
        let Some(task) = batch.tasks.get_mut(&id.lane) else { return };
        task.state = TaskState::Abandoned;
        let records = task.ranges.iter().map(OffsetRange::max_records).sum::<u64>();
        batch.records_abandoned += records;
        if let Some(topic) = task.ranges.first().map(|r| r.topic().to_owned()) {
            *batch.abandoned_by_topic.entry(topic).or_default() += records;
        }
    }

    fn task_mut(&mut self, id: &TaskId) -> Option<&mut Task> {
        self.batches.get_mut(&id.batch)?.tasks.get_mut(&id.lane)
    }
}

#[cfg(test)]
mod tests;
