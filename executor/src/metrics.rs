//! The executor's Prometheus metrics: every metric name lives here, registered once in one
//! `prometheus-client` registry that `/metrics` encodes (see `http.rs`).
//!
//! Recorded per task or per sample, never per record: task numbers come from the `TaskMetrics`
//! a finished task reports (so a task whose session was lost, and whose result never reached a
//! driver, counts nothing; the task that runs again counts), the gauges from the attach loop's
//! samples of its running tasks, and the transaction counters from the exactly-once sink.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use weir_common::protocol::TaskMetrics;

/// The content type of [`ExecutorMetrics::encode`]'s text: OpenMetrics, which Prometheus reads.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Task durations from 5 ms up to about 120 s (0.005 × 2.5¹¹), twelve buckets: a task runs for a
/// batch interval or so, and a commit that waits on a slow broker can take a minute.
fn task_duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.005, 2.5, 12)
}

/// How a reported task ended: the `outcome` label of `weir_executor_tasks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskOutcome {
    Succeeded,
    Failed,
    /// Exactly-once: Kafka already held the task's output (a replay), so nothing was written.
    AlreadyCommitted,
}

impl TaskOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskOutcome::Succeeded => "succeeded",
            TaskOutcome::Failed => "failed",
            TaskOutcome::AlreadyCommitted => "already_committed",
        }
    }
}

impl EncodeLabelValue for TaskOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: TaskOutcome,
}

/// The exactly-once sink's share of the metrics: it counts its own commits and aborts.
#[derive(Clone, Default)]
pub struct TransactionCounters {
    committed: Counter,
    aborted: Counter,
}

impl TransactionCounters {
    pub fn committed(&self) {
        self.committed.inc();
    }
    pub fn aborted(&self) {
        self.aborted.inc();
    }
}

/// The executor's metrics; shared (`Arc`) by the attach loop, the sinks and the HTTP server.
pub struct ExecutorMetrics {
    registry: Registry,
    attached: Gauge,
    slots: Gauge,
    running_tasks: Gauge,
    range_lag_records: Gauge,
    producer_queue_messages: Gauge,
    records_read: Counter,
    records_written: Counter,
    records_filtered: Counter,
    records_rejected: Counter,
    bytes_read: Counter,
    bytes_written: Counter,
    tasks: Family<OutcomeLabel, Counter>,
    task_duration_seconds: Histogram,
    transactions: TransactionCounters,
}

impl ExecutorMetrics {
    /// The metrics of executor `executor` of job `job`: every series carries both as labels
    /// (the driver's carry `job` too), so one dashboard filters drivers and executors alike.
    pub fn new(job: &str, executor: &str) -> Self {
        let labels = [
            ("job".into(), job.to_owned().into()),
            ("executor".into(), executor.to_owned().into()),
        ];
        let metrics = ExecutorMetrics {
            registry: Registry::with_labels(labels.into_iter()),
            attached: Gauge::default(),
            slots: Gauge::default(),
            running_tasks: Gauge::default(),
            range_lag_records: Gauge::default(),
            producer_queue_messages: Gauge::default(),
            records_read: Counter::default(),
            records_written: Counter::default(),
            records_filtered: Counter::default(),
            records_rejected: Counter::default(),
            bytes_read: Counter::default(),
            bytes_written: Counter::default(),
            tasks: Family::default(),
            task_duration_seconds: Histogram::new(task_duration_buckets()),
            transactions: TransactionCounters::default(),
        };
        metrics.register()
    }

