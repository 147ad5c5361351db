//! The driver's I/O behind small traits: the checkpoint store (etcd), the source's metadata and
//! offsets (Kafka), and the job's consumer group (Kafka). The job loop sees only these traits, so
//! it runs in unit tests against the in-memory versions in `job/tests/memory.rs`, under tokio's
//! paused clock. The real implementations live beside the services they speak to: `etcd.rs`,
//! `source.rs`, `group.rs`.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use weir_common::batch::{BatchPlan, LaneId};
use weir_common::config::StartingOffsets;
use weir_common::control::JobState;
use weir_common::lanes::LaneMap;
use weir_common::{OffsetsCheckpoint, TopicPartition};

use crate::error::DriverError;

/// Offsets per partition.
pub type Offsets = BTreeMap<TopicPartition, i64>;

/// What a new leader reads back from the checkpoint store.
#[derive(Debug, Default, Clone)]
pub struct Stored {
    pub offsets: Option<OffsetsCheckpoint>,
    pub lanes: LaneMap,
    /// Recorded batches not yet committed, in order: they are replayed as recorded.
    pub pending: Vec<BatchPlan>,
}

/// What operators asked of the job (`weirctl job stop|resume`, `weirctl executors drain`), as
/// the driver last read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Control {
    pub state: JobState,
    /// Who set the state and when, for the status.
    pub changed_by: String,
    pub changed_at_ms: i64,
    /// etcd's mod revision of the state key (0: absent). A stop is confirmed only if the state
    /// has not changed since it was read.
    pub revision: i64,
    /// Executors an operator asked to leave.
    pub drains: Vec<String>,
}

/// The job's checkpoint. Every write is guarded by this driver's leadership: a write after the
/// leadership is gone fails with `DriverError::LostLeadership` and changes nothing.
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    async fn load(&self) -> Result<Stored, DriverError>;
    /// Writes the offsets and lane map (a first start, partitions discovered or forgotten).
    async fn write_offsets_and_lanes(
        &self,
        offsets: &OffsetsCheckpoint,
        lanes: &LaneMap,
    ) -> Result<(), DriverError>;
    /// Records a batch's plan before any of its tasks is dispatched (write-ahead).
    async fn record_batch(&self, plan: &BatchPlan) -> Result<(), DriverError>;
    /// Commits a batch: the new offsets, carrying `last_committed_batch`.
    async fn commit_batch(&self, offsets: &OffsetsCheckpoint) -> Result<(), DriverError>;
    /// Reads the operators' requests.
    async fn read_control(&self) -> Result<Control, DriverError>;
    /// Sets the job's state (the driver confirms a stop, or holds one while it finishes
    /// recorded batches): written only if the state key is still at `seen.revision`. Returns
    /// whether it was written.
    async fn set_state(&self, seen: &Control, state: JobState) -> Result<bool, DriverError>;
    /// Deletes an executor's drain request once acted on.
    async fn forget_drain(&self, executor: &str) -> Result<(), DriverError>;
}

/// The source cluster as the planner needs it: which partitions exist and where their logs
/// start and end.
#[async_trait]
pub trait SourceMetadata: Send + Sync {
    /// Every partition the job reads now. Listed topics in `known` that are missing are left
    /// out rather than failing the call: the caller asks `deleted` about them.
    async fn partitions(&self, known: BTreeSet<String>)
    -> Result<Vec<TopicPartition>, DriverError>;
    /// Which of `topics` the cluster says do not exist.
    async fn deleted(&self, topics: Vec<String>) -> Result<Vec<String>, DriverError>;
    /// The end of each partition's log, as a `read_committed` reader sees it.
    async fn latest(&self, partitions: Vec<TopicPartition>) -> Result<Offsets, DriverError>;
    /// The first offset still in each partition's log.
    async fn earliest(&self, partitions: Vec<TopicPartition>) -> Result<Offsets, DriverError>;
    /// Where each partition starts on a first start, by `source.starting_offsets`.
    async fn starting_offsets(
        &self,
        partitions: Vec<TopicPartition>,
        starting: StartingOffsets,
    ) -> Result<Offsets, DriverError>;
}

/// The consumer group `weir.{job}`, which shows the job's progress to Kafka's own tools.
#[async_trait]
pub trait JobGroup: Send + Sync {
    fn name(&self) -> &str;
    /// The group's committed offsets for `partitions` (those without one left out).
    async fn committed(&self, partitions: Vec<TopicPartition>) -> Result<Offsets, DriverError>;
    /// Publishes the committed progress; best effort (etcd is the authority), never fails.
    fn publish(&self, next_offsets: &Offsets);
    /// Fences the transactional producers of `lanes` (retired by a regrouping): after this, no
    /// producer of those lanes can commit, and their open transactions are aborted. Nothing to
    /// do unless the job writes Kafka transactions.
    async fn fence_lanes(&self, lanes: Vec<LaneId>) -> Result<(), DriverError>;
}

/// Runs blocking librdkafka work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DriverError> + Send + 'static,
) -> Result<T, DriverError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(DriverError::Internal(format!("a Kafka metadata thread failed: {e}")))
    })
}
