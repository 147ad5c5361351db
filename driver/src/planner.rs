//! The batch planner: pure code. Given where each partition's next batch starts, where its log
//! ends now and which lane owns it, it returns the next batch plan: one task per lane with
//! records to read, each range `[next, latest)`. No I/O, so every case is a unit test.
//!
//! Invariant kept here: a plan's ranges start exactly where the previous plan's ended, so planned
//! batches tile each partition's offsets with no gap and no overlap.

use std::collections::BTreeMap;
use std::time::Duration;

use weir_common::batch::{BatchPlan, LaneTask};
use weir_common::config::SourceConfig;
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

/// How many records one batch may take. `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// The most records of one partition (the rate per partition times the batch interval).
    pub per_partition: Option<u64>,
    /// The most records of the whole batch, split over the partitions in proportion to their lag.
    pub total: Option<u64>,
}

/// How many records the next batch may take. Per partition: `max_rate_per_partition` (and,
/// until the rate controller has measured a batch, the effective initial rate) times the batch
/// interval. In all: `max_records_per_batch` and the controller's rate (`measured_rate`, records
/// per second) times the interval. A rate always allows at least one record.
pub fn budget(
    source: &SourceConfig,
    batch_interval: Duration,
    measured_rate: Option<f64>,
) -> Budget {
    let interval = batch_interval.as_secs_f64();
    let records = |rate: f64| ((rate * interval).ceil() as u64).max(1);
    let initial = source.effective_initial_rate().filter(|_| measured_rate.is_none());
    let per_partition = [source.max_rate_per_partition, initial].into_iter().flatten().min();
    let total =
        [source.max_records_per_batch, measured_rate.map(records)].into_iter().flatten().min();
    Budget { per_partition: per_partition.map(|rate| records(rate as f64)), total }
}

/// Whether the budget cut a batch: it took fewer records than the lag left. What the rate
/// controller learns when the batch commits.
pub fn was_limited(plan: &BatchPlan, lag: i64) -> bool {
    (plan.max_records() as i64) < lag
}

/// Plans batch `id`, or returns `None` when no partition has new records (an empty batch is not
/// recorded). Each range is `[next, next + allotted)`, the allotment within `budget`. A partition
/// without a lane is skipped: the caller extends the lane map first.
pub fn plan_batch(
    id: u64,
    partitions: &BTreeMap<TopicPartition, PartitionState>,
    lanes: &LaneMap,
    budget: Budget,
    planned_at_ms: i64,
) -> Option<BatchPlan> {
    let lagging: Vec<(&TopicPartition, &PartitionState)> = partitions
        .iter()
        .filter(|(tp, state)| state.latest > state.next && lanes.lane_of(tp).is_some())
        .collect();
    let lags: Vec<u64> = lagging.iter().map(|(_, s)| (s.latest - s.next) as u64).collect();
    let allotted = allot(&lags, budget);
    let mut tasks: BTreeMap<u32, Vec<OffsetRange>> = BTreeMap::new();
    for ((tp, state), records) in lagging.into_iter().zip(allotted) {
        let lane = lanes.lane_of(tp).expect("filtered above");
        let range = OffsetRange::new(tp.clone(), state.next, state.next + records as i64)
            .expect("0 <= next < next + records by the checks above and the caller's offsets");
        tasks.entry(lane).or_default().push(range);
    }
    if tasks.is_empty() {
        return None;
    }
    Some(BatchPlan {
        id,
        tasks: tasks.into_iter().map(|(lane, ranges)| LaneTask { lane, ranges }).collect(),
        planned_at_ms,
        data_lost: Vec::new(),
    })
}

