//! Dead letters: rejected records (by a transform, or refused by the sink's topic), unchanged,
//! with the reason in the `weir.error` header. [`fit`] shapes a dead letter so the dead-letter
//! topic takes it; [`DeadLetters`] writes them for the sinks that are not transactional, through
//! the executor's shared idempotent producer, wrapping a sink's task output so the task writes
//! both through one [`TaskOutput`]. (The transactional sink writes its dead letters inside the
//! task's transaction instead.)
//!
//! Invariant: a dead letter the dead-letter topic would refuse (as far as its limits are known)
//! is not sent as it is, which would fail its task on every attempt. It loses, in this order and
//! each noted in a header, its timestamp (then stamped now), its payload, its key, its own
//! headers, and the end of a very long reason: the reason always arrives.

use std::sync::Arc;

use weir_common::{OffsetRange, Record};

use super::TaskOutput;
use super::admission::{Admission, TopicGate};
use crate::error::TaskError;
use crate::kafka::producer::{Deliveries, LazyProducer, SharedProducer};

/// The header that carries a dead letter's reason.
pub const ERROR_HEADER: &str = "weir.error";
/// The record's payload size, when the payload was left out: the topic could not hold it.
pub const PAYLOAD_BYTES_HEADER: &str = "weir.payload.bytes";
/// The record's key size, when the key was left out as well.
pub const KEY_BYTES_HEADER: &str = "weir.key.bytes";
/// How many of the record's own headers were left out, when even that was needed.
pub const HEADERS_LEFT_OUT_HEADER: &str = "weir.headers.left.out";
/// The record's timestamp (ms), when the topic refused it and the dead letter was stamped now.
pub const TIMESTAMP_HEADER: &str = "weir.timestamp";
/// A reason longer than this is cut when the dead letter would not fit otherwise.
const REASON_CUT_BYTES: usize = 1024;

/// A rejected record as it goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter<'r> {
    pub record: Record<'r>,
    /// Weir's headers, after the record's own.
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

impl DeadLetter<'_> {
    /// The headers as [`SharedProducer::send`] takes them.
    pub fn extra_headers(&self) -> Vec<(&str, &[u8])> {
        self.headers.iter().map(|(k, v)| (*k, v.as_slice())).collect()
    }

    fn header(&mut self, key: &'static str, value: impl ToString) {
        self.headers.push((key, value.to_string().into_bytes()));
    }
}

/// `record` with `reason` as the dead-letter topic takes it, as far as `admission` knows the
/// topic; unchanged but for Weir's headers when it fits.
pub fn fit<'r>(
    record: &Record<'r>,
    reason: &str,
    admission: Option<&mut Admission<'_>>,
) -> DeadLetter<'r> {
    let mut letter = DeadLetter {
        record: record.clone(),
        headers: vec![(ERROR_HEADER, reason.as_bytes().to_vec())],
    };
    let Some(admission) = admission else { return letter };
    // Each round leaves one more thing out; six are enough for every kind of refusal.
    for _ in 0..6 {
        let Some(refusal) = admission.refusal(&letter.record, &letter.extra_headers()) else {
            return letter;
        };
        let record = &mut letter.record;
        if refusal.is_timestamp() && record.timestamp_ms.is_some() {
            let ts = record.timestamp_ms.take().unwrap_or_default();
            letter.header(TIMESTAMP_HEADER, ts);
        } else if !refusal.is_size() {
            break;
        } else if let Some(payload) = record.payload.take() {
            letter.header(PAYLOAD_BYTES_HEADER, payload.len());
        } else if let Some(key) = record.key.take() {
            letter.header(KEY_BYTES_HEADER, key.len());
        } else if !record.headers.is_empty() {
            let left_out = std::mem::take(&mut record.headers).len();
            letter.header(HEADERS_LEFT_OUT_HEADER, left_out);
        } else if reason.len() > REASON_CUT_BYTES {
            let mut cut = REASON_CUT_BYTES;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            letter.headers[0].1 = format!("{}...", &reason[..cut]).into_bytes();
        } else {
            break;
        }
    }
    // Only the reason and Weir's headers are left: sent as it is; a refusal fails the task,
    // naming the record.
    letter
}

