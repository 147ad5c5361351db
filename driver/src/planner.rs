//! The batch planner: pure code. Given where each partition's next batch starts, where its log
//! ends now and which lane owns it, it returns the next batch plan: one task per lane with
//! records to read, each range `[next, latest)`. No I/O, so every case is a unit test.
//!
//! Invariant kept here: a plan's ranges start exactly where the previous plan's ended, so planned
//! batches tile each partition's offsets with no gap and no overlap.

use std::collections::BTreeMap;

use weir_common::batch::{BatchPlan, LaneTask};
use weir_common::lanes::LaneMap;
use weir_common::{OffsetRange, TopicPartition};

/// What the planner needs to know about one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionState {
    /// The first offset the next batch reads: the `until` of the last planned batch.
    pub next: i64,
    /// The end of what may be read now (high watermark, or last stable offset for
    /// `read_committed`).
    pub latest: i64,
}

/// Plans batch `id`, or returns `None` when no partition has new records (an empty batch is not
/// recorded). A partition without a lane is skipped: the caller extends the lane map first.
pub fn plan_batch(
    id: u64,
    partitions: &BTreeMap<TopicPartition, PartitionState>,
    lanes: &LaneMap,
    planned_at_ms: i64,
) -> Option<BatchPlan> {
    let mut tasks: BTreeMap<u32, Vec<OffsetRange>> = BTreeMap::new();
    for (tp, state) in partitions {
        if state.latest <= state.next {
            continue;
        }
        let Some(lane) = lanes.lane_of(tp) else { continue };
        let range = OffsetRange::new(tp.clone(), state.next, state.latest)
            .expect("0 <= next < latest by the checks above and the caller's offsets");
        tasks.entry(lane).or_default().push(range);
    }
    if tasks.is_empty() {
        return None;
    }
    Some(BatchPlan {
        id,
        tasks: tasks.into_iter().map(|(lane, ranges)| LaneTask { lane, ranges }).collect(),
        planned_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("raw", p)
    }

    fn setup(states: &[(i32, i64, i64)]) -> (BTreeMap<TopicPartition, PartitionState>, LaneMap) {
        let partitions: BTreeMap<_, _> = states
            .iter()
            .map(|&(p, next, latest)| (tp(p), PartitionState { next, latest }))
            .collect();
        let mut lanes = LaneMap::default();
        lanes.extend(partitions.keys());
        (partitions, lanes)
    }

    #[test]
    fn plans_one_task_per_lane_with_new_records() {
        let (partitions, lanes) = setup(&[(0, 0, 10), (1, 5, 5), (2, 3, 4)]);
        let plan = plan_batch(1, &partitions, &lanes, 99).unwrap();
        assert_eq!(plan.id, 1);
        assert_eq!(plan.planned_at_ms, 99);
        let got: Vec<_> = plan.ranges().map(|r| r.to_string()).collect();
        assert_eq!(got, ["raw-0[0, 10)", "raw-2[3, 4)"]);
        assert_eq!(plan.tasks.iter().map(|t| t.lane).collect::<Vec<_>>(), [0, 2]);
    }

    #[test]
    fn no_new_records_means_no_batch() {
        let (partitions, lanes) = setup(&[(0, 7, 7), (1, 0, 0)]);
        assert_eq!(plan_batch(3, &partitions, &lanes, 0), None);
    }

    #[test]
    fn a_log_that_shrank_below_next_is_not_planned() {
        // A recreated topic can report an end below our position: never plan a reversed range.
        let (partitions, lanes) = setup(&[(0, 50, 10)]);
        assert_eq!(plan_batch(1, &partitions, &lanes, 0), None);
    }

    #[test]
    fn partitions_without_a_lane_are_skipped() {
        let (mut partitions, lanes) = setup(&[(0, 0, 5)]);
        partitions.insert(tp(9), PartitionState { next: 0, latest: 5 });
        let plan = plan_batch(1, &partitions, &lanes, 0).unwrap();
        assert_eq!(plan.ranges().count(), 1);
    }

    #[test]
    fn consecutive_plans_tile_the_offsets() {
        let (mut partitions, lanes) = setup(&[(0, 0, 10)]);
        let first = plan_batch(1, &partitions, &lanes, 0).unwrap();
        let end = first.ranges().next().unwrap().until();
        partitions.get_mut(&tp(0)).unwrap().next = end;
        partitions.get_mut(&tp(0)).unwrap().latest = 25;
        let second = plan_batch(2, &partitions, &lanes, 0).unwrap();
        assert_eq!(second.ranges().next().unwrap().from(), end);
    }
}
