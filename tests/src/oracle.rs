//! The delivery oracle: compares what a test produced with what a reader observed in the output
//! and says, per input partition, how many records were lost, duplicated or reordered, and how
//! many records appeared that nobody produced.
//!
//! It is pure (no Kafka, no files), so the fault tests can judge any sink the same way: the
//! caller turns what it read into [`Stream`]s, ordered sequences of record ids as one reader sees
//! them (one stream per output partition, or per input partition's files in file-name order).
//!
//! The rules, for each input partition of the produced records:
//! - **lost**: a produced id that occurs in no stream.
//! - **duplicated**: every occurrence of an id beyond its first, over all streams.
//! - **out of order**: in one stream, the first occurrence of an id whose input offset is lower
//!   than that of an earlier first occurrence from the same input partition. Repeats of ids
//!   already seen in the stream are duplicates, not reorderings, so an at-least-once replay of a
//!   range is not also counted as out of order.
//! - **unexpected**: an id that was never produced, or a record the reader could not map to an
//!   id at all ([`Observed::unreadable`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use crate::kafka::Produced;

/// How many ids of each kind ([`PartitionVerdict::first_lost`], [`Verdict::first_unexpected`])
/// a verdict keeps to name in a failure message.
pub const EXAMPLES: usize = 8;

/// One ordered sequence of record ids as a reader sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stream {
    /// What the stream is (`out-3`, `files of in-2`), for messages.
    pub name: String,
    pub ids: Vec<u64>,
}

impl Stream {
    pub fn new(name: impl Into<String>, ids: Vec<u64>) -> Self {
        Self { name: name.into(), ids }
    }
}

/// Everything a reader observed in the output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub streams: Vec<Stream>,
    /// Records the reader found but could not map to an id (no `id-N` key, a line that is not
    /// `{"id":N}`): they were not produced by the test, so they count as unexpected.
    pub unreadable: u64,
}

/// The judgement of one input partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionVerdict {
    pub partition: i32,
    /// Records produced to this partition.
    pub expected: u64,
    /// Distinct produced ids seen in some stream.
    pub delivered: u64,
    /// Produced ids seen in no stream.
    pub lost: u64,
    /// The lowest lost ids, at most [`EXAMPLES`].
    pub first_lost: Vec<u64>,
    /// Occurrences beyond the first of each id.
    pub duplicated: u64,
    /// First occurrences (per stream) behind a higher input offset of the same partition.
    pub out_of_order: u64,
    /// The first few out-of-order ids, at most [`EXAMPLES`], in stream order.
    pub first_out_of_order: Vec<u64>,
}

/// The oracle's judgement of a whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// One entry per input partition that had records produced, by partition number.
    pub partitions: Vec<PartitionVerdict>,
    /// Occurrences of ids that were never produced, plus unreadable records.
    pub unexpected: u64,
    /// The first few unexpected ids, at most [`EXAMPLES`], in stream order.
    pub first_unexpected: Vec<u64>,
    /// How many streams were read, and how many records they held in all.
    pub streams: usize,
    pub observed: u64,
}

/// Judges `observed` against `produced`. See the module doc for the rules.
pub fn judge(produced: &[Produced], observed: &Observed) -> Verdict {
    // id -> (input partition, input offset)
    let origin: HashMap<u64, (i32, i64)> =
        produced.iter().map(|p| (p.id, (p.partition, p.offset))).collect();
    let mut partitions: BTreeMap<i32, PartitionVerdict> = BTreeMap::new();
    for &(partition, _) in origin.values() {
        let entry = partitions
            .entry(partition)
            .or_insert_with(|| PartitionVerdict { partition, ..Default::default() });
        entry.expected += 1;
    }

    let mut occurrences: HashMap<u64, u64> = HashMap::with_capacity(origin.len());
    let mut unexpected = observed.unreadable;
    let mut first_unexpected = Vec::new();
    let mut total = observed.unreadable;
    for stream in &observed.streams {
        let mut seen_here: HashSet<u64> = HashSet::with_capacity(stream.ids.len());
        // Highest input offset among first occurrences so far, per input partition.
        let mut high: HashMap<i32, i64> = HashMap::new();
        for &id in &stream.ids {
            total += 1;
            let Some(&(partition, offset)) = origin.get(&id) else {
                unexpected += 1;
                if first_unexpected.len() < EXAMPLES {
                    first_unexpected.push(id);
                }
                continue;
            };
            *occurrences.entry(id).or_insert(0) += 1;
            if !seen_here.insert(id) {
                continue;
            }
            let high = high.entry(partition).or_insert(offset);
            if offset < *high {
                let verdict = partitions.get_mut(&partition).expect("produced partition");
                verdict.out_of_order += 1;
                if verdict.first_out_of_order.len() < EXAMPLES {
                    verdict.first_out_of_order.push(id);
                }
            } else {
                *high = offset;
            }
        }
    }

    let mut lost_ids: BTreeMap<i32, Vec<u64>> = BTreeMap::new();
    for (&id, &(partition, _)) in &origin {
        let verdict = partitions.get_mut(&partition).expect("produced partition");
        match occurrences.get(&id) {
            None => lost_ids.entry(partition).or_default().push(id),
            Some(&n) => {
                verdict.delivered += 1;
                verdict.duplicated += n - 1;
            }
        }
    }
    for (partition, mut ids) in lost_ids {
        let verdict = partitions.get_mut(&partition).expect("produced partition");
        verdict.lost = ids.len() as u64;
        ids.sort_unstable();
        ids.truncate(EXAMPLES);
        verdict.first_lost = ids;
    }

    Verdict {
        partitions: partitions.into_values().collect(),
        unexpected,
        first_unexpected,
        streams: observed.streams.len(),
        observed: total,
    }
}

