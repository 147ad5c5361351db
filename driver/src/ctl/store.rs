//! `weirctl`'s etcd side: one consistent read of every key of the job (a snapshot), and the
//! writes operators make, each one guarded etcd transaction that fails rather than overwrite a
//! change it did not see (a driver that started leading, a batch that committed meanwhile).

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use weir_common::OffsetsCheckpoint;
use weir_common::batch::BatchPlan;
use weir_common::control::{DrainRequest, JobControl, JobState};
use weir_common::etcd::{self, EtcdAccess};
use weir_common::lanes::LaneMap;
use weir_common::protocol::{JobKeys, LeaderRecord};

use super::CtlError;
use crate::job::now_ms;

/// Everything etcd holds for the job, read at one revision.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub leader: Option<LeaderRecord>,
    /// The leader key's create revision (0: no leader); a guard of every write.
    pub leader_revision: i64,
    /// Every running driver, leader included.
    pub drivers: Vec<LeaderRecord>,
    pub generation: u64,
    pub control: JobControl,
    /// The state key's mod revision (0: absent).
    pub control_revision: i64,
    pub drains: Vec<String>,
    pub offsets: Option<OffsetsCheckpoint>,
    /// The offsets key's mod revision (0: absent).
    pub offsets_revision: i64,
    pub lanes: LaneMap,
    /// Every batch record kept (the last committed ones and any recorded since), by id.
    pub batches: Vec<BatchPlan>,
    /// How many keys the job has in etcd.
    pub keys: usize,
}

impl Snapshot {
    pub fn last_committed(&self) -> Option<u64> {
        self.offsets.as_ref().and_then(|o| o.last_committed_batch)
    }

    /// Recorded batches not yet committed: a leader replays them.
    pub fn pending(&self) -> impl Iterator<Item = &BatchPlan> {
        let last = self.last_committed();
        self.batches.iter().filter(move |b| last.is_none_or(|l| b.id > l))
    }

    /// The leader's standbys: running drivers other than the leader.
    pub fn standbys(&self) -> impl Iterator<Item = &LeaderRecord> {
        let leader = self.leader.as_ref().map(|l| l.driver_id.as_str());
        self.drivers.iter().filter(move |d| Some(d.driver_id.as_str()) != leader)
    }
}

pub struct JobStore {
    client: Client,
    keys: JobKeys,
    endpoints: String,
}

