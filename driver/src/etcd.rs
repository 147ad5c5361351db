//! The checkpoint store: every etcd read and write of the driver, under one job's keys. Every
//! write after election is a transaction guarded by the leader key's create revision, so a
//! deposed driver can never write (DESIGN §4).

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use weir_common::OffsetsCheckpoint;
use weir_common::batch::BatchPlan;
use weir_common::control::{JobControl, JobState};
use weir_common::lanes::LaneMap;
use weir_common::protocol::JobKeys;

use crate::error::DriverError;
use crate::io::{CheckpointStore, Control, Stored};
use crate::job::now_ms;

/// How many committed batch records stay in etcd for history.
const COMMITTED_BATCHES_KEPT: u64 = 10;

#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    endpoints: String,
    keys: JobKeys,
    job: String,
    /// The create revision of our leader key; every write compares it.
    leader_revision: i64,
}

impl EtcdStore {
    pub fn new(
        client: Client,
        endpoints: String,
        keys: JobKeys,
        job: String,
        leader_revision: i64,
    ) -> Self {
        EtcdStore { client, endpoints, keys, job, leader_revision }
    }

    fn etcd_error(&self, source: etcd_client::Error) -> DriverError {
        DriverError::etcd(&self.endpoints, source)
    }

    async fn guarded(&self, ops: Vec<TxnOp>) -> Result<(), DriverError> {
        if self.guarded_if(Vec::new(), ops).await? {
            Ok(())
        } else {
            Err(DriverError::LostLeadership { job: self.job.clone() })
        }
    }

    /// Applies `ops` if this driver still leads and every one of `more` holds. `Ok(false)`: a
    /// condition of `more` failed; lost leadership is an error.
    async fn guarded_if(&self, more: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool, DriverError> {
        let leader = self.keys.leader();
        let mut compares =
            vec![Compare::create_revision(leader.as_str(), CompareOp::Equal, self.leader_revision)];
        compares.extend(more);
        let txn =
            Txn::new().when(compares).and_then(ops).or_else([TxnOp::get(leader.as_str(), None)]);
        let resp = self.client.kv_client().txn(txn).await.map_err(|e| self.etcd_error(e))?;
        if resp.succeeded() {
            return Ok(true);
        }
        let still_leading = resp.op_responses().into_iter().any(|op| match op {
            etcd_client::TxnOpResponse::Get(get) => {
                get.kvs().first().is_some_and(|kv| kv.create_revision() == self.leader_revision)
            }
            _ => false,
        });
        if still_leading {
            Ok(false)
        } else {
            Err(DriverError::LostLeadership { job: self.job.clone() })
        }
    }
}

#[async_trait]
impl CheckpointStore for EtcdStore {
    async fn load(&self) -> Result<Stored, DriverError> {
        let mut kv = self.client.kv_client();
        let offsets_key = self.keys.offsets();
        let offsets = match kv
            .get(offsets_key.as_str(), None)
            .await
            .map_err(|e| self.etcd_error(e))?
            .kvs()
            .first()
        {
            Some(kv) => Some(
                OffsetsCheckpoint::decode(kv.value())
                    .map_err(|source| DriverError::Corrupt { key: offsets_key.clone(), source })?,
            ),
            None => None,
        };
        let lanes_key = self.keys.lanes();
        let lanes = match kv
            .get(lanes_key.as_str(), None)
            .await
            .map_err(|e| self.etcd_error(e))?
            .kvs()
            .first()
        {
            Some(kv) => LaneMap::decode(kv.value())
                .map_err(|source| DriverError::Corrupt { key: lanes_key.clone(), source })?,
            None => LaneMap::default(),
        };
        let last_committed =
            offsets.as_ref().and_then(|o: &OffsetsCheckpoint| o.last_committed_batch);
        let prefix = self.keys.batches_prefix();
        let resp = kv
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| self.etcd_error(e))?;
        let mut pending = Vec::new();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let plan = BatchPlan::decode(kv.value())
                .map_err(|source| DriverError::Corrupt { key, source })?;
            if last_committed.is_none_or(|c| plan.id > c) {
                pending.push(plan);
            }
        }
        pending.sort_by_key(|p| p.id);
        Ok(Stored { offsets, lanes, pending })
    }

    async fn write_offsets_and_lanes(
        &self,
        offsets: &OffsetsCheckpoint,
        lanes: &LaneMap,
    ) -> Result<(), DriverError> {
        self.guarded(vec![
            TxnOp::put(self.keys.offsets(), offsets.encode(), None),
            TxnOp::put(self.keys.lanes(), lanes.encode(), None),
        ])
        .await
    }

    async fn record_batch(&self, plan: &BatchPlan) -> Result<(), DriverError> {
        self.guarded(vec![TxnOp::put(self.keys.batch(plan.id), plan.encode(), None)]).await
    }

    /// One guarded transaction that also drops the batch record falling out of the history
    /// window.
    async fn commit_batch(&self, offsets: &OffsetsCheckpoint) -> Result<(), DriverError> {
        let mut ops = vec![TxnOp::put(self.keys.offsets(), offsets.encode(), None)];
        if let Some(old) =
            offsets.last_committed_batch.and_then(|b| b.checked_sub(COMMITTED_BATCHES_KEPT))
        {
            ops.push(TxnOp::delete(self.keys.batch(old), None));
        }
        self.guarded(ops).await
    }

    async fn read_control(&self) -> Result<Control, DriverError> {
        let prefix = self.keys.control_prefix();
        let resp = self
            .client
            .kv_client()
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| self.etcd_error(e))?;
        let state_key = self.keys.control_state();
        let drain_prefix = self.keys.drain_prefix();
        let mut control = Control::default();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            if key == state_key {
                let value = JobControl::decode(kv.value())
                    .map_err(|source| DriverError::Corrupt { key, source })?;
                control.state = value.state;
                control.changed_by = value.changed_by;
                control.changed_at_ms = value.changed_at_ms;
                control.revision = kv.mod_revision();
            } else if let Some(executor) = key.strip_prefix(&drain_prefix) {
                control.drains.push(executor.to_owned());
            }
        }
        Ok(control)
    }

    async fn set_state(&self, seen: &Control, state: JobState) -> Result<bool, DriverError> {
        let key = self.keys.control_state();
        let stopped =
            JobControl { state, changed_at_ms: now_ms(), changed_by: seen.changed_by.clone() };
        let unchanged = Compare::mod_revision(key.as_str(), CompareOp::Equal, seen.revision);
        self.guarded_if(vec![unchanged], vec![TxnOp::put(key.as_str(), stopped.encode(), None)])
            .await
    }

    async fn forget_drain(&self, executor: &str) -> Result<(), DriverError> {
        self.guarded(vec![TxnOp::delete(self.keys.drain(executor), None)]).await
    }
}
