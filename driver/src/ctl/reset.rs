//! `weirctl offsets reset`, the pure part: which partitions a reset covers, the offset each is
//! asked to move to, and what happens to an offset outside the partition's log. No I/O here, so
//! every rule is unit-tested.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use weir_common::TopicPartition;

pub type Offsets = BTreeMap<TopicPartition, i64>;

/// Where to move each partition, as `kafka-consumer-groups --reset-offsets` names it.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Earliest,
    Latest,
    /// Leave etcd's offsets as they are (moves only the group to match them).
    Current,
    /// The first offset whose record timestamp is at or after this time (the log end when there
    /// is none); the offsets are looked up in Kafka by the caller.
    ByTime(Offsets),
    ShiftBy(i64),
    Offset(i64),
    /// Explicit offsets per partition (`--from-file`).
    Explicit(Offsets),
}

/// What to do with a requested offset outside `[log start, log end]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutOfRange {
    /// Refuse the whole reset, naming each such partition.
    #[default]
    Refuse,
    /// Move it to the nearest end of the log, and say so.
    Clamp,
}

/// A partition's log: first offset still held, and the end (a `read_committed` reader's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bounds {
    pub start: i64,
    pub end: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    #[serde(serialize_with = "crate::ctl::output::display")]
    pub partition: TopicPartition,
    pub current: i64,
    pub requested: i64,
    /// What is written: `requested`, or the log end it was clamped to.
    pub target: i64,
    pub clamped: bool,
}

/// The partitions a reset covers: every partition of the job (`--all-topics`), or those named
/// (`--topic t` for all of a topic's partitions, `--topic t:0,2` for some). Each named one must
/// be in the job's checkpoint.
pub fn scope(
    known: &BTreeSet<TopicPartition>,
    all_topics: bool,
    topics: &[String],
) -> Result<Vec<TopicPartition>, String> {
    if all_topics {
        return Ok(known.iter().cloned().collect());
    }
    if topics.is_empty() {
        return Err(
            "say which partitions to reset: --topic T, --topic T:0,1 or --all-topics".into()
        );
    }
    let mut chosen = BTreeSet::new();
    for spec in topics {
        let (topic, partitions) = match spec.split_once(':') {
            Some((topic, list)) => {
                let parsed: Result<Vec<i32>, _> =
                    list.split(',').map(|p| p.trim().parse::<i32>()).collect();
                let parsed = parsed.map_err(|_| {
                    format!("--topic {spec:?}: partitions must be numbers, like {topic}:0,1,2")
                })?;
                (topic, Some(parsed))
            }
            None => (spec.as_str(), None),
        };
        let of_topic: Vec<&TopicPartition> = known.iter().filter(|tp| tp.topic == topic).collect();
        if of_topic.is_empty() {
            return Err(format!("the job's checkpoint has no partition of topic {topic:?}"));
        }
        match partitions {
            None => chosen.extend(of_topic.into_iter().cloned()),
            Some(list) => {
                for p in list {
                    let tp = TopicPartition::new(topic, p);
                    if !known.contains(&tp) {
                        return Err(format!("the job's checkpoint has no partition {tp}"));
                    }
                    chosen.insert(tp);
                }
            }
        }
    }
    Ok(chosen.into_iter().collect())
}

/// Reads `--from-file`: one `topic,partition,offset` per line (the format
/// `kafka-consumer-groups --export` writes); blank lines and `#` comments are skipped.
pub fn parse_csv(text: &str) -> Result<Offsets, String> {
    let mut offsets = Offsets::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let bad = || format!("line {}: {line:?} is not topic,partition,offset", n + 1);
        let [topic, partition, offset] = fields.as_slice() else { return Err(bad()) };
        let (Ok(partition), Ok(offset)) = (partition.parse::<i32>(), offset.parse::<i64>()) else {
            return Err(bad());
        };
        if topic.is_empty() || partition < 0 {
            return Err(bad());
        }
        let tp = TopicPartition::new(*topic, partition);
        if offsets.insert(tp.clone(), offset).is_some() {
            return Err(format!("line {}: {tp} appears twice", n + 1));
        }
    }
    if offsets.is_empty() {
        return Err("the file lists no offsets".into());
    }
    Ok(offsets)
}