pub struct DeadLetters {
    producer: Arc<LazyProducer>,
    gate: Arc<TopicGate>,
}

impl DeadLetters {
    /// Dead letters to `gate`'s topic through `producer`.
    pub fn new(producer: Arc<LazyProducer>, gate: Arc<TopicGate>) -> Self {
        DeadLetters { producer, gate }
    }

    /// `output` plus the dead letters of the task that reads `ranges`.
    pub fn wrap<'a>(
        &'a self,
        output: Box<dyn TaskOutput + 'a>,
        ranges: &[OffsetRange],
    ) -> Box<dyn TaskOutput + 'a> {
        Box::new(WithDeadLetters {
            output,
            dead_letters: self,
            producer: None,
            admission: None,
            deliveries: Deliveries::for_ranges(ranges),
            written: 0,
        })
    }
}

struct WithDeadLetters<'a> {
    output: Box<dyn TaskOutput + 'a>,
    dead_letters: &'a DeadLetters,
    /// Taken at the task's first dead letter.
    producer: Option<SharedProducer>,
    admission: Option<Admission<'a>>,
    deliveries: Arc<Deliveries>,
    written: u64,
}

impl TaskOutput for WithDeadLetters<'_> {
    fn write(&mut self, record: &Record<'_>) -> Result<u64, TaskError> {
        self.output.write(record)
    }

    fn write_dead_letter(&mut self, record: &Record<'_>, reason: &str) -> Result<(), TaskError> {
        let dead_letters = self.dead_letters;
        let producer = match &self.producer {
            Some(producer) => producer,
            None => self.producer.insert(dead_letters.producer.get()?),
        };
        let admission = self.admission.get_or_insert_with(|| dead_letters.gate.admission());
        let letter = fit(record, reason, Some(admission));
        self.written += 1;
        let topic = dead_letters.gate.topic();
        producer.send(&self.deliveries, topic, None, &letter.record, &letter.extra_headers())
    }

    fn finish(self: Box<Self>) -> Result<(), TaskError> {
        self.output.finish()?;
        if let Some(producer) = &self.producer
            && self.written > 0
        {
            producer.flush(&self.deliveries)?;
        }
        Ok(())
    }
}