impl Verdict {
    fn sum(&self, f: impl Fn(&PartitionVerdict) -> u64) -> u64 {
        self.partitions.iter().map(f).sum()
    }

    pub fn expected(&self) -> u64 {
        self.sum(|p| p.expected)
    }

    pub fn delivered(&self) -> u64 {
        self.sum(|p| p.delivered)
    }

    pub fn lost(&self) -> u64 {
        self.sum(|p| p.lost)
    }

    pub fn duplicated(&self) -> u64 {
        self.sum(|p| p.duplicated)
    }

    pub fn out_of_order(&self) -> u64 {
        self.sum(|p| p.out_of_order)
    }

    pub fn unexpected(&self) -> u64 {
        self.unexpected
    }

    /// The lowest lost ids over all partitions, at most [`EXAMPLES`].
    pub fn first_lost(&self) -> Vec<u64> {
        let mut ids: Vec<u64> =
            self.partitions.iter().flat_map(|p| p.first_lost.iter().copied()).collect();
        ids.sort_unstable();
        ids.truncate(EXAMPLES);
        ids
    }

    /// Every produced record exactly once, in input order per partition, and nothing else.
    pub fn is_exactly_once(&self) -> bool {
        self.lost() == 0
            && self.duplicated() == 0
            && self.out_of_order() == 0
            && self.unexpected() == 0
    }
}