/// The change for each partition in `scope`, or a refusal naming every partition whose
/// requested offset is outside its log (with `OutOfRange::Refuse`).
pub fn plan(
    scope: &[TopicPartition],
    current: &Offsets,
    bounds: &BTreeMap<TopicPartition, Bounds>,
    target: &Target,
    out_of_range: OutOfRange,
) -> Result<Vec<Change>, String> {
    let mut changes = Vec::new();
    let mut outside = Vec::new();
    for tp in scope {
        let now = *current.get(tp).ok_or_else(|| format!("no committed offset for {tp}"))?;
        let log = *bounds.get(tp).ok_or_else(|| format!("Kafka did not report {tp}'s log"))?;
        let requested = match target {
            Target::Earliest => log.start,
            Target::Latest => log.end,
            Target::Current => now,
            Target::ShiftBy(n) => now.saturating_add(*n),
            Target::Offset(n) => *n,
            Target::ByTime(found) | Target::Explicit(found) => {
                *found.get(tp).ok_or_else(|| format!("no offset given for {tp}"))?
            }
        };
        let target = requested.clamp(log.start, log.end.max(log.start));
        if target != requested {
            outside
                .push(format!("{tp}: {requested} is outside its log [{}, {}]", log.start, log.end));
        }
        changes.push(Change {
            partition: tp.clone(),
            current: now,
            requested,
            target,
            clamped: target != requested,
        });
    }
    if !outside.is_empty() && out_of_range == OutOfRange::Refuse {
        return Err(format!(
            "{}; nothing was changed (--out-of-range clamp moves them to the nearest end of the log)",
            outside.join("; ")
        ));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(topic: &str, p: i32) -> TopicPartition {
        TopicPartition::new(topic, p)
    }

    fn known() -> BTreeSet<TopicPartition> {
        [tp("a", 0), tp("a", 1), tp("a", 2), tp("b", 0)].into_iter().collect()
    }

    #[test]
    fn scope_takes_whole_topics_some_partitions_or_everything() {
        let all = scope(&known(), true, &[]).unwrap();
        assert_eq!(all.len(), 4);
        let some = scope(&known(), false, &["a:0,2".into(), "b".into()]).unwrap();
        assert_eq!(some, [tp("a", 0), tp("a", 2), tp("b", 0)]);
        let err = scope(&known(), false, &[]).unwrap_err();
        assert!(err.contains("--all-topics"), "{err}");
        let err = scope(&known(), false, &["a:7".into()]).unwrap_err();
        assert_eq!(err, "the job's checkpoint has no partition a-7");
        let err = scope(&known(), false, &["c".into()]).unwrap_err();
        assert!(err.contains("no partition of topic \"c\""), "{err}");
        let err = scope(&known(), false, &["a:x".into()]).unwrap_err();
        assert!(err.contains("must be numbers"), "{err}");
    }

    #[test]
    fn the_csv_is_read_with_line_numbers_in_errors() {
        let parsed = parse_csv("# exported\na,0,10\n\nb, 0, 7\n").unwrap();
        assert_eq!(parsed, [(tp("a", 0), 10), (tp("b", 0), 7)].into_iter().collect());
        assert_eq!(
            parse_csv("a,0,10\na,x,1").unwrap_err(),
            "line 2: \"a,x,1\" is not topic,partition,offset"
        );
        assert!(parse_csv("a,0,1\na,0,2").unwrap_err().contains("appears twice"));
        assert!(parse_csv("\n").unwrap_err().contains("no offsets"));
    }

    fn bounds() -> BTreeMap<TopicPartition, Bounds> {
        [(tp("a", 0), Bounds { start: 100, end: 500 }), (tp("a", 1), Bounds { start: 0, end: 50 })]
            .into_iter()
            .collect()
    }

    fn current() -> Offsets {
        [(tp("a", 0), 300), (tp("a", 1), 40)].into_iter().collect()
    }

    #[test]
    fn targets_resolve_per_partition() {
        let scope = [tp("a", 0), tp("a", 1)];
        let targets = |t: Target| -> Vec<i64> {
            plan(&scope, &current(), &bounds(), &t, OutOfRange::Refuse)
                .map(|changes| changes.iter().map(|c| c.target).collect())
                .unwrap_or_default()
        };
        assert_eq!(targets(Target::Earliest), [100, 0]);
        assert_eq!(targets(Target::Latest), [500, 50]);
        assert_eq!(targets(Target::Current), [300, 40]);
        assert_eq!(targets(Target::ShiftBy(-40)), [260, 0]);
        assert_eq!(targets(Target::Offset(45)).len(), 0, "a-0's log starts at 100");
    }

    #[test]
    fn an_offset_outside_the_log_is_refused_or_clamped_never_silently() {
        let scope = [tp("a", 0), tp("a", 1)];
        let target = Target::Offset(45);
        let err = plan(&scope, &current(), &bounds(), &target, OutOfRange::Refuse).unwrap_err();
        assert!(err.starts_with("a-0: 45 is outside its log [100, 500]"), "{err}");
        assert!(err.contains("--out-of-range clamp"), "{err}");
        let changes = plan(&scope, &current(), &bounds(), &target, OutOfRange::Clamp).unwrap();
        assert_eq!((changes[0].target, changes[0].clamped), (100, true));
        assert_eq!((changes[1].target, changes[1].clamped), (45, false));
        let shifted =
            plan(&scope, &current(), &bounds(), &Target::ShiftBy(1000), OutOfRange::Clamp);
        assert_eq!(shifted.unwrap().iter().map(|c| c.target).collect::<Vec<_>>(), [500, 50]);
    }
}
