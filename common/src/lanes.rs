//! The lane map (`{prefix}/jobs/{job}/lanes`): which lane owns each partition. A lane groups
//! partitions (at most `source.lanes` lanes), so a batch has a task per lane, not per partition.
//!
//! Invariants kept here:
//! - a partition belongs to exactly one lane;
//! - a partition's lane changes only in [`LaneMap::regroup`], which gives every partition a lane
//!   with a new number; the driver regroups only with no batch in flight and after fencing the
//!   old lanes' transactional producers (`docs/lanes.md`);
//! - a lane number, once retired (regrouped away, or its topics deleted), is never given again:
//!   its transactional id and the `weir.lane=N` progress it committed keep meaning the old lane.
//!
//! A new partition joins a new lane while there are fewer than `source.lanes`, else the lane with
//! the fewest partitions. The only removal is of a deleted topic's partitions, so the map does not
//! grow with every topic a pattern job ever read.

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

    /// Gives each partition not yet mapped a lane, in the order given: a new lane while the map
    /// has fewer than `max_lanes`, else the lane with the fewest partitions (the lowest number of
    /// those). Returns whether anything was added.
    pub fn extend<'a>(
        &mut self,
        partitions: impl IntoIterator<Item = &'a TopicPartition>,
        max_lanes: u32,
    ) -> bool {
        let mut sizes = self.sizes();
        let mut added = false;
        for tp in partitions {
            if self.lanes.contains_key(tp) {
                continue;
            }
            let lane = if sizes.len() < max_lanes.max(1) as usize {
                self.next_lane += 1;
                self.next_lane - 1
            } else {
                let (&lane, _) = sizes.iter().min_by_key(|&(&lane, &n)| (n, lane)).expect("lanes");
                lane
            };
            *sizes.entry(lane).or_default() += 1;
            self.lanes.insert(tp.clone(), lane);
            added = true;
        }
        added
    }

    /// Partitions per lane.
    fn sizes(&self) -> BTreeMap<LaneId, usize> {
        let mut sizes = BTreeMap::new();
        for &lane in self.lanes.values() {
            *sizes.entry(lane).or_default() += 1;
        }
        sizes
    }

    /// How many lanes the partitions are grouped into.
    pub fn lane_count(&self) -> usize {
        self.sizes().len()
    }

    /// Whether the map has more lanes than `max_lanes` (a job mapped before lanes grouped
    /// partitions, or `source.lanes` lowered): then [`LaneMap::regroup`] is due.
    pub fn needs_regrouping(&self, max_lanes: u32) -> bool {
        self.lane_count() > max_lanes.max(1) as usize
    }

    /// Every lane now in the map, in order.
    pub fn lane_ids(&self) -> Vec<LaneId> {
        self.sizes().into_keys().collect()
    }

    /// Spreads every partition over `max_lanes` new lanes (new numbers, round-robin in
    /// topic-partition order, so a topic's partitions spread over the lanes). Returns the lanes
    /// retired: their producers must be fenced before the new lanes write (the caller's duty).
    pub fn regroup(&mut self, max_lanes: u32) -> Vec<LaneId> {
        let retired = self.lane_ids();
        let count = (max_lanes.max(1) as usize).min(self.lanes.len()) as u32;
        let first = self.next_lane;
        for (i, lane) in self.lanes.values_mut().enumerate() {
            *lane = first + i as u32 % count.max(1);
        }
        self.next_lane = first + count;
        retired
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

    /// The transactional id of `lane`'s producer under exactly-once.
    pub fn transactional_id(job: &str, lane: LaneId) -> String {
        format!("weir.{job}.lane.{lane}")
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
        assert!(map.extend([&a, &b], 8));
        assert!(!map.extend([&b, &a], 8));
        assert!(map.extend([&c, &a], 8));
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
        map.extend([&a0, &b0, &a1], 8);
        assert_eq!(map.prune_topics(&["a".to_owned()]), 2);
        assert_eq!((map.len(), map.lane_of(&a0), map.lane_of(&b0)), (1, None, Some(1)));
        // Through etcd and back: "a" created again gets lanes 3 and 4, not 0 and 2.
        let mut map = LaneMap::decode(&map.encode()).unwrap();
        map.extend([&a0, &a1], 8);
        assert_eq!((map.lane_of(&a0), map.lane_of(&a1)), (Some(3), Some(4)));
        // A map written before pruning existed (no next lane): one past the highest.
        let old = pb::LaneMap {
            format_version: LANES_FORMAT_VERSION,
            partitions: vec![pb::LanePartition { lane: 6, topic: "c".into(), partition: 0 }],
            next_lane: 0,
        };
        let mut map = LaneMap::decode(&old.encode_to_vec()).unwrap();
        map.extend([&b0], 8);
        assert_eq!(map.lane_of(&b0), Some(7));
    }

    fn partitions(topic: &str, n: i32) -> Vec<TopicPartition> {
        (0..n).map(|p| TopicPartition::new(topic, p)).collect()
    }

    #[test]
    fn past_the_lane_limit_new_partitions_join_the_smallest_lane() {
        let mut map = LaneMap::default();
        let first = partitions("a", 10);
        map.extend(&first, 4);
        assert_eq!(map.lane_count(), 4);
        let lanes: Vec<_> = first.iter().map(|tp| map.lane_of(tp).unwrap()).collect();
        assert_eq!(lanes, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]);
        // A new topic fills the smaller lanes first, and no lane number is added.
        map.extend(&partitions("b", 2), 4);
        assert_eq!(map.lane_of(&TopicPartition::new("b", 0)), Some(2));
        assert_eq!(map.lane_of(&TopicPartition::new("b", 1)), Some(3));
        assert_eq!(map.lane_ids(), [0, 1, 2, 3]);
        // Existing partitions never move when the map is extended.
        let again: Vec<_> = first.iter().map(|tp| map.lane_of(tp).unwrap()).collect();
        assert_eq!(again, lanes);
        assert!(!map.needs_regrouping(4));
        assert_eq!(LaneMap::decode(&map.encode()).unwrap(), map);
    }

    #[test]
    fn regrouping_gives_every_partition_a_new_lane_and_retires_the_old_numbers() {
        // A map from before lanes grouped partitions: one lane per partition.
        let mut map = LaneMap::default();
        map.extend(&partitions("a", 6), u32::MAX);
        assert_eq!(map.lane_count(), 6);
        assert!(map.needs_regrouping(2));
        let retired = map.regroup(2);
        assert_eq!(retired, [0, 1, 2, 3, 4, 5]);
        assert_eq!(map.lane_ids(), [6, 7]);
        let lanes: Vec<_> = partitions("a", 6).iter().map(|tp| map.lane_of(tp).unwrap()).collect();
        assert_eq!(lanes, [6, 7, 6, 7, 6, 7]);
        assert!(!map.needs_regrouping(2));
        // Numbers are not given again: a later regroup starts past them.
        assert_eq!(map.regroup(1), [6, 7]);
        assert_eq!(map.lane_ids(), [8]);
        let map = LaneMap::decode(&map.encode()).unwrap();
        assert_eq!(map.lane_ids(), [8]);
        // Fewer partitions than lanes: a lane each.
        let mut small = LaneMap::default();
        small.extend(&partitions("s", 2), u32::MAX);
        small.regroup(8);
        assert_eq!(small.lane_ids(), [2, 3]);
    }
}
