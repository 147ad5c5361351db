//! The job's committed progress as stored in etcd (`{prefix}/jobs/{job}/offsets`): the next offset
//! of every partition and the last committed batch, in ONE versioned protobuf value.
//! Invariant kept here: a decoded checkpoint has one entry per partition, no negative offset, and
//! a `format_version` this build understands.

use std::collections::BTreeMap;

use prost::Message;
use weir_proto::v1 as pb;

use crate::error::{ProtoError, check_format_version, decode};
use crate::offset_range::TopicPartition;

/// The newest `OffsetsCheckpoint.format_version` this build writes and reads.
pub const OFFSETS_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetsCheckpoint {
    /// Next offset to read, per partition.
    pub next_offsets: BTreeMap<TopicPartition, i64>,
    /// The last batch whose output and offsets are committed; `None` before the first commit.
    pub last_committed_batch: Option<u64>,
}

impl OffsetsCheckpoint {
    pub fn encode(&self) -> Vec<u8> {
        let value = pb::OffsetsCheckpoint {
            format_version: OFFSETS_FORMAT_VERSION,
            offsets: self
                .next_offsets
                .iter()
                .map(|(tp, &next_offset)| pb::PartitionOffset {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    next_offset,
                })
                .collect(),
            last_committed_batch: self.last_committed_batch,
        };
        value.encode_to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        Self::try_from(decode::<pb::OffsetsCheckpoint>("OffsetsCheckpoint", bytes)?)
    }
}

impl TryFrom<pb::OffsetsCheckpoint> for OffsetsCheckpoint {
    type Error = ProtoError;

    fn try_from(value: pb::OffsetsCheckpoint) -> Result<Self, Self::Error> {
        let invalid = |field, reason: String| ProtoError::InvalidField {
            message: "OffsetsCheckpoint",
            field,
            reason,
        };
        check_format_version("OffsetsCheckpoint", value.format_version, OFFSETS_FORMAT_VERSION)?;
        let mut next_offsets = BTreeMap::new();
        for p in value.offsets {
            let tp = TopicPartition::new(p.topic, p.partition);
            if p.next_offset < 0 || tp.partition < 0 || tp.topic.is_empty() {
                return Err(invalid("offsets", format!("bad entry {tp} -> {}", p.next_offset)));
            }
            if next_offsets.insert(tp.clone(), p.next_offset).is_some() {
                return Err(invalid("offsets", format!("{tp} appears twice")));
            }
        }
        Ok(Self { next_offsets, last_committed_batch: value.last_committed_batch })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> OffsetsCheckpoint {
        let mut next_offsets = BTreeMap::new();
        next_offsets.insert(TopicPartition::new("raw", 0), 1_000);
        next_offsets.insert(TopicPartition::new("raw", 1), 0);
        next_offsets.insert(TopicPartition::new("audit", 7), 42);
        OffsetsCheckpoint { next_offsets, last_committed_batch: Some(17) }
    }

    #[test]
    fn round_trip_keeps_offsets_and_batch() {
        let c = sample();
        assert_eq!(OffsetsCheckpoint::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn before_the_first_commit_there_is_no_batch() {
        let c = OffsetsCheckpoint { last_committed_batch: None, ..sample() };
        assert_eq!(OffsetsCheckpoint::decode(&c.encode()).unwrap().last_committed_batch, None);
    }

    #[test]
    fn a_newer_format_is_refused_with_advice() {
        let mut p = pb::OffsetsCheckpoint::decode(sample().encode().as_slice()).unwrap();
        p.format_version = OFFSETS_FORMAT_VERSION + 1;
        let err = OffsetsCheckpoint::decode(&p.encode_to_vec()).unwrap_err();
        assert!(matches!(err, ProtoError::NewerFormat { found: 2, supported: 1, .. }), "{err}");
        assert!(err.to_string().contains("upgrade Weir"), "{err}");
    }

    #[test]
    fn a_value_without_format_version_is_refused() {
        let err = OffsetsCheckpoint::decode(&[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "OffsetsCheckpoint.format_version: missing (0); not written by Weir"
        );
    }

    #[test]
    fn garbage_bytes_are_a_decode_error() {
        let err = OffsetsCheckpoint::decode(b"\xff\xff\xff").unwrap_err();
        assert!(matches!(err, ProtoError::Decode { .. }), "{err}");
    }

    #[test]
    fn a_partition_listed_twice_is_refused() {
        let dup = pb::PartitionOffset { topic: "raw".into(), partition: 0, next_offset: 5 };
        let p = pb::OffsetsCheckpoint {
            format_version: 1,
            offsets: vec![dup.clone(), dup],
            last_committed_batch: None,
        };
        let err = OffsetsCheckpoint::try_from(p).unwrap_err();
        assert_eq!(err.to_string(), "OffsetsCheckpoint.offsets: raw-0 appears twice");
    }
}
