//! The group `weir.{job}` as exactly-once sees it: the committed progress of the job's input
//! partitions, read back after `init_transactions`, and the group metadata that
//! `send_offsets_to_transaction` commits under. The group is never joined (no member, no
//! rebalance); its offsets are written only inside the lanes' transactions.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use weir_common::batch::LaneId;
use weir_common::{OffsetRange, TopicPartition};

use crate::error::TaskError;
use crate::sink::progress::{Committed, lane_metadata, lane_of};

const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

pub struct GroupProgress {
    consumer: BaseConsumer,
    /// Shared: a transaction call runs on a thread of its own (see `sink::transactional`).
    metadata: std::sync::Arc<ConsumerGroupMetadata>,
    group: String,
}

impl GroupProgress {
    pub fn new(mut config: ClientConfig, group: &str) -> Result<Self, TaskError> {
        // `read_committed` makes the offset fetch wait for pending transactional offsets
        // (require_stable), so a progress read never misses a commit still being completed.
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed");
        let consumer: BaseConsumer = config.create().map_err(|e| {
            TaskError::kafka(format_args!("cannot create a client for group {group}"), &e)
        })?;
        let metadata = consumer
            .group_metadata()
            .ok_or_else(|| TaskError::config(format!("no group metadata for {group}")))?;
        let metadata = std::sync::Arc::new(metadata);
        Ok(GroupProgress { consumer, metadata, group: group.to_owned() })
    }

    pub fn name(&self) -> &str {
        &self.group
    }

    pub fn metadata(&self) -> std::sync::Arc<ConsumerGroupMetadata> {
        self.metadata.clone()
    }

    /// The group's committed offsets for the ranges' partitions; partitions without one are
    /// left out.
    pub fn committed(
        &self,
        ranges: &[OffsetRange],
    ) -> Result<BTreeMap<TopicPartition, Committed>, TaskError> {
        let mut list = TopicPartitionList::new();
        for range in ranges {
            list.add_partition(range.topic(), range.partition());
        }
        let committed = self.consumer.committed_offsets(list, FETCH_TIMEOUT).map_err(|e| {
            TaskError::kafka(format_args!("reading the progress of group {}", self.group), &e)
        })?;
        let mut progress = BTreeMap::new();
        for element in committed.elements() {
            if let Some(error) = element.error().err() {
                return Err(TaskError::kafka(
                    format_args!(
                        "reading the progress of group {} for {}-{}",
                        self.group,
                        element.topic(),
                        element.partition()
                    ),
                    &error,
                ));
            }
            if let Offset::Offset(offset) = element.offset() {
                let lane = lane_of(element.metadata());
                let tp = TopicPartition::new(element.topic(), element.partition());
                progress.insert(tp, Committed { offset, lane });
            }
        }
        Ok(progress)
    }

    /// These offsets, each naming `lane` in its metadata: what a task commits at its end, or at
    /// a step of a task too long for one transaction.
    pub fn offsets_at(offsets: &BTreeMap<TopicPartition, i64>, lane: LaneId) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for (tp, &at) in offsets {
            let mut element = list.add_partition(&tp.topic, tp.partition);
            element.set_offset(Offset::Offset(at)).expect("an offset of a range is a valid offset");
            element.set_metadata(lane_metadata(lane));
        }
        list
    }
}
