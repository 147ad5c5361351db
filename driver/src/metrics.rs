//! The driver's Prometheus metrics (`/metrics`), kept by `prometheus-client`: one registry made
//! at start, so a standby exports them too (`weir_driver_leader 0`), and updated by the job loop
//! as batches commit and tasks end. Every series carries the `job` label. Metric names live here
//! and nowhere else (`weir_driver_<name>[_<unit>]`; counters end in `_total`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use weir_common::protocol::TaskMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// What the job can wait for; `weir_driver_waiting{reason}` is 1 for each that holds now.
pub const WAIT_REASONS: [&str; 6] = ["stopped", "etcd", "kafka", "no_executor", "slots", "leader"];

type Counters = Family<TopicLabel, Counter>;

pub struct DriverMetrics {
    registry: Registry,
    pub leader: Gauge,
    pub generation: Gauge,
    pub job_stopped: Gauge,
    pub executors: Gauge,
    pub batches_in_flight: Gauge,
    pub batches_committed: Counter,
    pub empty_rounds: Counter,
    pub partitions_discovered: Counter,
    pub batch_processing: Histogram,
    pub batch_scheduling_delay: Histogram,
    pub batch_total_delay: Histogram,
    pub task_duration: Histogram,
    pub records_in: Counters,
    pub records_out: Counters,
    pub records_filtered: Counters,
    pub records_rejected: Counters,
    pub records_lost: Counters,
    pub records_abandoned: Counters,
    pub tasks_already_committed: Counter,
    pub task_failures: Family<KindLabel, Counter>,
    pub executors_lost: Counter,
    waiting: Family<ReasonLabel, Gauge>,
    /// The series of `waiting`, one per reason, made once: the loop sets them after every event.
    waiting_by_reason: Vec<(&'static str, Gauge)>,
    pub lag: Gauge,
    pub oldest_unplanned_age: Gauge<f64, AtomicU64>,
    pub partition_lag: Family<PartitionLabel, Gauge>,
    pub rate: Gauge<f64, AtomicU64>,
    pub batch_interval: Gauge<f64, AtomicU64>,
    partition_metrics: bool,
}

/// Seconds, from 5 ms to about 3 minutes, doubling.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

impl DriverMetrics {
    /// The metrics of job `job`; `partition_metrics` (`driver.partition_metrics`) says whether
    /// lag is exported per partition.
    pub fn new(job: &str, partition_metrics: bool) -> Self {
        let mut registry = Registry::with_prefix_and_labels(
            "weir_driver",
            [("job".into(), job.to_owned().into())].into_iter(),
        );
        let m = DriverMetrics {
            leader: Gauge::default(),
            generation: Gauge::default(),
            job_stopped: Gauge::default(),
            executors: Gauge::default(),
            batches_in_flight: Gauge::default(),
            batches_committed: Counter::default(),
            empty_rounds: Counter::default(),
            partitions_discovered: Counter::default(),
            batch_processing: seconds_histogram(),
            batch_scheduling_delay: seconds_histogram(),
            batch_total_delay: seconds_histogram(),
            task_duration: seconds_histogram(),
            records_in: Counters::default(),
            records_out: Counters::default(),
            records_filtered: Counters::default(),
            records_rejected: Counters::default(),
            records_lost: Counters::default(),
            records_abandoned: Counters::default(),
            tasks_already_committed: Counter::default(),
            task_failures: Family::default(),
            executors_lost: Counter::default(),
            waiting: Family::default(),
            waiting_by_reason: Vec::new(),
            lag: Gauge::default(),
            oldest_unplanned_age: Gauge::default(),
            partition_lag: Family::default(),
            rate: Gauge::default(),
            batch_interval: Gauge::default(),
            partition_metrics,
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("leader", "1 while this driver leads the job, 0 on a standby", m.leader.clone());
        r.register(
            "generation",
            "Leader generation of this driver (0 on a standby)",
            m.generation.clone(),
        );
        r.register(
            "job_stopped",
            "1 while an operator holds the job (stop requested or stopped)",
            m.job_stopped.clone(),
        );
        r.register("executors", "Executors attached", m.executors.clone());
        r.register(
            "batches_in_flight",
            "Batches recorded, not yet committed",
            m.batches_in_flight.clone(),
        );
        r.register(
            "batches_committed",
            "Batches committed since this driver leads",
            m.batches_committed.clone(),
        );
        r.register(
            "empty_rounds",
            "Planning rounds that found no new records",
            m.empty_rounds.clone(),
        );
        r.register(
            "partitions_discovered",
            "Partitions found and started since this driver leads",
            m.partitions_discovered.clone(),
        );
        let unit = Unit::Seconds;
        r.register_with_unit(
            "batch_processing",
            "From a batch's first dispatch to its commit",
            unit.clone(),
            m.batch_processing.clone(),
        );
        r.register_with_unit(
            "batch_scheduling_delay",
            "From a batch's record to its first dispatch",
            unit.clone(),
            m.batch_scheduling_delay.clone(),
        );
        r.register_with_unit(
            "batch_total_delay",
            "From a batch's planning to its commit",
            unit.clone(),
            m.batch_total_delay.clone(),
        );
        r.register_with_unit(
            "task_duration",
            "A successful task's run on its executor",
            unit.clone(),
            m.task_duration.clone(),
        );
        r.register(
            "records_in",
            "Records read by committed batches, per source topic",
            m.records_in.clone(),
        );
        r.register(
            "records_out",
            "Records written by committed batches, per source topic",
            m.records_out.clone(),
        );
        r.register(
            "records_filtered",
            "Records a filter dropped, per source topic",
            m.records_filtered.clone(),
        );
        r.register("records_rejected", "Records rejected by a transform or refused by the sink's topic (dead-lettered or skipped by on_record_error), per source topic", m.records_rejected.clone());
        r.register("records_lost", "Records Kafka no longer held when the job came to read them (on_data_loss = skip), per source topic", m.records_lost.clone());
        r.register("records_abandoned", "At-most-once: offsets of tasks that failed or were lost and were not run again, per source topic", m.records_abandoned.clone());
        r.register(
            "tasks_already_committed",
            "Exactly-once: replayed tasks whose output Kafka already held, not written again",
            m.tasks_already_committed.clone(),
        );
        r.register(
            "task_failures",
            "Task failures reported by executors, by kind (transient, config, data)",
            m.task_failures.clone(),
        );
        r.register(
            "executors_lost",
            "Executors dropped for silence or a broken stream while running tasks",
            m.executors_lost.clone(),
        );
        r.register("waiting", "1 for each thing the job waits for now (reason: stopped, etcd, kafka, no_executor, slots, leader)", m.waiting.clone());
        r.register_with_unit(
            "lag",
            "Source records not yet planned",
            Unit::Other("records".into()),
            m.lag.clone(),
        );
        r.register_with_unit(
            "oldest_unplanned_age",
            "How long ago the driver first saw the oldest record not yet planned",
            unit,
            m.oldest_unplanned_age.clone(),
        );
        if partition_metrics {
            r.register_with_unit(
                "partition_lag",
                "Records of a partition not yet planned",
                Unit::Other("records".into()),
                m.partition_lag.clone(),
            );
        }
        r.register_with_unit(
            "batch_interval",
            "job.batch_interval: how often a batch is planned",
            Unit::Seconds,
            m.batch_interval.clone(),
        );
        r.register(
            "rate_records_per_second",
            "The rate in force from the rate controller (0: none yet)",
            m.rate.clone(),
        );
        // Series that exist from the start at 0, so `increase()` and alerts see the first one.
        let waiting_by_reason = WAIT_REASONS
            .iter()
            .map(|&reason| {
                let label = ReasonLabel { reason: reason.to_owned() };
                (reason, m.waiting.get_or_create(&label).clone())
            })
            .collect();
        for kind in ["transient", "config", "data", "stalled"] {
            drop(m.task_failures.get_or_create(&KindLabel { kind: kind.to_owned() }));
        }
        DriverMetrics { registry, waiting_by_reason, ..m }
    }

    /// Counts a committed batch's records per source topic.
    pub fn committed_records(&self, by_topic: &std::collections::BTreeMap<String, TaskMetrics>) {
        for (topic, m) in by_topic {
            let label = TopicLabel { topic: topic.clone() };
            self.records_in.get_or_create(&label).inc_by(m.records_in);
            self.records_out.get_or_create(&label).inc_by(m.records_out);
            self.records_filtered.get_or_create(&label).inc_by(m.records_filtered);
            self.records_rejected.get_or_create(&label).inc_by(m.records_rejected);
            self.records_lost.get_or_create(&label).inc_by(m.records_lost);
            drop(self.records_abandoned.get_or_create(&label));
            self.tasks_already_committed.inc_by(m.tasks_already_committed);
        }
    }

    pub fn per_topic(&self, counters: &Counters, topic: &str, n: u64) {
        counters.get_or_create(&TopicLabel { topic: topic.to_owned() }).inc_by(n);
    }

    pub fn partition_lag(&self, lags: &std::collections::BTreeMap<String, i64>) {
        if self.partition_metrics {
            self.partition_lag.clear();
            for (partition, lag) in lags {
                self.partition_lag
                    .get_or_create(&PartitionLabel { partition: partition.clone() })
                    .set(*lag);
            }
        }
    }

    /// Sets `weir_driver_waiting` to 1 for each of `reasons` and 0 for the rest.
    pub fn waiting_for(&self, reasons: &[&str]) {
        for (reason, gauge) in &self.waiting_by_reason {
            gauge.set(i64::from(reasons.contains(reason)));
        }
    }

    /// Prometheus text exposition (OpenMetrics text, which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_committed_batch_shows_in_the_counters_and_histograms() {
        let m = DriverMetrics::new("j", true);
        let mut by_topic = std::collections::BTreeMap::new();
        by_topic.insert(
            "in".to_owned(),
            TaskMetrics { records_in: 10, records_out: 7, ..Default::default() },
        );
        m.committed_records(&by_topic);
        m.batch_processing.observe(0.25);
        m.waiting_for(&["kafka"]);
        let text = m.encode();
        assert!(text.contains("weir_driver_records_in_total{job=\"j\",topic=\"in\"} 10"), "{text}");
        assert!(text.contains("weir_driver_records_out_total{job=\"j\",topic=\"in\"} 7"), "{text}");
        assert!(text.contains("weir_driver_batch_processing_seconds_count{job=\"j\"} 1"), "{text}");
        assert!(text.contains("weir_driver_waiting{job=\"j\",reason=\"kafka\"} 1"), "{text}");
        assert!(text.contains("weir_driver_waiting{job=\"j\",reason=\"etcd\"} 0"), "{text}");
    }

    #[test]
    fn partition_lag_can_be_turned_off() {
        let lags = [("in-0".to_owned(), 5)].into_iter().collect();
        let on = DriverMetrics::new("j", true);
        on.partition_lag(&lags);
        assert!(
            on.encode()
                .contains("weir_driver_partition_lag_records{job=\"j\",partition=\"in-0\"} 5")
        );
        let off = DriverMetrics::new("j", false);
        off.partition_lag(&lags);
        assert!(!off.encode().contains("partition_lag"));
    }
}
