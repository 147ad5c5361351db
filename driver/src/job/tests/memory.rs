//! In-memory versions of the driver's I/O (`crate::io`), for the job loop's unit tests: a
//! checkpoint store that can refuse writes (etcd unreachable) or lose its leadership, a source
//! whose partitions and log ends a test sets, and a group with no progress of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use weir_common::batch::BatchPlan;
use weir_common::config::StartingOffsets;
use weir_common::lanes::LaneMap;
use weir_common::{OffsetsCheckpoint, TopicPartition};

use crate::error::DriverError;
use crate::io::{CheckpointStore, Control, JobGroup, Offsets, SourceMetadata, Stored};
use weir_common::control::JobState;

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<StoreState>,
}

#[derive(Default)]
struct StoreState {
    offsets: Option<OffsetsCheckpoint>,
    lanes: LaneMap,
    batches: BTreeMap<u64, BatchPlan>,
    /// Every committed batch id, in commit order.
    commits: Vec<u64>,
    /// Writes still to refuse as if etcd were unreachable.
    failing_writes: u32,
    refused_writes: u32,
    leader: bool,
    control: Control,
}

impl MemoryStore {
    /// A store led by this driver, holding what an earlier driver left.
    pub fn new(stored: Stored) -> Self {
        let state = StoreState {
            offsets: stored.offsets,
            lanes: stored.lanes,
            batches: stored.pending.into_iter().map(|p| (p.id, p)).collect(),
            leader: true,
            ..StoreState::default()
        };
        MemoryStore { state: Mutex::new(state) }
    }

    /// The next `n` writes fail as etcd being unreachable would.
    pub fn fail_next_writes(&self, n: u32) {
        self.state.lock().unwrap().failing_writes = n;
    }

    pub fn refused_writes(&self) -> u32 {
        self.state.lock().unwrap().refused_writes
    }

    /// Another driver took the job: every write from now on is refused as etcd's guard would.
    pub fn lose_leadership(&self) {
        self.state.lock().unwrap().leader = false;
    }

    /// An operator sets the job's state (as `weirctl job stop|resume` would).
    pub fn set_state(&self, state: JobState) {
        let mut s = self.state.lock().unwrap();
        s.control.state = state;
        s.control.revision += 1;
    }

    pub fn job_state(&self) -> JobState {
        self.state.lock().unwrap().control.state
    }

    /// An operator asks an executor to leave (as `weirctl executors drain` would).
    pub fn request_drain(&self, executor: &str) {
        self.state.lock().unwrap().control.drains.push(executor.to_owned());
    }

    pub fn drain_requests(&self) -> Vec<String> {
        self.state.lock().unwrap().control.drains.clone()
    }

    /// An operator moves a partition's committed offset (as `weirctl offsets reset` would).
    pub fn reset_offset(&self, tp: &TopicPartition, offset: i64) {
        let mut s = self.state.lock().unwrap();
        s.offsets.get_or_insert_default().next_offsets.insert(tp.clone(), offset);
    }

    pub fn commits(&self) -> Vec<u64> {
        self.state.lock().unwrap().commits.clone()
    }

    pub fn recorded(&self) -> Vec<u64> {
        self.state.lock().unwrap().batches.keys().copied().collect()
    }

    pub fn committed_offsets(&self) -> Offsets {
        self.state.lock().unwrap().offsets.clone().unwrap_or_default().next_offsets
    }

    fn write(&self, apply: impl FnOnce(&mut StoreState)) -> Result<(), DriverError> {
        let mut state = self.state.lock().unwrap();
        if state.failing_writes > 0 {
            state.failing_writes -= 1;
            state.refused_writes += 1;
            let source = etcd_client::Error::InvalidArgs("etcd unreachable (test)".into());
            return Err(DriverError::Etcd { endpoints: "memory".into(), source });
        }
        if !state.leader {
            return Err(DriverError::LostLeadership { job: "j".into() });
        }
        apply(&mut state);
        Ok(())
    }
}

#[async_trait]
impl CheckpointStore for MemoryStore {
    async fn load(&self) -> Result<Stored, DriverError> {
        let state = self.state.lock().unwrap();
        let last = state.offsets.as_ref().and_then(|o| o.last_committed_batch);
        Ok(Stored {
            offsets: state.offsets.clone(),
            lanes: state.lanes.clone(),
            pending: state
                .batches
                .values()
                .filter(|p| last.is_none_or(|l| p.id > l))
                .cloned()
                .collect(),
        })
    }