impl JobStore {
    /// Connects to the job's etcd as `access` says (TLS, a user) and proves it answers.
    pub async fn connect(access: &EtcdAccess, prefix: &str, job: &str) -> Result<Self, CtlError> {
        let endpoints = access.describe();
        let options = access
            .options()
            .map_err(|e| {
                CtlError::Usage(format!("{} ({}): {e}", e.part.config_key(), e.part.flag()))
            })?
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(10));
        let store = |client| JobStore {
            client,
            keys: JobKeys::new(prefix, job),
            endpoints: endpoints.clone(),
        };
        let connected = async {
            let mut client = Client::connect(&access.endpoints, Some(options)).await?;
            client.status().await?;
            Ok(client)
        };
        match connected.await {
            Ok(client) => Ok(store(client)),
            Err(e) if etcd::refusal(&e).is_none() => {
                Err(CtlError::Failed(format!("cannot reach etcd at {endpoints}: {e}")))
            }
            Err(e) => Err(store_error(&endpoints, "connecting", e)),
        }
    }

    pub fn keys(&self) -> &JobKeys {
        &self.keys
    }

    fn failed(&self, what: &str, e: etcd_client::Error) -> CtlError {
        store_error(&self.endpoints, what, e)
    }

    pub async fn snapshot(&self) -> Result<Snapshot, CtlError> {
        let root = self.keys.job_prefix();
        let resp = self
            .client
            .kv_client()
            .get(root.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| self.failed("reading the job's keys", e))?;
        let mut snap = Snapshot { keys: resp.kvs().len(), ..Snapshot::default() };
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let name = &key[root.len()..];
            let corrupt =
                |e: weir_common::ProtoError| CtlError::Failed(format!("etcd key {key}: {e}"));
            match name {
                "leader" => {
                    snap.leader = Some(LeaderRecord::decode(kv.value()).map_err(corrupt)?);
                    snap.leader_revision = kv.create_revision();
                }
                "generation" => {
                    snap.generation =
                        String::from_utf8_lossy(kv.value()).trim().parse().unwrap_or(0)
                }
                "offsets" => {
                    snap.offsets = Some(OffsetsCheckpoint::decode(kv.value()).map_err(corrupt)?);
                    snap.offsets_revision = kv.mod_revision();
                }
                "lanes" => snap.lanes = LaneMap::decode(kv.value()).map_err(corrupt)?,
                "control/state" => {
                    snap.control = JobControl::decode(kv.value()).map_err(corrupt)?;
                    snap.control_revision = kv.mod_revision();
                }
                _ if name.starts_with("batches/") => {
                    snap.batches.push(BatchPlan::decode(kv.value()).map_err(corrupt)?)
                }
                _ if name.starts_with("drivers/") => {
                    snap.drivers.push(LeaderRecord::decode(kv.value()).map_err(corrupt)?)
                }
                _ if name.starts_with("control/drain/") => {
                    snap.drains.push(name["control/drain/".len()..].to_owned())
                }
                _ => {}
            }
        }
        snap.batches.sort_by_key(|b| b.id);
        Ok(snap)
    }

    /// Sets the job's state, unless the state or the leader changed since `seen` was read.
    /// Returns whether it was written.
    pub async fn set_state(
        &self,
        seen: &Snapshot,
        state: JobState,
        by: &str,
    ) -> Result<bool, CtlError> {
        let value = JobControl { state, changed_at_ms: now_ms(), changed_by: by.to_owned() };
        let txn = Txn::new().when(self.unchanged(seen, false)).and_then([TxnOp::put(
            self.keys.control_state(),
            value.encode(),
            None,
        )]);
        let resp = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(|e| self.failed("setting the job state", e))?;
        Ok(resp.succeeded())
    }

    pub async fn request_drain(&self, executor: &str) -> Result<(), CtlError> {
        let value = DrainRequest { requested_at_ms: now_ms() };
        self.client
            .kv_client()
            .put(self.keys.drain(executor), value.encode(), None)
            .await
            .map_err(|e| self.failed("writing the drain request", e))?;
        Ok(())
    }

    /// Writes reset offsets and deletes the recorded, uncommitted batches, in one transaction
    /// that holds only if nothing changed since `seen` (leader, job state, offsets).
    pub async fn reset_offsets(
        &self,
        seen: &Snapshot,
        offsets: &OffsetsCheckpoint,
    ) -> Result<bool, CtlError> {
        let mut ops = vec![TxnOp::put(self.keys.offsets(), offsets.encode(), None)];
        ops.extend(seen.pending().map(|b| TxnOp::delete(self.keys.batch(b.id), None)));
        let txn = Txn::new().when(self.unchanged(seen, true)).and_then(ops);
        let resp = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(|e| self.failed("writing the offsets", e))?;
        Ok(resp.succeeded())
    }

    /// Deletes every key of the job, if no driver leads it (checked in the same transaction).
    pub async fn delete_job(&self) -> Result<bool, CtlError> {
        let txn = Txn::new()
            .when([Compare::create_revision(self.keys.leader(), CompareOp::Equal, 0)])
            .and_then([TxnOp::delete(
                self.keys.job_prefix(),
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            )]);
        let resp = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(|e| self.failed("deleting the job", e))?;
        Ok(resp.succeeded())
    }

    /// The conditions that `seen` still holds: the same leader (or none), the same job state,
    /// and, with `offsets`, the same committed offsets.
    fn unchanged(&self, seen: &Snapshot, offsets: bool) -> Vec<Compare> {
        let mut compares = vec![
            Compare::create_revision(self.keys.leader(), CompareOp::Equal, seen.leader_revision),
            Compare::mod_revision(
                self.keys.control_state(),
                CompareOp::Equal,
                seen.control_revision,
            ),
        ];
        if offsets {
            compares.push(Compare::mod_revision(
                self.keys.offsets(),
                CompareOp::Equal,
                seen.offsets_revision,
            ));
        }
        compares
    }
}

/// An etcd error met while doing `what`: refused credentials or permissions say so and what to
/// do; anything else is etcd failing or away.
fn store_error(endpoints: &str, what: &str, e: etcd_client::Error) -> CtlError {
    match etcd::refusal(&e) {
        Some(refusal) => CtlError::Failed(format!(
            "etcd at {endpoints}: {refusal} ({what}: {}); {}",
            etcd::message(&e),
            refusal.hint()
        )),
        None => CtlError::Failed(format!("{what} in etcd at {endpoints}: {e}")),
    }
}
