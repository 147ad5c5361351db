//! The driver <-> executor protocol's domain side: the protocol version, task identity and task
//! metrics, and the leader record executors read to find the driver. Conversions to and from
//! `weir.v1` live here and nowhere else.

use std::fmt;

use prost::Message;
use weir_proto::v1 as pb;

use crate::batch::LaneId;
use crate::error::{ProtoError, check_format_version, decode};
use crate::failure::FailureKind;

/// Bumped when driver and executor can no longer talk; the driver refuses other versions.
/// 2: a task failure carries its `FailureKind` instead of a `retryable` flag.
pub const PROTOCOL_VERSION: u32 = 2;

pub const LEADER_FORMAT_VERSION: u32 = 1;

/// One attempt of one lane's task of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    pub batch: u64,
    pub lane: LaneId,
    pub attempt: u32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch {} lane {} attempt {}", self.batch, self.lane, self.attempt)
    }
}

impl From<TaskId> for pb::TaskId {
    fn from(t: TaskId) -> Self {
        pb::TaskId { batch_id: t.batch, lane: t.lane, attempt: t.attempt }
    }
}

impl From<pb::TaskId> for TaskId {
    fn from(t: pb::TaskId) -> Self {
        TaskId { batch: t.batch_id, lane: t.lane, attempt: t.attempt }
    }
}

/// What a task did, reported with its success.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskMetrics {
    pub records_in: u64,
    pub records_out: u64,
    pub records_filtered: u64,
    pub records_rejected: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub read_ms: u64,
    pub flush_ms: u64,
    pub total_ms: u64,
    /// Exactly-once: tasks whose output Kafka already held (a replay), so nothing was written.
    pub tasks_already_committed: u64,
    /// Records of the task's ranges already gone from Kafka when it read them (skipped).
    pub records_lost: u64,
}

impl TaskMetrics {
    pub fn add(&mut self, other: &TaskMetrics) {
        self.records_in += other.records_in;
        self.records_out += other.records_out;
        self.records_filtered += other.records_filtered;
        self.records_rejected += other.records_rejected;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.read_ms += other.read_ms;
        self.flush_ms += other.flush_ms;
        self.total_ms = self.total_ms.max(other.total_ms);
        self.tasks_already_committed += other.tasks_already_committed;
        self.records_lost += other.records_lost;
    }
}

impl From<FailureKind> for pb::FailureKind {
    fn from(kind: FailureKind) -> Self {
        match kind {
            FailureKind::Transient => pb::FailureKind::Transient,
            FailureKind::Config => pb::FailureKind::Config,
            FailureKind::Data => pb::FailureKind::Data,
            FailureKind::Unavailable => pb::FailureKind::Unavailable,
        }
    }
}

impl From<pb::FailureKind> for FailureKind {
    /// An unspecified kind counts as transient: the task is retried, and the job still stops
    /// after `driver.max_task_attempts`.
    fn from(kind: pb::FailureKind) -> Self {
        match kind {
            pb::FailureKind::Unspecified | pb::FailureKind::Transient => FailureKind::Transient,
            pb::FailureKind::Config => FailureKind::Config,
            pb::FailureKind::Data => FailureKind::Data,
            pb::FailureKind::Unavailable => FailureKind::Unavailable,
        }
    }
}

impl From<TaskMetrics> for pb::TaskMetrics {
    fn from(m: TaskMetrics) -> Self {
        pb::TaskMetrics {
            records_in: m.records_in,
            records_out: m.records_out,
            records_filtered: m.records_filtered,
            records_rejected: m.records_rejected,
            bytes_in: m.bytes_in,
            bytes_out: m.bytes_out,
            read_ms: m.read_ms,
            flush_ms: m.flush_ms,
            total_ms: m.total_ms,
            tasks_already_committed: m.tasks_already_committed,
            records_lost: m.records_lost,
        }
    }
}