/// For outputs that have no dead-letter topic of their own: validation makes `dead-letter` need
/// a topic, so reaching this is a bug, reported without losing the record silently.
pub fn no_dead_letter_topic(record: &Record<'_>) -> TaskError {
    TaskError::config(format!(
        "record {}-{}@{} must go to the dead letters, but no dead-letter topic is set up",
        record.topic, record.partition, record.offset
    ))
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use weir_common::config::Partitioning;
    use weir_common::{Header, Record};

    use super::*;
    use crate::sink::admission::{LimitReader, ProducerLimits, Timestamps, TopicLimits};

    struct Fixed(TopicLimits);

    impl LimitReader for Fixed {
        fn limits(&self, _topic: &str) -> Result<TopicLimits, TaskError> {
            Ok(self.0.clone())
        }
        fn partitions(&self, _topic: &str) -> Result<i32, TaskError> {
            Ok(self.0.partitions.unwrap_or(1))
        }
    }

    fn gate(max_message_bytes: u64, after_max_ms: Option<i64>) -> TopicGate {
        let limits = TopicLimits {
            max_message_bytes: Some(max_message_bytes),
            timestamps: Timestamps::CreateTime { before_max_ms: None, after_max_ms },
            partitions: Some(1),
        };
        let producer = ProducerLimits { message_max_bytes: 1_000_000, compressed: false };
        TopicGate::new("dead", Partitioning::Key, producer, Arc::new(Fixed(limits)))
    }

    fn record<'a>(key: &'a [u8], payload: &'a [u8]) -> Record<'a> {
        Record {
            key: Some(Cow::Borrowed(key)),
            headers: vec![Header {
                key: Cow::Borrowed("trace"),
                value: Some(Cow::Borrowed(b"t-1")),
            }],
            timestamp_ms: Some(1_700_000_000_000),
            ..Record::with_payload("in", 3, 42, payload)
        }
    }

    fn header<'a>(letter: &'a DeadLetter<'_>, key: &str) -> Option<&'a str> {
        let value = letter.headers.iter().find(|(k, _)| *k == key)?;
        std::str::from_utf8(&value.1).ok()
    }

    #[test]
    fn a_dead_letter_that_fits_is_the_record_unchanged_with_its_reason() {
        let gate = gate(1_048_588, None);
        let original = record(b"k", b"not json");
        let letter = fit(&original, "not valid JSON", Some(&mut gate.admission()));
        assert_eq!(letter.record, original);
        assert_eq!(letter.headers, vec![(ERROR_HEADER, b"not valid JSON".to_vec())]);
        let unchecked = fit(&original, "not valid JSON", None);
        assert_eq!(unchecked, letter, "no gate: as it is");
    }

    #[test]
    fn a_record_too_large_for_the_dead_letters_goes_without_its_payload_then_its_key() {
        let gate = gate(10_000, None);
        let payload = vec![b'x'; 20_000];
        let original = record(b"id-7", &payload);
        let letter = fit(&original, "too large for out", Some(&mut gate.admission()));
        assert_eq!(letter.record.payload, None);
        assert_eq!(letter.record.key.as_deref(), Some(&b"id-7"[..]), "the key stays");
        assert_eq!(letter.record.headers, original.headers, "its headers stay");
        assert_eq!(header(&letter, PAYLOAD_BYTES_HEADER), Some("20000"));
        assert_eq!(header(&letter, ERROR_HEADER), Some("too large for out"));
        assert_eq!(letter.record.timestamp_ms, original.timestamp_ms);

        let key = vec![b'k'; 20_000];
        let original = record(&key, &payload);
        let letter = fit(&original, "too large", Some(&mut gate.admission()));
        assert_eq!((letter.record.key.clone(), letter.record.payload.clone()), (None, None));
        assert_eq!(header(&letter, KEY_BYTES_HEADER), Some("20000"));
        assert_eq!(letter.record.headers.len(), 1, "its headers still fit");
    }

    #[test]
    fn headers_then_a_long_reason_are_cut_last() {
        let gate = gate(2_000, None);
        let big = vec![b'h'; 5_000];
        let mut original = record(b"k", b"v");
        original.headers =
            vec![Header { key: Cow::Borrowed("big"), value: Some(Cow::Borrowed(&big)) }];
        let letter = fit(&original, "short", Some(&mut gate.admission()));
        assert!(letter.record.headers.is_empty());
        assert_eq!(header(&letter, HEADERS_LEFT_OUT_HEADER), Some("1"));

        let reason = "é".repeat(3_000);
        let letter = fit(&record(b"k", b"v"), &reason, Some(&mut gate.admission()));
        let cut = header(&letter, ERROR_HEADER).expect("the reason, cut");
        assert!(cut.len() <= REASON_CUT_BYTES + 3 && cut.ends_with("..."), "{}", cut.len());
    }

    #[test]
    fn a_refused_timestamp_is_stamped_now_and_kept_in_a_header() {
        let gate = gate(1_048_588, Some(3_600_000));
        let mut original = record(b"k", b"v");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let in_two_hours = now.as_millis() as i64 + 2 * 3_600_000;
        original.timestamp_ms = Some(in_two_hours);
        let letter = fit(&original, "timestamp refused by out", Some(&mut gate.admission()));
        assert_eq!(letter.record.timestamp_ms, None, "the producer stamps it now");
        assert_eq!(header(&letter, TIMESTAMP_HEADER), Some(in_two_hours.to_string().as_str()));
        assert_eq!(letter.record.payload, original.payload, "the rest unchanged");
    }
}
