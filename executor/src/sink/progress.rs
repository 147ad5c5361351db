//! Exactly-once: what a lane's committed progress (the group `weir.{job}`'s offsets, written in
//! the same Kafka transactions as the output) says about a task about to run. Pure code.
//!
//! A task's transaction commits the output and the offsets together. A task too long for one
//! transaction commits in steps, each step's offsets being where the task stood. So for each of
//! the task's partitions the progress is at most `from` (not run yet), at least `until`
//! (committed: a replay after a lost report or a driver restart), or in between, which only a
//! step of this lane's own earlier attempt can have written: every offset Weir commits names its
//! lane in the offset's metadata (`weir.lane=N`). Progress inside a range that does not name the
//! task's lane was written outside the job (a tool, another job with the same name): running the
//! task would duplicate or skip records, so the job must stop and say so.

use std::collections::BTreeMap;

use weir_common::batch::LaneId;
use weir_common::{OffsetRange, TopicPartition};

/// One partition's committed offset in the group, with the lane that committed it when its
/// metadata names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub lane: Option<LaneId>,
}

const LANE_METADATA: &str = "weir.lane=";

/// The metadata Weir commits with a lane's offsets.
pub fn lane_metadata(lane: LaneId) -> String {
    format!("{LANE_METADATA}{lane}")
}