impl From<pb::TaskMetrics> for TaskMetrics {
    fn from(m: pb::TaskMetrics) -> Self {
        TaskMetrics {
            records_in: m.records_in,
            records_out: m.records_out,
            records_filtered: m.records_filtered,
            records_rejected: m.records_rejected,
            bytes_in: m.bytes_in,
            bytes_out: m.bytes_out,
            read_ms: m.read_ms,
            flush_ms: m.flush_ms,
            total_ms: m.total_ms,
            tasks_already_committed: m.tasks_already_committed,
            records_lost: m.records_lost,
        }
    }
}

/// The value of `{prefix}/jobs/{job}/leader`: who leads and where executors attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderRecord {
    pub driver_id: String,
    pub address: String,
    pub generation: u64,
    /// Where the driver serves `/api/status`; `None` when its HTTP server is off.
    pub http_address: Option<String>,
    /// When this driver became the leader, milliseconds since the epoch (0 in a registration).
    pub elected_at_ms: i64,
}

impl LeaderRecord {
    pub fn encode(&self) -> Vec<u8> {
        pb::LeaderRecord {
            format_version: LEADER_FORMAT_VERSION,
            driver_id: self.driver_id.clone(),
            address: self.address.clone(),
            generation: self.generation,
            http_address: self.http_address.clone().unwrap_or_default(),
            elected_at_ms: self.elected_at_ms,
        }
        .encode_to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        let v = decode::<pb::LeaderRecord>("LeaderRecord", bytes)?;
        check_format_version("LeaderRecord", v.format_version, LEADER_FORMAT_VERSION)?;
        Ok(LeaderRecord {
            driver_id: v.driver_id,
            address: v.address,
            generation: v.generation,
            http_address: Some(v.http_address).filter(|a| !a.is_empty()),
            elected_at_ms: v.elected_at_ms,
        })
    }
}

/// The etcd keys of one job, in one place (`{prefix}/jobs/{job}/...`).
#[derive(Debug, Clone)]
pub struct JobKeys {
    root: String,
}

impl JobKeys {
    pub fn new(prefix: &str, job: &str) -> Self {
        JobKeys { root: format!("{}/jobs/{job}", prefix.trim_end_matches('/')) }
    }
    pub fn leader(&self) -> String {
        format!("{}/leader", self.root)
    }
    pub fn generation(&self) -> String {
        format!("{}/generation", self.root)
    }
    pub fn offsets(&self) -> String {
        format!("{}/offsets", self.root)
    }
    pub fn lanes(&self) -> String {
        format!("{}/lanes", self.root)
    }
    /// Zero-padded so that etcd's byte order is batch order.
    pub fn batch(&self, id: u64) -> String {
        format!("{}/batches/{id:020}", self.root)
    }
    pub fn batches_prefix(&self) -> String {
        format!("{}/batches/", self.root)
    }
    /// Every key of the job ends with `/` after this; `weirctl job delete` removes them all.
    pub fn job_prefix(&self) -> String {
        format!("{}/", self.root)
    }
    /// A running driver's registration (leading or standing by), bound to its lease.
    pub fn driver(&self, driver_id: &str) -> String {
        format!("{}/drivers/{driver_id}", self.root)
    }
    pub fn drivers_prefix(&self) -> String {
        format!("{}/drivers/", self.root)
    }
    /// The operators' requests: the job state and executor drains.
    pub fn control_prefix(&self) -> String {
        format!("{}/control/", self.root)
    }
    pub fn control_state(&self) -> String {
        format!("{}/control/state", self.root)
    }
    pub fn drain(&self, executor: &str) -> String {
        format!("{}/control/drain/{executor}", self.root)
    }
    pub fn drain_prefix(&self) -> String {
        format!("{}/control/drain/", self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_keys_sort_in_batch_order() {
        let keys = JobKeys::new("/weir/", "job");
        assert_eq!(keys.leader(), "/weir/jobs/job/leader");
        assert!(keys.batch(9) < keys.batch(10));
        assert!(keys.batch(10).starts_with(&keys.batches_prefix()));
    }

    #[test]
    fn leader_record_round_trips() {
        let r = LeaderRecord {
            driver_id: "d1".into(),
            address: "http://h:1".into(),
            generation: 4,
            http_address: Some("http://h:2".into()),
            elected_at_ms: 1_700_000_000_000,
        };
        assert_eq!(LeaderRecord::decode(&r.encode()).unwrap(), r);
    }
}
