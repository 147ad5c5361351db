//! What the driver shows operators: the status the job loop publishes after every event, served
//! as JSON (`/api/status`) and as Prometheus metrics (`/metrics`). Metric names live here and
//! nowhere else (`weir_<area>_<name>_<unit>`).

use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;
use weir_common::control::JobState;
use weir_common::protocol::TaskId;

use crate::scheduler::{Batch, ExecutorStatus};

#[derive(Debug, Default, Clone, Serialize)]
pub struct Status {
    pub job: String,
    pub driver_id: String,
    pub generation: u64,
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
    pub lag_by_partition: std::collections::BTreeMap<String, i64>,
    /// The rate the controller allows, records per second for the whole job; none until it has
    /// measured a batch (or with backpressure off).
    pub rate_records_per_second: Option<f64>,
    /// Partitions the driver found and started reading since it started leading.
    pub partitions_discovered: u64,
    pub last_scheduling_delay_ms: u64,
    pub last_processing_ms: u64,
    pub last_empty_round_us: u64,
    /// What the driver is waiting for, if anything (Kafka or etcd unreachable).
    pub waiting_for: Option<String>,
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
    }

    pub fn committed(&mut self, id: u64, batch: &Batch, delay: Duration, processing: Duration) {
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
    }

    pub fn empty_round(&mut self, took: Duration, lag: i64) {
        self.empty_rounds += 1;
        self.last_empty_round_us = took.as_micros() as u64;
        self.lag = lag;
    }

    /// Prometheus text exposition.
    pub fn metrics(&self) -> String {
        let job = &self.job;
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{job=\"{job}\"}} {value}"
            );
        };
        metric(
            "weir_driver_generation",
            "gauge",
            "Leader generation of this driver.",
            self.generation as f64,
        );
        metric(
            "weir_driver_job_stopped",
            "gauge",
            "1 while an operator holds the job (stop requested or stopped), else 0.",
            if self.state.holds_planning() { 1.0 } else { 0.0 },
        );
        metric(
            "weir_driver_executors",
            "gauge",
            "Executors attached.",
            self.executors.len() as f64,
        );
        metric(
            "weir_driver_batches_in_flight",
            "gauge",
            "Batches recorded, not yet committed.",
            self.batches_in_flight as f64,
        );
        metric(
            "weir_driver_batches_committed_total",
            "counter",
            "Batches committed since start.",
            self.batches_committed as f64,
        );
        metric(
            "weir_driver_empty_rounds_total",
            "counter",
            "Planning rounds that found no new records.",
            self.empty_rounds as f64,
        );
        metric(
            "weir_driver_records_in_total",
            "counter",
            "Records read by committed batches.",
            self.records_in as f64,
        );
        metric(
            "weir_driver_records_out_total",
            "counter",
            "Records written by committed batches.",
            self.records_out as f64,
        );
        metric(
            "weir_driver_records_rejected_total",
            "counter",
            "Records a transform rejected.",
            self.records_rejected as f64,
        );
        metric(
            "weir_driver_records_abandoned_total",
            "counter",
            "At-most-once: offsets of tasks that failed or were lost and were not run again.",
            self.records_abandoned as f64,
        );
        metric(
            "weir_driver_tasks_already_committed_total",
            "counter",
            "Exactly-once: replayed tasks whose output Kafka already held, not written again.",
            self.tasks_already_committed as f64,
        );
        metric(
            "weir_driver_records_lost_total",
            "counter",
            "Records Kafka no longer held when the job came to read them, skipped (on_data_loss = skip).",
            (self.records_lost_planning + self.records_lost_reading) as f64,
        );
        metric(
            "weir_driver_lag_records",
            "gauge",
            "Source records not yet planned.",
            self.lag as f64,
        );
        metric(
            "weir_driver_batch_processing_seconds",
            "gauge",
            "Processing time of the last committed batch.",
            self.last_processing_ms as f64 / 1000.0,
        );
        metric(
            "weir_driver_batch_scheduling_delay_seconds",
            "gauge",
            "Scheduling delay of the last committed batch.",
            self.last_scheduling_delay_ms as f64 / 1000.0,
        );
        metric(
            "weir_driver_rate_records_per_second",
            "gauge",
            "The rate in force from the rate controller, records per second (0: none yet).",
            self.rate_records_per_second.unwrap_or(0.0),
        );
        metric(
            "weir_driver_partitions_discovered_total",
            "counter",
            "Partitions found and started since this driver leads.",
            self.partitions_discovered as f64,
        );
        let name = "weir_driver_partition_lag_records";
        let _ = writeln!(out, "# HELP {name} Records of a partition not yet planned.");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (partition, lag) in &self.lag_by_partition {
            let _ = writeln!(out, "{name}{{job=\"{job}\",partition=\"{partition}\"}} {lag}");
        }
        out
    }
}
