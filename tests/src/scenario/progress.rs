//! The job's progress as the recovery watcher sees it in etcd: the last committed batch, how
//! much input is committed, and the waits built on them (the first commit; the recovery from a
//! fault).

use std::time::{Duration, Instant};

use super::{POLL, RECOVERY_LIMIT};
use crate::job::{EtcdProgress, JobFixture, topic_records};

/// A live view of the job's progress in etcd over one connection (the watcher polls often).
#[derive(Clone)]
pub(super) struct Progress {
    etcd: EtcdProgress,
    input: String,
    /// How many input records the scenario writes in all.
    pub(super) records: u64,
}

/// etcd's view at one moment.
pub(super) struct Snapshot {
    pub(super) last_committed: Option<u64>,
    /// Committed next offsets of the input topic, summed: how many input records are done.
    pub(super) committed_records: i64,
}

impl Progress {
    pub(super) async fn new(job: &JobFixture, records: u64) -> Self {
        Self { etcd: job.progress().await, input: job.input.clone(), records }
    }

    pub(super) async fn snapshot(&mut self) -> Snapshot {
        match self.etcd.committed().await {
            None => Snapshot { last_committed: None, committed_records: 0 },
            Some(committed) => Snapshot {
                last_committed: committed.last_committed_batch,
                committed_records: topic_records(&committed, &self.input),
            },
        }
    }

    /// Ids of the batch records in etcd (committed ones are kept for a while too), ascending.
    pub(super) async fn recorded_batches(&mut self) -> Vec<u64> {
        self.etcd.recorded_batches().await
    }

    fn all_committed(&self, snapshot: &Snapshot) -> bool {
        snapshot.committed_records >= self.records as i64
    }

    /// Polls until the first batch is committed: faults should hit a job that runs.
    pub(super) async fn wait_first_commit(&mut self, limit: Duration) {
        let started = Instant::now();
        while self.snapshot().await.last_committed.is_none() {
            assert!(started.elapsed() < limit, "no batch committed within {limit:?} of the start");
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls until `batch` is committed and, with `after: Some(b)`, a batch later than `b` is
    /// (a driver restart must commit something itself), or until the whole input is
    /// committed. Returns the time since `fault_at`, or what was missing after the limit.
    pub(super) async fn recovered(
        mut self,
        fault_at: Instant,
        batch: Option<u64>,
        after: Option<Option<u64>>,
    ) -> Result<Duration, String> {
        loop {
            let now = self.snapshot().await;
            let reached = now.last_committed >= batch;
            let moved = after.is_none_or(|before| now.last_committed > before);
            if self.all_committed(&now) || (reached && moved) {
                return Ok(fault_at.elapsed());
            }
            if fault_at.elapsed() > RECOVERY_LIMIT {
                return Err(format!(
                    "waiting for batch {batch:?}{} to commit: last committed {:?}, {} of {} \
                     input records committed",
                    after.map_or(String::new(), |b| format!(" and a commit after {b:?}")),
                    now.last_committed,
                    now.committed_records,
                    self.records
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
