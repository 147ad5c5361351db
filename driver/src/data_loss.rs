//! Offsets the job still has to read that Kafka no longer holds, found while planning: pure
//! code. Two cases:
//! - expired: the partition's log now starts after the job's position (retention or
//!   DeleteRecords removed records while the job was down or behind);
//! - shrunk: the log now ends before the job's position (the topic was deleted and created
//!   again, so its offsets start over).
//!
//! `source.on_data_loss = "fail"` stops the job with an error naming the partition, the missing
//! offsets and how many records are gone. `"skip"` moves the partition to the log start and
//! returns what was skipped, for the batch record and the metrics.

use std::collections::BTreeMap;

use weir_common::config::OnDataLoss;
use weir_common::{OffsetRange, TopicPartition};

use crate::planner::PartitionState;

/// Checks every partition whose log start is in `starts`, moving skipped ones in `states`.
/// Returns the skipped offsets: `[position, log start)` for expired records, and an empty range
/// at the log start for a log that started over (nothing is known to be lost there).
pub fn check(
    states: &mut BTreeMap<TopicPartition, PartitionState>,
    starts: &BTreeMap<TopicPartition, i64>,
    policy: OnDataLoss,
) -> Result<Vec<OffsetRange>, String> {
    let mut skipped = Vec::new();
    for (tp, state) in states.iter_mut() {
        let Some(&start) = starts.get(tp) else { continue };
        let next = state.next;
        if next < start {
            if policy == OnDataLoss::Fail {
                return Err(format!(
                    "offsets [{next}, {start}) of {tp} are no longer in Kafka: {} records the job \
                     has not read are gone (retention or DeleteRecords). Set \
                     source.on_data_loss = \"skip\" to go on from offset {start}",
                    start - next
                ));
            }
            skipped.push(OffsetRange::new(tp.clone(), next, start).expect("next < start"));
            state.next = start;
        } else if next > state.latest {
            if policy == OnDataLoss::Fail {
                return Err(format!(
                    "{tp} ends at offset {} but the job is at {next}: the topic was deleted and \
                     created again, so its offsets started over. Set source.on_data_loss = \
                     \"skip\" to read it from its start ({start})",
                    state.latest
                ));
            }
            skipped.push(OffsetRange::new(tp.clone(), start, start).expect("an empty range"));
            state.next = start;
        }
    }
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("raw", p)
    }

    fn states(entries: &[(i32, i64, i64)]) -> BTreeMap<TopicPartition, PartitionState> {
        entries.iter().map(|&(p, next, latest)| (tp(p), PartitionState { next, latest })).collect()
    }

    fn starts(entries: &[(i32, i64)]) -> BTreeMap<TopicPartition, i64> {
        entries.iter().map(|&(p, start)| (tp(p), start)).collect()
    }

    #[test]
    fn nothing_lost_changes_nothing() {
        let mut s = states(&[(0, 100, 200), (1, 0, 0)]);
        let before = s.clone();
        let found = check(&mut s, &starts(&[(0, 100), (1, 0)]), OnDataLoss::Fail).unwrap();
        assert!(found.is_empty());
        assert_eq!(s, before);
    }

    #[test]
    fn expired_offsets_fail_naming_the_partition_the_offsets_and_the_count() {
        let mut s = states(&[(0, 100, 500)]);
        let error = check(&mut s, &starts(&[(0, 350)]), OnDataLoss::Fail).unwrap_err();
        assert!(
            error.starts_with("offsets [100, 350) of raw-0 are no longer in Kafka: 250 records")
        );
        assert!(error.contains("source.on_data_loss = \"skip\""), "{error}");
        assert_eq!(s[&tp(0)].next, 100, "fail moves nothing");
    }

    #[test]
    fn expired_offsets_are_skipped_to_the_log_start() {
        let mut s = states(&[(0, 100, 500), (1, 40, 60)]);
        let found = check(&mut s, &starts(&[(0, 350), (1, 10)]), OnDataLoss::Skip).unwrap();
        let found: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(found, ["raw-0[100, 350)"]);
        assert_eq!(s[&tp(0)].next, 350);
        assert_eq!(s[&tp(1)].next, 40, "partition 1 lost nothing");
    }

    #[test]
    fn a_log_that_started_over_fails_or_restarts_from_its_start() {
        let mut s = states(&[(0, 900, 20)]);
        let error = check(&mut s.clone(), &starts(&[(0, 0)]), OnDataLoss::Fail).unwrap_err();
        assert!(error.contains("raw-0 ends at offset 20 but the job is at 900"), "{error}");
        let found = check(&mut s, &starts(&[(0, 0)]), OnDataLoss::Skip).unwrap();
        assert_eq!(found.len(), 1);
        assert!(found[0].is_empty() && found[0].from() == 0, "{}", found[0]);
        assert_eq!(s[&tp(0)].next, 0);
    }
}
