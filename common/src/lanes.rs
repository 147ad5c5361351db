//! The lane map (`{prefix}/jobs/{job}/lanes`): which lane owns each partition, for the life of the
//! job. Invariants kept here: a partition belongs to exactly one lane; a mapping, once made, never
//! changes, and a lane number is never given to another partition (a lane's transactional id and
//! its `weir.lane=N` progress must always mean the same partition). The only removal is of a
//! deleted topic's lanes, so the map does not grow with every topic a pattern job ever read.

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
    /// The lane the next new partition gets: past every lane ever given, pruned ones included.
    next_lane: LaneId,
}

impl LaneMap {
    pub fn lane_of(&self, tp: &TopicPartition) -> Option<LaneId> {
        self.lanes.get(tp).copied()
    }

    /// Gives each partition not yet mapped a new lane of its own (one partition per lane), in the
    /// order given. Returns whether anything was added.
    pub fn extend<'a>(&mut self, partitions: impl IntoIterator<Item = &'a TopicPartition>) -> bool {
        let mut added = false;
        for tp in partitions {
            if !self.lanes.contains_key(tp) {
                self.lanes.insert(tp.clone(), self.next_lane);
                self.next_lane += 1;
                added = true;
            }
        }
        added
    }

    /// Removes the lanes of `topics` (deleted from Kafka). Their numbers are not given again: a
    /// topic created later under the same name gets new lanes. Returns how many were removed.
    pub fn prune_topics(&mut self, topics: &[String]) -> usize {
        let before = self.lanes.len();
        self.lanes.retain(|tp, _| !topics.contains(&tp.topic));
        before - self.lanes.len()
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
            next_lane: self.next_lane,
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
        // Maps written before pruning existed carry no next lane: one past the highest then.
        let past_highest = lanes.values().max().map_or(0, |l| l + 1);
        Ok(LaneMap { lanes, next_lane: value.next_lane.max(past_highest) })
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

    #[test]
    fn a_deleted_topics_lanes_go_and_their_numbers_are_never_given_again() {
        let (a0, a1, b0) =
            (TopicPartition::new("a", 0), TopicPartition::new("a", 1), TopicPartition::new("b", 0));
        let mut map = LaneMap::default();
        map.extend([&a0, &b0, &a1]);
        assert_eq!(map.prune_topics(&["a".to_owned()]), 2);
        assert_eq!((map.len(), map.lane_of(&a0), map.lane_of(&b0)), (1, None, Some(1)));
        // Through etcd and back: "a" created again gets lanes 3 and 4, not 0 and 2.
        let mut map = LaneMap::decode(&map.encode()).unwrap();
        map.extend([&a0, &a1]);
        assert_eq!((map.lane_of(&a0), map.lane_of(&a1)), (Some(3), Some(4)));
        // A map written before pruning existed (no next lane): one past the highest.
        let old = pb::LaneMap {
            format_version: LANES_FORMAT_VERSION,
            partitions: vec![pb::LanePartition { lane: 6, topic: "c".into(), partition: 0 }],
            next_lane: 0,
        };
        let mut map = LaneMap::decode(&old.encode_to_vec()).unwrap();
        map.extend([&b0]);
        assert_eq!(map.lane_of(&b0), Some(7));
    }
}
