//! `OffsetRange`: the unit of work of a batch, `(topic, partition, from, until)`, half-open.
//! Invariant kept here: `0 <= from <= until` and `partition >= 0`, for every value that exists.

use std::fmt;

use weir_proto::v1 as pb;

use crate::error::ProtoError;

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self { topic: topic.into(), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Records of one partition with `from <= offset < until`.
///
/// `until - from` is an upper bound on the record count, not the count: offsets have gaps
/// (compaction, transaction markers, aborted records under `read_committed`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OffsetRange {
    tp: TopicPartition,
    from: i64,
    until: i64,
}

impl OffsetRange {
    /// Fails when the bounds are negative or reversed; the message names the bad value.
    pub fn new(tp: TopicPartition, from: i64, until: i64) -> Result<Self, String> {
        if tp.partition < 0 {
            return Err(format!("partition must be >= 0, got {}", tp.partition));
        }
        if from < 0 {
            return Err(format!("from must be >= 0, got {from}"));
        }
        if until < from {
            return Err(format!("until ({until}) must be >= from ({from})"));
        }
        Ok(Self { tp, from, until })
    }

    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }
    pub fn topic(&self) -> &str {
        &self.tp.topic
    }
    pub fn partition(&self) -> i32 {
        self.tp.partition
    }
    pub fn from(&self) -> i64 {
        self.from
    }
    pub fn until(&self) -> i64 {
        self.until
    }
    pub fn is_empty(&self) -> bool {
        self.from == self.until
    }
    /// The most records the range can hold (fewer when offsets have gaps).
    pub fn max_records(&self) -> u64 {
        (self.until - self.from) as u64
    }
    pub fn contains(&self, offset: i64) -> bool {
        self.from <= offset && offset < self.until
    }
}

impl fmt::Display for OffsetRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}, {})", self.tp, self.from, self.until)
    }
}

impl From<&OffsetRange> for pb::OffsetRange {
    fn from(r: &OffsetRange) -> Self {
        pb::OffsetRange {
            topic: r.tp.topic.clone(),
            partition: r.tp.partition,
            from: r.from,
            until: r.until,
        }
    }
}

/// Kafka's own rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, and not `.` or `..`. A name
/// that breaks it never came from Kafka, so it is refused wherever ranges arrive from the wire or
/// from etcd: none can then reach a file path (the file sink names its files after topics).
pub fn is_kafka_topic_name(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl TryFrom<pb::OffsetRange> for OffsetRange {
    type Error = ProtoError;

    fn try_from(p: pb::OffsetRange) -> Result<Self, Self::Error> {
        if !is_kafka_topic_name(&p.topic) {
            return Err(ProtoError::InvalidField {
                message: "OffsetRange",
                field: "topic",
                reason: format!(
                    "{:?} is not a Kafka topic name (1 to 249 of a-z, A-Z, 0-9, '.', '_', '-'; \
                     not \".\" or \"..\")",
                    p.topic
                ),
            });
        }
        OffsetRange::new(TopicPartition::new(p.topic, p.partition), p.from, p.until).map_err(
            |reason| ProtoError::InvalidField { message: "OffsetRange", field: "bounds", reason },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kafka_topic_names_come_in_from_the_wire() {
        for good in ["raw", "raw-events.v2", "a_b", ".hidden", "..x", &"t".repeat(249)] {
            assert!(is_kafka_topic_name(good), "{good}");
        }
        for bad in ["", ".", "..", "../../etc", "a/b", "a b", "é", &"t".repeat(250)] {
            assert!(!is_kafka_topic_name(bad), "{bad}");
            let wire = pb::OffsetRange { topic: bad.to_owned(), partition: 0, from: 0, until: 1 };
            let err = OffsetRange::try_from(wire).unwrap_err().to_string();
            assert!(err.contains("is not a Kafka topic name"), "{err}");
        }
    }

    fn tp() -> TopicPartition {
        TopicPartition::new("raw", 3)
    }

    #[test]
    fn range_is_half_open() {
        let r = OffsetRange::new(tp(), 10, 20).unwrap();
        assert!(!r.contains(9));
        assert!(r.contains(10));
        assert!(r.contains(19));
        assert!(!r.contains(20));
        assert_eq!(r.max_records(), 10);
        assert_eq!(r.to_string(), "raw-3[10, 20)");
    }

    #[test]
    fn empty_range_contains_nothing() {
        let r = OffsetRange::new(tp(), 7, 7).unwrap();
        assert!(r.is_empty());
        assert!(!r.contains(7));
        assert_eq!(r.max_records(), 0);
    }

    #[test]
    fn bad_bounds_are_refused_with_the_value() {
        assert_eq!(OffsetRange::new(tp(), 5, 4).unwrap_err(), "until (4) must be >= from (5)");
        assert_eq!(OffsetRange::new(tp(), -1, 4).unwrap_err(), "from must be >= 0, got -1");
        let bad_partition = OffsetRange::new(TopicPartition::new("raw", -1), 0, 1);
        assert_eq!(bad_partition.unwrap_err(), "partition must be >= 0, got -1");
    }

    #[test]
    fn proto_round_trip_keeps_every_field() {
        let r = OffsetRange::new(tp(), 100, 250).unwrap();
        let back = OffsetRange::try_from(pb::OffsetRange::from(&r)).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn proto_with_reversed_bounds_is_an_error_naming_the_field() {
        let p = pb::OffsetRange { topic: "raw".into(), partition: 0, from: 9, until: 3 };
        let err = OffsetRange::try_from(p).unwrap_err();
        assert_eq!(err.to_string(), "OffsetRange.bounds: until (3) must be >= from (9)");
    }

    #[test]
    fn proto_without_topic_is_an_error() {
        let p = pb::OffsetRange { topic: String::new(), partition: 0, from: 0, until: 3 };
        let err = OffsetRange::try_from(p).unwrap_err();
        assert!(err.to_string().starts_with("OffsetRange.topic: \"\" is not a Kafka topic name"));
    }
}
