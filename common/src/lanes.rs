//! The lane map (`{prefix}/jobs/{job}/lanes`): which lane owns each partition, for the life of the
//! job. Invariant kept here: a partition belongs to exactly one lane, and a mapping, once made, is
//! only ever extended (a lane's future transactional id must always guard the same partitions).

use std::collections::BTreeMap;

use prost::Message;
use weir_proto::v1 as pb;

use crate::batch::LaneId;
use crate::error::{ProtoError, check_format_version, decode};
use crate::offset_range::TopicPartition;

pub const LANES_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaneMap {
    lanes: BTreeMap<TopicPartition, LaneId>,
}

impl LaneMap {
    pub fn lane_of(&self, tp: &TopicPartition) -> Option<LaneId> {
        self.lanes.get(tp).copied()
    }

    /// Gives each partition not yet mapped a new lane of its own (one partition per lane), in the
    /// order given. Returns whether anything was added.
    pub fn extend<'a>(&mut self, partitions: impl IntoIterator<Item = &'a TopicPartition>) -> bool {
        let mut next = self.lanes.values().max().map_or(0, |l| l + 1);
        let mut added = false;
        for tp in partitions {
            if !self.lanes.contains_key(tp) {
                self.lanes.insert(tp.clone(), next);
                next += 1;
                added = true;
            }
        }
        added
    }

    pub fn len(&self) -> usize {
        self.lanes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&TopicPartition, LaneId)> {
        self.lanes.iter().map(|(tp, &lane)| (tp, lane))
    }

    pub fn encode(&self) -> Vec<u8> {
        pb::LaneMap {
            format_version: LANES_FORMAT_VERSION,
            partitions: self
                .lanes
                .iter()
                .map(|(tp, &lane)| pb::LanePartition {
                    lane,
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                })
                .collect(),
        }
        .encode_to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        let value = decode::<pb::LaneMap>("LaneMap", bytes)?;
        check_format_version("LaneMap", value.format_version, LANES_FORMAT_VERSION)?;
        let mut lanes = BTreeMap::new();
        for p in value.partitions {
            let tp = TopicPartition::new(p.topic, p.partition);
            if lanes.insert(tp.clone(), p.lane).is_some() {
                return Err(ProtoError::InvalidField {
                    message: "LaneMap",
                    field: "partitions",
                    reason: format!("{tp} appears twice"),
                });
            }
        }
        Ok(LaneMap { lanes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends_without_moving_existing_partitions() {
        let a = TopicPartition::new("a", 0);
        let b = TopicPartition::new("b", 0);
        let c = TopicPartition::new("a", 1);
        let mut map = LaneMap::default();
        assert!(map.extend([&a, &b]));
        assert!(!map.extend([&b, &a]));
        assert!(map.extend([&c, &a]));
        assert_eq!(
            (map.lane_of(&a), map.lane_of(&b), map.lane_of(&c)),
            (Some(0), Some(1), Some(2))
        );
        assert_eq!(LaneMap::decode(&map.encode()).unwrap(), map);
    }
}