    /// Registers every metric under its name. Counters are registered without `_total`:
    /// `prometheus-client` appends it.
    fn register(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "weir_executor_attached",
            "1 while attached to a driver, else 0",
            self.attached.clone(),
        );
        r.register("weir_executor_slots", "Tasks this executor runs at once", self.slots.clone());
        r.register("weir_executor_running_tasks", "Tasks running now", self.running_tasks.clone());
        r.register(
            "weir_executor_range_lag_records",
            "Records the ranges of the running tasks still hold to read",
            self.range_lag_records.clone(),
        );
        r.register(
            "weir_executor_producer_queue_messages",
            "Messages waiting in the Kafka producers' queues (librdkafka in-flight count)",
            self.producer_queue_messages.clone(),
        );
        r.register(
            "weir_executor_records_read",
            "Records read from the source by reported tasks",
            self.records_read.clone(),
        );
        r.register(
            "weir_executor_records_written",
            "Records written to the sink by reported tasks",
            self.records_written.clone(),
        );
        r.register(
            "weir_executor_records_filtered",
            "Records a filter step dropped",
            self.records_filtered.clone(),
        );
        r.register(
            "weir_executor_records_rejected",
            "Records a transform rejected or the sink's topic refused (skipped, dead-lettered or failed)",
            self.records_rejected.clone(),
        );
        r.register(
            "weir_executor_bytes_read",
            "Key and payload bytes read from the source",
            self.bytes_read.clone(),
        );
        r.register(
            "weir_executor_bytes_written",
            "Key and payload bytes written to the sink",
            self.bytes_written.clone(),
        );
        r.register("weir_executor_tasks", "Tasks reported, by outcome", self.tasks.clone());
        r.register(
            "weir_executor_task_duration_seconds",
            "How long a task that did not fail took, from its start to its sink's commit",
            self.task_duration_seconds.clone(),
        );
        r.register(
            "weir_executor_transactions_committed",
            "Kafka transactions committed (exactly-once sink)",
            self.transactions.committed.clone(),
        );
        r.register(
            "weir_executor_transactions_aborted",
            "Kafka transactions this executor aborted (exactly-once sink)",
            self.transactions.aborted.clone(),
        );
        self
    }

    /// The counters the exactly-once sink writes.
    pub fn transactions(&self) -> TransactionCounters {
        self.transactions.clone()
    }

    pub fn set_attached(&self, attached: bool) {
        self.attached.set(i64::from(attached));
    }

    pub fn set_slots(&self, slots: u32) {
        self.slots.set(i64::from(slots));
    }

    /// The gauges that follow the running tasks, as the attach loop last saw them.
    pub fn sample(&self, running_tasks: usize, range_lag_records: u64, producer_queue: u64) {
        self.running_tasks.set(saturating_i64(running_tasks as u64));
        self.range_lag_records.set(saturating_i64(range_lag_records));
        self.producer_queue_messages.set(saturating_i64(producer_queue));
    }

    /// A task reported to the driver as done, with the numbers it measured.
    pub fn task_succeeded(&self, task: &TaskMetrics) {
        let outcome = if task.tasks_already_committed > 0 {
            TaskOutcome::AlreadyCommitted
        } else {
            TaskOutcome::Succeeded
        };
        self.tasks.get_or_create(&OutcomeLabel { outcome }).inc();
        self.records_read.inc_by(task.records_in);
        self.records_written.inc_by(task.records_out);
        self.records_filtered.inc_by(task.records_filtered);
        self.records_rejected.inc_by(task.records_rejected);
        self.bytes_read.inc_by(task.bytes_in);
        self.bytes_written.inc_by(task.bytes_out);
        self.task_duration_seconds.observe(task.total_ms as f64 / 1000.0);
    }

    /// A task reported to the driver as failed. What it read before failing is not counted:
    /// the driver runs the task again, and that run counts.
    pub fn task_failed(&self) {
        self.tasks.get_or_create(&OutcomeLabel { outcome: TaskOutcome::Failed }).inc();
    }

    /// Every metric in the Prometheus (OpenMetrics) text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("encoding into a String cannot fail");
        text
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use weir_common::protocol::TaskMetrics;

    use super::{ExecutorMetrics, task_duration_buckets};

    /// The value of the sample named as `series` (a name, or a name and one label such as
    /// `tasks_total{outcome="failed"}`); the `job` and `executor` labels every series has are
    /// not compared.
    fn value(text: &str, series: &str) -> Option<f64> {
        let (name, label) = match series.split_once('{') {
            Some((name, label)) => (name, Some(label.trim_end_matches('}'))),
            None => (series, None),
        };
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .find(|line| {
                let (line_name, rest) = line.split_at(line.find(['{', ' ']).unwrap_or(line.len()));
                line_name == name && label.is_none_or(|label| rest.contains(label))
            })
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn a_reported_task_adds_its_numbers_and_its_outcome() {
        let metrics = ExecutorMetrics::new("j", "e");
        let task = TaskMetrics {
            records_in: 100,
            records_out: 90,
            records_filtered: 7,
            records_rejected: 3,
            bytes_in: 4_000,
            bytes_out: 3_500,
            total_ms: 250,
            ..TaskMetrics::default()
        };
        metrics.task_succeeded(&task);
        metrics.task_succeeded(&task);
        metrics
            .task_succeeded(&TaskMetrics { tasks_already_committed: 1, ..TaskMetrics::default() });
        metrics.task_failed();
        let text = metrics.encode();
        assert_eq!(value(&text, "weir_executor_records_read_total"), Some(200.0), "{text}");
        assert_eq!(value(&text, "weir_executor_records_written_total"), Some(180.0));
        assert_eq!(value(&text, "weir_executor_records_filtered_total"), Some(14.0));
        assert_eq!(value(&text, "weir_executor_records_rejected_total"), Some(6.0));
        assert_eq!(value(&text, "weir_executor_bytes_read_total"), Some(8_000.0));
        assert_eq!(value(&text, "weir_executor_bytes_written_total"), Some(7_000.0));
        let tasks = |outcome: &str| {
            value(&text, &format!("weir_executor_tasks_total{{outcome=\"{outcome}\"}}"))
        };
        assert_eq!(tasks("succeeded"), Some(2.0), "{text}");
        assert_eq!(tasks("already_committed"), Some(1.0));
        assert_eq!(tasks("failed"), Some(1.0));
        assert_eq!(value(&text, "weir_executor_task_duration_seconds_count"), Some(3.0));
        assert_eq!(value(&text, "weir_executor_task_duration_seconds_sum"), Some(0.5));
    }

    #[test]
    fn task_durations_are_bucketed_from_5_ms_to_about_2_minutes() {
        let buckets: Vec<f64> = task_duration_buckets().collect();
        assert_eq!(buckets[0], 0.005);
        let last = *buckets.last().unwrap();
        assert!((100.0..=150.0).contains(&last), "{buckets:?}");
    }

    #[test]
    fn gauges_and_transactions_show_what_was_last_set() {
        let metrics = ExecutorMetrics::new("j", "e");
        metrics.set_slots(4);
        metrics.set_attached(true);
        metrics.sample(2, 1_500, 30);
        let transactions = metrics.transactions();
        transactions.committed();
        transactions.committed();
        transactions.aborted();
        let text = metrics.encode();
        assert_eq!(value(&text, "weir_executor_slots"), Some(4.0), "{text}");
        assert_eq!(value(&text, "weir_executor_attached"), Some(1.0));
        assert_eq!(value(&text, "weir_executor_running_tasks"), Some(2.0));
        assert_eq!(value(&text, "weir_executor_range_lag_records"), Some(1_500.0));
        assert_eq!(value(&text, "weir_executor_producer_queue_messages"), Some(30.0));
        assert_eq!(value(&text, "weir_executor_transactions_committed_total"), Some(2.0));
        assert_eq!(value(&text, "weir_executor_transactions_aborted_total"), Some(1.0));
        assert!(text.contains("# TYPE weir_executor_task_duration_seconds histogram"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
