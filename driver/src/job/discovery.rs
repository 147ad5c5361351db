//! Which partitions the job reads. Finds partitions the job does not know yet and gives each a
//! start and a lane, in etcd at once; forgets topics deleted under `on_data_loss = "skip"`; and,
//! under exactly-once, refuses to start a partition where the group `weir.{job}` is already past.
//!
//! Invariant kept here: a partition is planned only after its start is in etcd.

use std::collections::{BTreeMap, BTreeSet};

use tracing::{info, warn};
use weir_common::TopicPartition;
use weir_common::config::{Guarantee, OnDataLoss};
use weir_common::retry::retry;

use super::{JobLoop, START_RETRY, in_etcd};
use crate::error::DriverError;

impl JobLoop {
    /// Start-up discovery: Kafka (or etcd) unreachable is waited for, loudly; anything else
    /// (a listed topic missing, a group already past the start) stops the job.
    pub(super) async fn discover_until_kafka_answers(&mut self) -> Result<(), DriverError> {
        // `retry` makes one future per attempt; each borrows the loop in turn.
        let this = tokio::sync::Mutex::new(&mut *self);
        retry("reading the source topics", START_RETRY, || async {
            this.lock().await.discover_partitions().await.map(drop)
        })
        .await
    }

    /// Finds partitions the job does not know yet and gives them a start and a lane, in etcd at
    /// once (so a restart does not resolve `latest` again). Partitions of a topic new to the job
    /// start at `source.starting_offsets`; new partitions of a known topic at their earliest
    /// offset, so records written before they were discovered are not lost. Returns every
    /// partition the job reads now.
    pub(super) async fn discover_partitions(&mut self) -> Result<Vec<TopicPartition>, DriverError> {
        let mut known: BTreeSet<String> = self.planned.keys().map(|tp| tp.topic.clone()).collect();
        known.extend(self.deleted_topics.iter().cloned());
        let partitions = self.io.source.partitions(known).await?;
        self.forget_deleted_topics(&partitions).await?;
        let new: Vec<TopicPartition> =
            partitions.iter().filter(|tp| !self.planned.contains_key(tp)).cloned().collect();
        if new.is_empty() {
            return Ok(partitions);
        }
        let (new_topics, new_of_known): (Vec<_>, Vec<_>) = new
            .iter()
            .cloned()
            .partition(|tp| !self.planned.keys().any(|known| known.topic == tp.topic));
        let starting = self.config.source.starting_offsets.clone();
        let from_start = self.io.source.starting_offsets(new_topics, starting).await?;
        let from_earliest = self.io.source.earliest(new_of_known).await?;
        let starts: BTreeMap<TopicPartition, i64> =
            from_start.into_iter().chain(from_earliest).collect();
        if self.guarantee == Guarantee::ExactlyOnce {
            self.check_group_is_behind(&starts).await?;
        }
        self.metrics.partitions_discovered.inc_by(starts.len() as u64);
        self.status.send_modify(|s| s.partitions_discovered += starts.len() as u64);
        for (tp, offset) in starts {
            info!(partition = %tp, offset, "New partition; reading from here");
            self.committed.next_offsets.insert(tp.clone(), offset);
            self.planned.insert(tp, offset);
        }
        self.lanes.extend(new.iter(), self.config.source.lanes);
        self.write_offsets_and_lanes("writing the new partitions' offsets to etcd").await?;
        Ok(partitions)
    }

    async fn write_offsets_and_lanes(&self, what: &str) -> Result<(), DriverError> {
        let (store, committed, lanes) = (&self.io.store, &self.committed, &self.lanes);
        in_etcd(self.etcd_wait(), what, || store.write_offsets_and_lanes(committed, lanes)).await
    }

    /// Exactly-once trusts the group's progress: a task whose range ends at or below it is
    /// reported done without writing. Progress already past where a new partition starts would
    /// silently skip records (the job name was used before, and etcd's state is gone), so the job
    /// refuses to start and says how to clear it.
    async fn check_group_is_behind(
        &self,
        starts: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), DriverError> {
        let committed = self.io.group.committed(starts.keys().cloned().collect()).await?;
        for (tp, &start) in starts {
            if let Some(&at) = committed.get(tp).filter(|&&at| at > start) {
                let group = self.io.group.name();
                return Err(DriverError::Unfit(format!(
                    "the group {group} already holds offset {at} for {tp}, past where this job \
                     starts it ({start}): an earlier job of this name committed there, and \
                     exactly-once would skip those records as done. Delete the group \
                     (kafka-consumer-groups --delete --group {group}) or give the job another name"
                )));
            }
        }
        Ok(())
    }

    /// Topics the job reads that Kafka no longer has (deleted) follow `source.on_data_loss`:
    /// `fail` stops the job naming them; `skip` stops reading them and forgets their offsets (a
    /// topic created again under the name is then new to the job).
    async fn forget_deleted_topics(&mut self, found: &[TopicPartition]) -> Result<(), DriverError> {
        let absent: BTreeSet<String> = self
            .planned
            .keys()
            .filter(|tp| !found.contains(tp))
            .map(|tp| tp.topic.clone())
            .collect();
        if absent.is_empty() {
            return Ok(());
        }
        let deleted = self.io.source.deleted(absent.into_iter().collect()).await?;
        if deleted.is_empty() {
            return Ok(());
        }
        let positions: Vec<String> = self
            .planned
            .iter()
            .filter(|(tp, _)| deleted.contains(&tp.topic))
            .map(|(tp, at)| format!("{tp} at offset {at}"))
            .collect();
        if self.config.source.on_data_loss == OnDataLoss::Fail {
            return Err(DriverError::DataLoss(format!(
                "source topic(s) {} were deleted while the job read them ({}); records not yet \
                 read are gone. Set source.on_data_loss = \"skip\" to go on without them",
                deleted.join(", "),
                positions.join(", ")
            )));
        }
        warn!(topics = %deleted.join(", "), positions = %positions.join(", "),
            "Source topics deleted; no longer read (source.on_data_loss = \"skip\")");
        self.planned.retain(|tp, _| !deleted.contains(&tp.topic));
        self.deleted_topics.extend(deleted.iter().cloned());
        self.committed.next_offsets.retain(|tp, _| !deleted.contains(&tp.topic));
        let pruned = self.lanes.prune_topics(&deleted);
        info!(lanes = pruned, "Lanes of the deleted topics pruned from the lane map");
        self.write_offsets_and_lanes("writing offsets without the deleted topics to etcd").await
    }
}