/// The lane named by an offset's metadata, if Weir wrote it.
pub fn lane_of(metadata: &str) -> Option<LaneId> {
    metadata.strip_prefix(LANE_METADATA)?.parse().ok()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskProgress {
    /// Nothing of the task is committed: run it.
    NotCommitted,
    /// Every range is committed: report the task done without writing.
    AlreadyCommitted,
    /// An earlier attempt of this lane committed part of the task in steps: read each partition
    /// from here on (a committed range's `until`, a partly committed one's progress).
    Resume(BTreeMap<TopicPartition, i64>),
}

/// Decides from `committed` (progress per partition; absent = the group has none).
pub fn task_progress(
    lane: LaneId,
    ranges: &[OffsetRange],
    committed: &BTreeMap<TopicPartition, Committed>,
    group: &str,
) -> Result<TaskProgress, String> {
    let mut done = Vec::new();
    let mut partly = Vec::new();
    let mut not_done = Vec::new();
    for range in ranges.iter().filter(|r| r.until() > r.from()) {
        let tp = range.topic_partition();
        match committed.get(tp).copied() {
            Some(c) if c.offset >= range.until() => done.push((range, c)),
            Some(c) if c.offset > range.from() => {
                if c.lane != Some(lane) {
                    return Err(format!(
                        "the group {group} has committed offset {} for {tp}, strictly inside this \
                         task's range {range}, and not by this job's lane {lane}: the group's \
                         offsets were changed outside this job (or another job uses the name); \
                         stopping rather than duplicating or skipping records",
                        c.offset
                    ));
                }
                partly.push((range, c.offset));
            }
            _ => not_done.push(range),
        }
    }
    if partly.is_empty() && not_done.is_empty() && !done.is_empty() {
        return Ok(TaskProgress::AlreadyCommitted);
    }
    if partly.is_empty() && done.is_empty() {
        return Ok(TaskProgress::NotCommitted);
    }
    // Some of the task is committed and some not: only this lane's steps leave that.
    if let Some((range, _)) = done.iter().find(|(_, c)| c.lane != Some(lane)) {
        return Err(format!(
            "the group {group} holds the end of {range} but not of {} for this task, and not \
             written by this job's lane {lane}: the group's offsets were changed outside this job",
            list(&not_done)
        ));
    }
    let mut from: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    for (range, _) in &done {
        from.insert(range.topic_partition().clone(), range.until());
    }
    for (range, at) in &partly {
        from.insert(range.topic_partition().clone(), *at);
    }
    for range in &not_done {
        from.insert(range.topic_partition().clone(), range.from());
    }
    Ok(TaskProgress::Resume(from))
}

fn list(ranges: &[&OffsetRange]) -> String {
    ranges.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(partition: i32, from: i64, until: i64) -> OffsetRange {
        OffsetRange::new(TopicPartition::new("in", partition), from, until).unwrap()
    }

    /// Progress per partition: (partition, offset, the lane its metadata names).
    fn committed(entries: &[(i32, i64, Option<LaneId>)]) -> BTreeMap<TopicPartition, Committed> {
        entries
            .iter()
            .map(|&(p, offset, lane)| (TopicPartition::new("in", p), Committed { offset, lane }))
            .collect()
    }

    const LANE: LaneId = 3;

    fn check(
        ranges: &[OffsetRange],
        c: &[(i32, i64, Option<LaneId>)],
    ) -> Result<TaskProgress, String> {
        task_progress(LANE, ranges, &committed(c), "weir.j")
    }

    #[test]
    fn a_task_runs_when_the_group_is_at_or_before_its_start() {
        let ranges = [range(0, 100, 200), range(1, 50, 60)];
        assert_eq!(check(&ranges, &[]), Ok(TaskProgress::NotCommitted), "a new group");
        assert_eq!(
            check(&ranges, &[(0, 100, None), (1, 50, None)]),
            Ok(TaskProgress::NotCommitted)
        );
        // Behind the start: etcd's plan is the authority (e.g. offsets moved forward on purpose).
        assert_eq!(check(&ranges, &[(0, 7, None), (1, 50, None)]), Ok(TaskProgress::NotCommitted));
    }

    #[test]
    fn a_task_whose_ends_are_committed_is_already_done() {
        let ranges = [range(0, 100, 200), range(1, 50, 60)];
        assert_eq!(
            check(&ranges, &[(0, 200, None), (1, 60, None)]),
            Ok(TaskProgress::AlreadyCommitted)
        );
        // Later batches of the lane committed too (the report of this one was lost).
        assert_eq!(
            check(&ranges, &[(0, 900, Some(LANE)), (1, 75, Some(LANE))]),
            Ok(TaskProgress::AlreadyCommitted)
        );
    }

    #[test]
    fn a_task_this_lane_committed_in_steps_resumes_where_it_stood() {
        let ranges = [range(0, 100, 200), range(1, 50, 60)];
        let resume = |pairs: &[(i32, i64)]| {
            Ok(TaskProgress::Resume(
                pairs.iter().map(|&(p, at)| (TopicPartition::new("in", p), at)).collect(),
            ))
        };
        assert_eq!(check(&ranges, &[(0, 150, Some(LANE))]), resume(&[(0, 150), (1, 50)]));
        assert_eq!(
            check(&ranges, &[(0, 200, Some(LANE)), (1, 55, Some(LANE))]),
            resume(&[(0, 200), (1, 55)])
        );
        assert_eq!(check(&ranges, &[(0, 200, Some(LANE))]), resume(&[(0, 200), (1, 50)]));
    }

    #[test]
    fn progress_inside_a_range_not_written_by_the_lane_stops_the_job() {
        let ranges = [range(0, 100, 200)];
        for lane in [None, Some(LANE + 1)] {
            let error = check(&ranges, &[(0, 150, lane)]).unwrap_err();
            assert!(error.contains("weir.j has committed offset 150 for in-0"), "{error}");
            assert!(error.contains("strictly inside"), "{error}");
        }
    }

    #[test]
    fn a_partly_committed_task_not_written_by_the_lane_stops_the_job() {
        let ranges = [range(0, 100, 200), range(1, 50, 60)];
        let error = check(&ranges, &[(0, 200, None)]).unwrap_err();
        assert!(error.contains("holds the end of"), "{error}");
    }

    #[test]
    fn empty_ranges_say_nothing() {
        let ranges = [range(0, 100, 100), range(1, 50, 60)];
        assert_eq!(check(&ranges, &[(1, 60, None)]), Ok(TaskProgress::AlreadyCommitted));
        assert_eq!(check(&ranges, &[(0, 100, None)]), Ok(TaskProgress::NotCommitted));
    }

    #[test]
    fn lane_metadata_round_trips() {
        assert_eq!(lane_of(&lane_metadata(7)), Some(7));
        assert_eq!(lane_of(""), None);
        assert_eq!(lane_of("something else"), None);
    }
}
