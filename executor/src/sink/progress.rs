//! Exactly-once: what a lane's committed progress (the group `weir.{job}`'s offsets, written in
//! the same Kafka transactions as the output) says about a task about to run. Pure code.
//!
//! A task's transaction commits the output and the offsets `until` together, so for each of the
//! task's partitions the progress is either at most `from` (not run yet) or at least `until`
//! (already committed: a replay after a lost report or a driver restart). Anything between means
//! the group was changed behind the job's back; running the task would duplicate or lose records,
//! so the job must stop and say so.

use std::collections::BTreeMap;

use weir_common::{OffsetRange, TopicPartition};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskProgress {
    /// Nothing of the task is committed: run it.
    NotCommitted,
    /// Every range is committed: report the task done without writing.
    AlreadyCommitted,
}

/// Decides from `committed` (progress per partition; absent = the group has none).
pub fn task_progress(
    ranges: &[OffsetRange],
    committed: &BTreeMap<TopicPartition, i64>,
    group: &str,
) -> Result<TaskProgress, String> {
    let mut done = Vec::new();
    let mut not_done = Vec::new();
    for range in ranges.iter().filter(|r| r.until() > r.from()) {
        let tp = range.topic_partition();
        match committed.get(tp).copied() {
            Some(at) if at >= range.until() => done.push(range),
            Some(at) if at > range.from() => {
                return Err(format!(
                    "the group {group} has committed offset {at} for {tp}, strictly inside this \
                     task's range {range}: a transaction can only commit a whole range, so the \
                     group's offsets were changed outside this job (or another job uses the \
                     name); stopping rather than duplicating or skipping records"
                ));
            }
            _ => not_done.push(range),
        }
    }
    match (done.is_empty(), not_done.is_empty()) {
        (false, false) => Err(format!(
            "the group {group} holds the end of {} but not of {} for this task, yet one \
             transaction commits them together: the group's offsets were changed outside this job",
            list(&done),
            list(&not_done)
        )),
        (false, true) => Ok(TaskProgress::AlreadyCommitted),
        _ => Ok(TaskProgress::NotCommitted),
    }
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

    fn committed(entries: &[(i32, i64)]) -> BTreeMap<TopicPartition, i64> {
        entries.iter().map(|&(p, at)| (TopicPartition::new("in", p), at)).collect()
    }

    #[test]
    fn a_task_runs_when_the_group_is_at_or_before_its_start() {
        let ranges = [range(0, 100, 200), range(1, 50, 60)];
        let check = |c: &[(i32, i64)]| task_progress(&ranges, &committed(c), "weir.j");
        assert_eq!(check(&[]), Ok(TaskProgress::NotCommitted), "a new group");
        assert_eq!(check(&[(0, 100), (1, 50)]), Ok(TaskProgress::NotCommitted));
        // Behind the start: etcd's plan is the authority (e.g. offsets moved forward on purpose).
        assert_eq!(check(&[(0, 7), (1, 50)]), Ok(TaskProgress::NotCommitted));
    }

    #[test]
    fn a_task_whose_ends_are_committed_is_already_done() {
        let ranges = [range(0, 100, 200), range(1, 50, 60)];
        let check = |c: &[(i32, i64)]| task_progress(&ranges, &committed(c), "weir.j");
        assert_eq!(check(&[(0, 200), (1, 60)]), Ok(TaskProgress::AlreadyCommitted));
        // Later batches of the lane committed too (the report of this one was lost).
        assert_eq!(check(&[(0, 900), (1, 75)]), Ok(TaskProgress::AlreadyCommitted));
    }

    #[test]
    fn progress_strictly_inside_a_range_stops_the_job() {
        let ranges = [range(0, 100, 200)];
        let error = task_progress(&ranges, &committed(&[(0, 150)]), "weir.j").unwrap_err();
        assert!(error.contains("weir.j has committed offset 150 for in-0"), "{error}");
        assert!(error.contains("strictly inside"), "{error}");
    }

    #[test]
    fn a_partly_committed_task_stops_the_job() {
        let ranges = [range(0, 100, 200), range(1, 50, 60)];
        let error = task_progress(&ranges, &committed(&[(0, 200)]), "weir.j").unwrap_err();
        assert!(error.contains("holds the end of"), "{error}");
    }

    #[test]
    fn empty_ranges_say_nothing() {
        let ranges = [range(0, 100, 100), range(1, 50, 60)];
        let check = |c: &[(i32, i64)]| task_progress(&ranges, &committed(c), "weir.j");
        assert_eq!(check(&[(1, 60)]), Ok(TaskProgress::AlreadyCommitted));
        assert_eq!(check(&[(0, 100)]), Ok(TaskProgress::NotCommitted));
    }
}
