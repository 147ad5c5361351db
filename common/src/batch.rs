//! A batch's recorded plan (`{prefix}/jobs/{job}/batches/{id}`): the offset ranges of each lane's
//! task. Invariant kept here: a decoded plan has at least one task, each lane at most once, and
//! every range valid.

use std::collections::BTreeSet;

use prost::Message;
use weir_proto::v1 as pb;

use crate::error::{ProtoError, check_format_version, decode};
use crate::offset_range::OffsetRange;

pub const BATCH_FORMAT_VERSION: u32 = 1;

/// Lanes are numbered from 0 in the order the job first saw their partitions.
pub type LaneId = u32;

/// One lane's share of a batch: the ranges its task reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneTask {
    pub lane: LaneId,
    pub ranges: Vec<OffsetRange>,
}

impl LaneTask {
    pub fn max_records(&self) -> u64 {
        self.ranges.iter().map(OffsetRange::max_records).sum()
    }
}

/// A planned batch. Once recorded it is never re-planned: a restart replays it as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPlan {
    pub id: u64,
    pub tasks: Vec<LaneTask>,
    pub planned_at_ms: i64,
    /// Offsets skipped because Kafka no longer holds them (`on_data_loss = "skip"`): the batch
    /// moves each such partition past them without reading.
    pub data_lost: Vec<OffsetRange>,
}

impl BatchPlan {
    pub fn max_records(&self) -> u64 {
        self.tasks.iter().map(LaneTask::max_records).sum()
    }

    pub fn ranges(&self) -> impl Iterator<Item = &OffsetRange> {
        self.tasks.iter().flat_map(|t| t.ranges.iter())
    }

    /// Where the batch leaves each partition it touches: the end of its range, or of the
    /// offsets it skipped as lost.
    pub fn ends(&self) -> impl Iterator<Item = (&crate::TopicPartition, i64)> {
        self.data_lost.iter().chain(self.ranges()).map(|r| (r.topic_partition(), r.until()))
    }

    pub fn records_lost(&self) -> u64 {
        self.data_lost.iter().map(OffsetRange::max_records).sum()
    }

    pub fn encode(&self) -> Vec<u8> {
        pb::BatchRecord {
            format_version: BATCH_FORMAT_VERSION,
            batch_id: self.id,
            tasks: self
                .tasks
                .iter()
                .map(|t| pb::LaneTask {
                    lane: t.lane,
                    ranges: t.ranges.iter().map(pb::OffsetRange::from).collect(),
                })
                .collect(),
            planned_at_ms: self.planned_at_ms,
            data_lost: self.data_lost.iter().map(pb::OffsetRange::from).collect(),
        }
        .encode_to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        Self::try_from(decode::<pb::BatchRecord>("BatchRecord", bytes)?)
    }
}

impl TryFrom<pb::BatchRecord> for BatchPlan {
    type Error = ProtoError;

    fn try_from(value: pb::BatchRecord) -> Result<Self, Self::Error> {
        check_format_version("BatchRecord", value.format_version, BATCH_FORMAT_VERSION)?;
        let invalid = |reason: String| ProtoError::InvalidField {
            message: "BatchRecord",
            field: "tasks",
            reason,
        };
        if value.tasks.is_empty() && value.data_lost.is_empty() {
            return Err(invalid("no tasks".into()));
        }
        let mut lanes = BTreeSet::new();
        let mut tasks = Vec::with_capacity(value.tasks.len());
        for t in value.tasks {
            if !lanes.insert(t.lane) {
                return Err(invalid(format!("lane {} appears twice", t.lane)));
            }
            let ranges =
                t.ranges.into_iter().map(OffsetRange::try_from).collect::<Result<_, _>>()?;
            tasks.push(LaneTask { lane: t.lane, ranges });
        }
        let data_lost =
            value.data_lost.into_iter().map(OffsetRange::try_from).collect::<Result<_, _>>()?;
        Ok(BatchPlan { id: value.batch_id, tasks, planned_at_ms: value.planned_at_ms, data_lost })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offset_range::TopicPartition;

    fn range(p: i32, from: i64, until: i64) -> OffsetRange {
        OffsetRange::new(TopicPartition::new("raw", p), from, until).unwrap()
    }

    #[test]
    fn round_trips() {
        let plan = BatchPlan {
            id: 7,
            tasks: vec![
                LaneTask { lane: 0, ranges: vec![range(0, 0, 10)] },
                LaneTask { lane: 3, ranges: vec![range(3, 5, 6), range(4, 1, 9)] },
            ],
            planned_at_ms: 1_700_000_000_000,
            data_lost: vec![range(5, 100, 140)],
        };
        assert_eq!(BatchPlan::decode(&plan.encode()).unwrap(), plan);
        assert_eq!(plan.max_records(), 10 + 1 + 8);
        assert_eq!(plan.records_lost(), 40);
        let ends: Vec<(i32, i64)> = plan.ends().map(|(tp, end)| (tp.partition, end)).collect();
        assert_eq!(ends, [(5, 140), (0, 10), (3, 6), (4, 9)]);
    }

    #[test]
    fn refuses_duplicate_lanes_and_newer_formats() {
        let mut value = pb::BatchRecord {
            format_version: 1,
            batch_id: 1,
            tasks: vec![pb::LaneTask { lane: 1, ranges: vec![] }; 2],
            planned_at_ms: 0,
            data_lost: vec![],
        };
        let err = BatchPlan::try_from(value.clone()).unwrap_err();
        assert!(err.to_string().contains("lane 1 appears twice"), "{err}");
        value.format_version = BATCH_FORMAT_VERSION + 1;
        assert!(matches!(BatchPlan::try_from(value), Err(ProtoError::NewerFormat { .. })));
    }
}