fn ids(ids: &[u64]) -> String {
    if ids.is_empty() {
        return "-".to_owned();
    }
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    list.join(",")
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>9} {:>9} {:>9} {:>7} {:>10} {:>12}  first lost / first out of order",
            "partition", "expected", "delivered", "lost", "duplicated", "out-of-order"
        )?;
        for p in &self.partitions {
            writeln!(
                f,
                "{:>9} {:>9} {:>9} {:>7} {:>10} {:>12}  {} / {}",
                p.partition,
                p.expected,
                p.delivered,
                p.lost,
                p.duplicated,
                p.out_of_order,
                ids(&p.first_lost),
                ids(&p.first_out_of_order),
            )?;
        }
        writeln!(
            f,
            "{:>9} {:>9} {:>9} {:>7} {:>10} {:>12}",
            "total",
            self.expected(),
            self.delivered(),
            self.lost(),
            self.duplicated(),
            self.out_of_order()
        )?;
        write!(
            f,
            "unexpected: {} (first: {}); {} records read from {} streams",
            self.unexpected,
            ids(&self.first_unexpected),
            self.observed,
            self.streams
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids `0..count` over `partitions` partitions the way `kafka::produce_range` puts them:
    /// id to partition `id % partitions`, offsets counting up per partition.
    fn produced(count: u64, partitions: i32) -> Vec<Produced> {
        let mut next = vec![0i64; partitions as usize];
        (0..count)
            .map(|id| {
                let partition = (id % partitions as u64) as i32;
                let offset = next[partition as usize];
                next[partition as usize] += 1;
                Produced { id, partition, offset }
            })
            .collect()
    }

    /// One stream per partition holding its ids in offset order: a perfect same-as-input sink.
    fn perfect(produced: &[Produced], partitions: i32) -> Vec<Stream> {
        (0..partitions)
            .map(|p| {
                let ids = produced.iter().filter(|r| r.partition == p).map(|r| r.id).collect();
                Stream::new(format!("out-{p}"), ids)
            })
            .collect()
    }

    fn observed(streams: Vec<Stream>) -> Observed {
        Observed { streams, unreadable: 0 }
    }

    #[test]
    fn perfect_delivery_is_exactly_once() {
        let produced = produced(100, 4);
        let verdict = judge(&produced, &observed(perfect(&produced, 4)));
        assert!(verdict.is_exactly_once(), "{verdict}");
        assert_eq!(verdict.expected(), 100);
        assert_eq!(verdict.delivered(), 100);
        assert_eq!(verdict.observed, 100);
        assert_eq!(verdict.streams, 4);
        assert_eq!(verdict.partitions.len(), 4);
        assert!(verdict.partitions.iter().all(|p| p.expected == 25 && p.delivered == 25));
    }

    #[test]
    fn a_missing_record_is_lost_in_its_partition() {
        let produced = produced(100, 4);
        let mut streams = perfect(&produced, 4);
        // Ids 6 and 42 live in partition 2.
        streams[2].ids.retain(|&id| id != 42 && id != 6);
        let verdict = judge(&produced, &observed(streams));
        assert_eq!(verdict.lost(), 2, "{verdict}");
        assert_eq!(verdict.partitions[2].lost, 2);
        assert_eq!(verdict.partitions[2].first_lost, [6, 42]);
        assert_eq!(verdict.partitions[2].delivered, 23);
        assert_eq!(verdict.first_lost(), [6, 42]);
        assert_eq!(verdict.delivered(), 98);
        assert_eq!((verdict.duplicated(), verdict.out_of_order(), verdict.unexpected()), (0, 0, 0));
        assert!(!verdict.is_exactly_once());
    }

    #[test]
    fn a_record_seen_twice_is_one_duplicate() {
        let produced = produced(100, 4);
        let mut streams = perfect(&produced, 4);
        // An at-least-once replay: partition 1's ids 1, 5, 9 written again after the range.
        streams[1].ids.extend([1, 5, 9]);
        // And one copy that landed in another stream.
        streams[3].ids.push(13);
        let verdict = judge(&produced, &observed(streams));
        assert_eq!(verdict.duplicated(), 4, "{verdict}");
        assert_eq!(verdict.partitions[1].duplicated, 4);
        // Repeats are not first occurrences, so the replay is not also a reordering; the copy
        // in stream 3 is the first of partition 1 there, so it is not either.
        assert_eq!(verdict.out_of_order(), 0);
        assert_eq!((verdict.lost(), verdict.unexpected()), (0, 0));
        assert_eq!(verdict.delivered(), 100);
        assert_eq!(verdict.observed, 104);
    }

    #[test]
    fn a_record_behind_a_later_one_is_out_of_order() {
        let produced = produced(100, 4);
        let mut streams = perfect(&produced, 4);
        // Partition 0 holds 0, 4, 8, 12, ...: move 4 and 8 behind 20 (offsets 1 and 2 behind 5).
        let ids = &mut streams[0].ids;
        ids.retain(|&id| id != 4 && id != 8);
        let at = ids.iter().position(|&id| id == 20).unwrap() + 1;
        ids.splice(at..at, [4, 8]);
        let verdict = judge(&produced, &observed(streams));
        assert_eq!(verdict.out_of_order(), 2, "{verdict}");
        assert_eq!(verdict.partitions[0].out_of_order, 2);
        assert_eq!(verdict.partitions[0].first_out_of_order, [4, 8]);
        assert_eq!((verdict.lost(), verdict.duplicated(), verdict.unexpected()), (0, 0, 0));
    }

    #[test]
    fn order_is_per_input_partition_and_per_stream() {
        let produced = produced(8, 2);
        // One stream interleaving both partitions in reverse partition order, each in order; a
        // second stream starting partition 0 over again in order is fine too.
        let streams =
            vec![Stream::new("a", vec![1, 3, 0, 5, 2, 7, 4, 6]), Stream::new("b", vec![0])];
        let verdict = judge(&produced, &observed(streams));
        assert_eq!(verdict.out_of_order(), 0, "{verdict}");
        assert_eq!(verdict.duplicated(), 1);
    }

    #[test]
    fn an_unknown_id_is_unexpected() {
        let produced = produced(100, 4);
        let mut streams = perfect(&produced, 4);
        streams[0].ids.push(1_000);
        streams[3].ids.insert(0, 7_777);
        let mut observed = observed(streams);
        observed.unreadable = 2;
        let verdict = judge(&produced, &observed);
        assert_eq!(verdict.unexpected(), 4, "{verdict}");
        assert_eq!(verdict.first_unexpected, [1_000, 7_777]);
        assert_eq!((verdict.lost(), verdict.duplicated(), verdict.out_of_order()), (0, 0, 0));
        assert_eq!(verdict.observed, 104);
        assert!(!verdict.is_exactly_once());
    }

    #[test]
    fn nothing_read_is_everything_lost() {
        let produced = produced(10, 2);
        let verdict = judge(&produced, &Observed::default());
        assert_eq!(verdict.lost(), 10);
        assert_eq!(verdict.delivered(), 0);
        assert_eq!(verdict.partitions[0].first_lost, [0, 2, 4, 6, 8]);
        let table = verdict.to_string();
        assert!(table.contains("total"), "{table}");
        assert!(table.contains("0,2,4,6,8"), "{table}");
    }
}