    async fn write_offsets_and_lanes(
        &self,
        offsets: &OffsetsCheckpoint,
        lanes: &LaneMap,
    ) -> Result<(), DriverError> {
        self.write(|s| {
            s.offsets = Some(offsets.clone());
            s.lanes = lanes.clone();
        })
    }

    async fn record_batch(&self, plan: &BatchPlan) -> Result<(), DriverError> {
        self.write(|s| {
            s.batches.insert(plan.id, plan.clone());
        })
    }

    async fn commit_batch(&self, offsets: &OffsetsCheckpoint) -> Result<(), DriverError> {
        self.write(|s| {
            s.offsets = Some(offsets.clone());
            s.commits.extend(offsets.last_committed_batch);
        })
    }

    async fn read_control(&self) -> Result<Control, DriverError> {
        Ok(self.state.lock().unwrap().control.clone())
    }

    async fn set_state(&self, seen: &Control, state: JobState) -> Result<bool, DriverError> {
        let mut confirmed = false;
        self.write(|s| {
            if s.control.revision == seen.revision {
                s.control.state = state;
                s.control.revision += 1;
                confirmed = true;
            }
        })?;
        Ok(confirmed)
    }

    async fn forget_drain(&self, executor: &str) -> Result<(), DriverError> {
        self.write(|s| s.control.drains.retain(|e| e != executor))
    }
}

/// Partitions with their log start and end.
#[derive(Default)]
pub struct MemorySource {
    logs: Mutex<BTreeMap<TopicPartition, (i64, i64)>>,
}

impl MemorySource {
    /// Sets a partition's log: its first offset and its end.
    pub fn set(&self, tp: &TopicPartition, earliest: i64, latest: i64) {
        self.logs.lock().unwrap().insert(tp.clone(), (earliest, latest));
    }

    fn offsets(&self, partitions: &[TopicPartition], end: bool) -> Offsets {
        let logs = self.logs.lock().unwrap();
        partitions
            .iter()
            .filter_map(|tp| logs.get(tp).map(|&(e, l)| (tp.clone(), if end { l } else { e })))
            .collect()
    }
}

#[async_trait]
impl SourceMetadata for MemorySource {
    async fn partitions(
        &self,
        _known: BTreeSet<String>,
    ) -> Result<Vec<TopicPartition>, DriverError> {
        Ok(self.logs.lock().unwrap().keys().cloned().collect())
    }

    async fn deleted(&self, topics: Vec<String>) -> Result<Vec<String>, DriverError> {
        let logs = self.logs.lock().unwrap();
        Ok(topics.into_iter().filter(|t| !logs.keys().any(|tp| &tp.topic == t)).collect())
    }

    async fn latest(&self, partitions: Vec<TopicPartition>) -> Result<Offsets, DriverError> {
        Ok(self.offsets(&partitions, true))
    }

    async fn earliest(&self, partitions: Vec<TopicPartition>) -> Result<Offsets, DriverError> {
        Ok(self.offsets(&partitions, false))
    }

    async fn starting_offsets(
        &self,
        partitions: Vec<TopicPartition>,
        starting: StartingOffsets,
    ) -> Result<Offsets, DriverError> {
        Ok(self.offsets(&partitions, starting == StartingOffsets::Latest))
    }
}

/// The group; remembers the lanes it was asked to fence.
#[derive(Default)]
pub struct MemoryGroup {
    pub fenced: std::sync::Mutex<Vec<weir_common::batch::LaneId>>,
}

#[async_trait]
impl JobGroup for MemoryGroup {
    fn name(&self) -> &str {
        "weir.j"
    }

    async fn committed(&self, _partitions: Vec<TopicPartition>) -> Result<Offsets, DriverError> {
        Ok(Offsets::new())
    }

    fn publish(&self, _next_offsets: &Offsets) {}

    async fn fence_lanes(&self, lanes: Vec<weir_common::batch::LaneId>) -> Result<(), DriverError> {
        self.fenced.lock().unwrap().extend(lanes);
        Ok(())
    }
}
