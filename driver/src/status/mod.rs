//! What the driver shows operators: the status the job loop publishes after every event (through
//! a `watch` channel; the loop is its one writer), served as JSON (`/api/status`) and as the
//! HTML page (`/`, `page.rs`). A standby publishes one too, saying who leads.
//!
//! - `history.rs`: the latest batches with their tasks, failures, lag over time;
//! - `page.rs` and `charts.rs`: the server-rendered page and its SVG charts.

mod charts;
pub mod history;
pub mod page;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use weir_common::control::JobState;
use weir_common::protocol::TaskId;

use crate::scheduler::{Batch, ExecutorStatus};
use history::History;

/// Where this driver stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Binding its ports, reaching etcd.
    #[default]
    Starting,
    /// Campaigning while another driver leads.
    Standby,
    Leader,
}

/// The driver that leads, as a standby sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LeaderView {
    pub driver_id: String,
    pub address: String,
    pub http_address: Option<String>,
    pub generation: u64,
}

/// Something the job waits for, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Wait {
    pub message: String,
    pub since_ms: i64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Status {
    pub job: String,
    pub driver_id: String,
    pub generation: u64,
    pub role: Role,
    /// On a standby: the driver that leads (when known).
    pub leader: Option<LeaderView>,
    pub guarantee: String,
    pub batch_interval_ms: u64,
    pub started_at_ms: i64,
    /// `/readyz`: the driver leads and plans, or is a standby campaigning.
    pub ready: bool,
    /// What operators asked: running, stop requested, stopped (`weirctl job stop|resume`).
    pub state: JobState,
    pub state_changed_by: String,
    pub state_changed_at_ms: i64,
    pub executors: Vec<ExecutorStatus>,
    /// Running tasks with the progress their executor last reported.
    pub running_tasks: Vec<TaskProgress>,
    pub batches_in_flight: usize,
    pub last_committed_batch: Option<u64>,
    pub batches_committed: u64,
    pub empty_rounds: u64,
    pub records_in: u64,
    pub records_out: u64,
    pub records_rejected: u64,
    pub records_filtered: u64,
    /// At-most-once: offsets of tasks that failed or were lost and were not run again.
    pub records_abandoned: u64,
    /// Exactly-once: replayed tasks found already committed in Kafka, so not written again.
    pub tasks_already_committed: u64,
    /// Records skipped because Kafka no longer held them, found while planning
    /// (`on_data_loss = "skip"`).
    pub records_lost_planning: u64,
    /// Records skipped because Kafka no longer held them, found while a task read
    /// (`on_data_loss = "skip"`).
    pub records_lost_reading: u64,
    /// Records in the source not yet in a recorded batch, at the last planning round.
    pub lag: i64,
    /// The same per partition (`topic-partition`), at the last planning round.
    pub lag_by_partition: BTreeMap<String, i64>,
    /// How long each lagging partition's oldest unplanned record has waited, in milliseconds,
    /// counted from when the driver first saw it in the log.
    pub lag_age_ms_by_partition: BTreeMap<String, u64>,
    /// The longest of those.
    pub oldest_unplanned_age_ms: u64,
    /// The rate the controller allows, records per second for the whole job; none until it has
    /// measured a batch (or with backpressure off).
    pub rate_records_per_second: Option<f64>,
    /// Partitions the driver found and started reading since it started leading.
    pub partitions_discovered: u64,
    pub last_scheduling_delay_ms: u64,
    pub last_processing_ms: u64,
    pub last_empty_round_us: u64,
    /// What the driver waits for now, if anything (the oldest of `waits`).
    pub waiting_for: Option<String>,
    pub waiting_since_ms: Option<i64>,
    /// Everything it waits for, by reason (`stopped`, `etcd`, `kafka`, `no_executor`, `slots`,
    /// `leader`).
    pub waits: BTreeMap<&'static str, Wait>,
    /// The latest batches (newest last), failures and lag samples.
    #[serde(flatten)]
    pub history: History,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskProgress {
    pub executor: String,
    #[serde(serialize_with = "task_id")]
    pub task: TaskId,
    pub records_in: u64,
}

fn task_id<S: serde::Serializer>(id: &TaskId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

impl Status {
    pub fn progress(&mut self, executor: &str, task: TaskId, records_in: u64) {
        match self.running_tasks.iter_mut().find(|t| t.task == task && t.executor == executor) {
            Some(t) => t.records_in = records_in,
            None => self.running_tasks.push(TaskProgress {
                executor: executor.to_owned(),
                task,
                records_in,
            }),
        }
        self.history.progress(task, executor, records_in);
    }

    pub fn committed(
        &mut self,
        id: u64,
        batch: &Batch,
        delay: Duration,
        processing: Duration,
        now_ms: i64,
    ) {
        let m = &batch.metrics;
        self.last_committed_batch = Some(id);
        self.records_abandoned += batch.records_abandoned;
        self.tasks_already_committed += m.tasks_already_committed;
        self.records_lost_reading += m.records_lost;
        self.batches_committed += 1;
        self.records_in += m.records_in;
        self.records_out += m.records_out;
        self.records_rejected += m.records_rejected;
        self.records_filtered += m.records_filtered;
        self.last_scheduling_delay_ms = delay.as_millis() as u64;
        self.last_processing_ms = processing.as_millis() as u64;
        self.history.committed(
            id,
            m,
            self.last_scheduling_delay_ms,
            self.last_processing_ms,
            now_ms,
        );
    }

    pub fn empty_round(&mut self, took: Duration, lag: i64) {
        self.empty_rounds += 1;
        self.last_empty_round_us = took.as_micros() as u64;
        self.lag = lag;
    }

    /// The job waits for `reason` (kept since the first call while it lasts).
    pub fn wait(&mut self, reason: &'static str, message: impl Into<String>, now_ms: i64) {
        let message = message.into();
        match self.waits.get_mut(reason) {
            Some(wait) => wait.message = message,
            None => {
                self.waits.insert(reason, Wait { message, since_ms: now_ms });
            }
        }
        self.show_oldest_wait();
    }

    /// The job no longer waits for `reason`.
    pub fn done_waiting(&mut self, reason: &'static str) {
        if self.waits.remove(reason).is_some() {
            self.show_oldest_wait();
        }
    }

    fn show_oldest_wait(&mut self) {
        let oldest = self.waits.values().min_by_key(|w| w.since_ms);
        self.waiting_for = oldest.map(|w| w.message.clone());
        self.waiting_since_ms = oldest.map(|w| w.since_ms);
    }

    pub fn waiting_reasons(&self) -> Vec<&'static str> {
        self.waits.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_wait_is_shown_with_its_start() {
        let mut s = Status::default();
        s.wait("kafka", "Kafka did not answer", 100);
        s.wait("slots", "3 tasks wait for a free slot", 200);
        s.wait("kafka", "Kafka still does not answer", 300);
        assert_eq!(s.waiting_for.as_deref(), Some("Kafka still does not answer"));
        assert_eq!(s.waiting_since_ms, Some(100), "since the first time");
        s.done_waiting("kafka");
        assert_eq!(s.waiting_for.as_deref(), Some("3 tasks wait for a free slot"));
        s.done_waiting("slots");
        assert_eq!((s.waiting_for, s.waiting_since_ms), (None, None));
    }
}