/// Records per partition, given each partition's lag (all > 0): at most its lag and
/// `per_partition`. When the lags exceed `total`, every partition first gets one record (so none
/// starves; with more lagging partitions than `total`, that alone exceeds it), the rest of the
/// total is shared in proportion to the lags, and what rounding leaves goes to the largest lags
/// with room.
pub fn allot(lags: &[u64], budget: Budget) -> Vec<u64> {
    let cap = |lag: u64| budget.per_partition.map_or(lag, |limit| lag.min(limit.max(1)));
    let mut shares: Vec<u64> = lags.iter().map(|&lag| cap(lag)).collect();
    let Some(total) = budget.total else { return shares };
    if shares.iter().sum::<u64>() <= total {
        return shares;
    }
    let rest = total.saturating_sub(lags.len() as u64);
    let lag_sum: u128 = lags.iter().map(|&l| u128::from(l)).sum();
    for (share, &lag) in shares.iter_mut().zip(lags) {
        let proportional = (u128::from(rest) * u128::from(lag) / lag_sum) as u64;
        *share = cap(lag).min(1 + proportional);
    }
    let mut left = total.saturating_sub(shares.iter().sum());
    let mut by_lag: Vec<usize> = (0..lags.len()).collect();
    by_lag.sort_by_key(|&i| std::cmp::Reverse(lags[i]));
    for i in by_lag {
        if left == 0 {
            break;
        }
        let more = (cap(lags[i]) - shares[i]).min(left);
        shares[i] += more;
        left -= more;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(max_rate: Option<u64>, initial: Option<u64>, max_batch: Option<u64>) -> SourceConfig {
        let minimal = "[job]\nname = \"j\"\n[source]\nbrokers = \"b:9092\"\ntopics = [\"raw\"]\n\
                       [sink]\ntype = \"stdout\"\n";
        let mut config = weir_common::config::JobConfig::from_toml_str(minimal).unwrap().source;
        config.max_rate_per_partition = max_rate;
        config.initial_rate_per_partition = initial;
        config.max_records_per_batch = max_batch;
        config
    }

    #[test]
    fn budget_without_limits_is_unlimited() {
        let mut config = source(None, None, None);
        config.backpressure = false;
        let b = super::budget(&config, Duration::from_secs(1), None);
        assert_eq!(b, Budget::default());
    }

    #[test]
    fn with_backpressure_a_first_batch_is_bounded_by_default() {
        let config = source(None, None, None);
        assert!(config.backpressure, "on by default");
        let first = super::budget(&config, Duration::from_millis(500), None);
        let default = weir_common::config::DEFAULT_INITIAL_RATE_PER_PARTITION;
        assert_eq!(first, Budget { per_partition: Some(default / 2), total: None });
        let measured = super::budget(&config, Duration::from_millis(500), Some(1e6));
        assert_eq!(measured, Budget { per_partition: None, total: Some(500_000) });
        let set = super::budget(&source(None, Some(40), None), Duration::from_secs(1), None);
        assert_eq!(set.per_partition, Some(40), "a rate the user set wins");
    }

    #[test]
    fn budget_per_partition_is_rate_times_interval() {
        let b = super::budget(&source(Some(100), None, None), Duration::from_millis(500), None);
        assert_eq!(b, Budget { per_partition: Some(50), total: None });
        // A tiny rate still allows one record.
        let b = super::budget(&source(Some(1), None, None), Duration::from_millis(100), None);
        assert_eq!(b.per_partition, Some(1));
    }

    #[test]
    fn initial_rate_holds_only_until_the_controller_has_measured() {
        let config = source(Some(1_000), Some(10), None);
        let first = super::budget(&config, Duration::from_secs(2), None);
        assert_eq!(first.per_partition, Some(20), "the smaller of max and initial rate");
        let measured = super::budget(&config, Duration::from_secs(2), Some(500.0));
        assert_eq!(measured.per_partition, Some(2_000), "initial rate no longer applies");
        assert_eq!(measured.total, Some(1_000), "the measured rate bounds the batch");
    }

    #[test]
    fn total_is_the_smaller_of_batch_cap_and_measured_rate() {
        let config = source(None, None, Some(300));
        assert_eq!(super::budget(&config, Duration::from_secs(1), Some(1_000.0)).total, Some(300));
        assert_eq!(super::budget(&config, Duration::from_secs(1), Some(100.4)).total, Some(101));
    }

    #[test]
    fn a_batch_is_limited_when_it_leaves_lag_behind() {
        let (states, lanes) = setup(&[(0, 0, 100)]);
        let cut = Budget { per_partition: Some(40), total: None };
        let plan = plan_batch(1, &states, &lanes, cut, 0).unwrap();
        assert!(was_limited(&plan, 100));
        let plan = plan_batch(1, &states, &lanes, Budget::default(), 0).unwrap();
        assert!(!was_limited(&plan, 100));
    }

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("raw", p)
    }

    fn setup(states: &[(i32, i64, i64)]) -> (BTreeMap<TopicPartition, PartitionState>, LaneMap) {
        let partitions: BTreeMap<_, _> = states
            .iter()
            .map(|&(p, next, latest)| (tp(p), PartitionState { next, latest }))
            .collect();
        let mut lanes = LaneMap::default();
        lanes.extend(partitions.keys(), u32::MAX);
        (partitions, lanes)
    }

    #[test]
    fn plans_one_task_per_lane_with_new_records() {
        let (partitions, lanes) = setup(&[(0, 0, 10), (1, 5, 5), (2, 3, 4)]);
        let plan = plan_batch(1, &partitions, &lanes, Budget::default(), 99).unwrap();
        assert_eq!(plan.id, 1);
        assert_eq!(plan.planned_at_ms, 99);
        let got: Vec<_> = plan.ranges().map(|r| r.to_string()).collect();
        assert_eq!(got, ["raw-0[0, 10)", "raw-2[3, 4)"]);
        assert_eq!(plan.tasks.iter().map(|t| t.lane).collect::<Vec<_>>(), [0, 2]);
    }

    #[test]
    fn no_new_records_means_no_batch() {
        let (partitions, lanes) = setup(&[(0, 7, 7), (1, 0, 0)]);
        assert_eq!(plan_batch(3, &partitions, &lanes, Budget::default(), 0), None);
    }

    #[test]
    fn a_log_that_shrank_below_next_is_not_planned() {
        // A recreated topic can report an end below our position: never plan a reversed range.
        let (partitions, lanes) = setup(&[(0, 50, 10)]);
        assert_eq!(plan_batch(1, &partitions, &lanes, Budget::default(), 0), None);
    }

    #[test]
    fn partitions_without_a_lane_are_skipped() {
        let (mut partitions, lanes) = setup(&[(0, 0, 5)]);
        partitions.insert(tp(9), PartitionState { next: 0, latest: 5 });
        let plan = plan_batch(1, &partitions, &lanes, Budget::default(), 0).unwrap();
        assert_eq!(plan.ranges().count(), 1);
    }

    #[test]
    fn consecutive_plans_tile_the_offsets() {
        let (mut partitions, lanes) = setup(&[(0, 0, 10)]);
        let first = plan_batch(1, &partitions, &lanes, Budget::default(), 0).unwrap();
        let end = first.ranges().next().unwrap().until();
        partitions.get_mut(&tp(0)).unwrap().next = end;
        partitions.get_mut(&tp(0)).unwrap().latest = 25;
        let second = plan_batch(2, &partitions, &lanes, Budget::default(), 0).unwrap();
        assert_eq!(second.ranges().next().unwrap().from(), end);
    }

    fn budget(per_partition: Option<u64>, total: Option<u64>) -> Budget {
        Budget { per_partition, total }
    }

    #[test]
    fn a_partition_takes_at_most_its_rate_times_the_interval() {
        let (partitions, lanes) = setup(&[(0, 0, 10_000), (1, 500, 600)]);
        let plan = plan_batch(1, &partitions, &lanes, budget(Some(1_000), None), 0).unwrap();
        let got: Vec<_> = plan.ranges().map(|r| r.to_string()).collect();
        assert_eq!(got, ["raw-0[0, 1000)", "raw-1[500, 600)"]);
    }

    #[test]
    fn the_batch_total_is_split_in_proportion_to_lag() {
        assert_eq!(allot(&[9_000, 1_000], budget(None, Some(1_000))), [900, 100]);
        assert_eq!(allot(&[300, 300, 300], budget(None, Some(100))), [34, 33, 33]);
        assert_eq!(allot(&[5, 7], budget(None, Some(100))), [5, 7], "under the total: all");
    }

    #[test]
    fn every_lagging_partition_gets_at_least_one_record() {
        assert_eq!(allot(&[1_000_000, 1, 2], budget(None, Some(10))), [8, 1, 1]);
        // More lagging partitions than the total: each still moves.
        assert_eq!(allot(&[5, 5, 5], budget(None, Some(2))), [1, 1, 1]);
    }

    #[test]
    fn both_limits_hold_and_rounding_goes_to_partitions_with_room() {
        // Proportional shares 500/500, but partition 0 may take 100 only; the rest goes to 1.
        let shares = allot(&[5_000, 5_000], budget(Some(100), Some(1_000)));
        assert_eq!(shares, [100, 100], "the per-partition cap wins");
        let shares = allot(&[100, 9_900, 10], budget(Some(5_000), Some(3_000)));
        assert!(shares.iter().sum::<u64>() <= 3_000, "{shares:?}");
        assert!(shares[1] <= 5_000 && shares[0] >= 1 && shares[2] >= 1, "{shares:?}");
        assert_eq!(shares.iter().sum::<u64>(), 3_000, "the whole budget is used: {shares:?}");
    }

    #[test]
    fn a_limited_plan_still_tiles_the_offsets() {
        let (mut partitions, lanes) = setup(&[(0, 0, 250)]);
        let mut next = 0;
        for id in 1..=3 {
            let plan = plan_batch(id, &partitions, &lanes, budget(Some(100), None), 0).unwrap();
            let range = plan.ranges().next().unwrap().clone();
            assert_eq!(range.from(), next);
            next = range.until();
            partitions.get_mut(&tp(0)).unwrap().next = next;
        }
        assert_eq!(next, 250);
        assert_eq!(plan_batch(4, &partitions, &lanes, budget(Some(100), None), 0), None);
    }
}
