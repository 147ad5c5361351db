//! Reads exactly one offset range of one partition, streaming each record to a callback without
//! holding the range in memory. One consumer per partition is kept between tasks: when the next
//! range starts where the last one ended, the consumer's prefetched records are used as they are;
//! otherwise it is re-assigned at `from` (a seek).
//!
//! Invariant kept here: the callback sees every visible record with `from <= offset < until`
//! once, in offset order, and nothing else; reading stops at `until` even when offsets have gaps
//! (compaction, transaction markers, aborted records under `read_committed`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use weir_common::config::OnDataLoss;
use weir_common::{OffsetRange, TopicPartition};

use crate::error::TaskError;

/// A range that delivers nothing for this long fails (retryable): the broker is gone or stuck.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
/// After an end-of-partition event that may be stale, how long records may take to follow before
/// the reader seeks to make sure. A seek is what costs: it must wait for the fetch in flight,
/// which the broker may hold for `fetch.wait.max.ms` (500 ms) when it waits for new records.
const STALE_EOF_GRACE: Duration = Duration::from_millis(100);

/// librdkafka reports the end of a partition as an error; for a range reader it is a normal
/// event (handled in [`read_into`]), so it is not logged as one.
pub struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let end_of_partition = matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF);
        if end_of_partition {
            tracing::trace!(reason, "End of partition");
        } else {
            tracing::warn!(error = %error, reason, "Kafka consumer error");
        }
    }
}

impl ConsumerContext for ReaderContext {}

struct Cached {
    consumer: BaseConsumer<ReaderContext>,
    /// The offset the consumer delivers next, when known; `None` forces a seek.
    next: Option<i64>,
}

pub struct ConsumerCache {
    config: ClientConfig,
    on_data_loss: OnDataLoss,
    idle: Mutex<HashMap<TopicPartition, Cached>>,
}

impl ConsumerCache {
    pub fn new(mut config: ClientConfig, on_data_loss: OnDataLoss) -> Self {
        if config.get("queued.max.messages.kbytes").is_none() {
            // Each cached consumer prefetches up to this much; librdkafka's 64 MiB per
            // partition would let an executor's memory grow with its partition count.
            config.set("queued.max.messages.kbytes", "16384");
        }
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // librdkafka's "none": a position outside the log is an error, never a silent jump.
            .set("auto.offset.reset", "error")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true");
        ConsumerCache { config, on_data_loss, idle: Mutex::new(HashMap::new()) }
    }

    /// Reads `range`, calling `on_record` for each record. Stops early, with an error, when
    /// `cancel` is set or `on_record` fails. Returns how many records of the range Kafka no
    /// longer held and were skipped (`source.on_data_loss = "skip"`; with `"fail"` that is an
    /// error).
    pub fn read(
        &self,
        range: &OffsetRange,
        cancel: &AtomicBool,
        mut on_record: impl FnMut(&BorrowedMessage<'_>) -> Result<(), TaskError>,
    ) -> Result<u64, TaskError> {
        if range.is_empty() {
            return Ok(0);
        }
        let tp = range.topic_partition();
        let mut cached = self.checkout(tp)?;
        let result = read_into(&mut cached, range, self.on_data_loss, cancel, &mut on_record);
        if result.is_err() {
            cached.next = None;
        }
        self.idle.lock().expect("consumer cache").insert(tp.clone(), cached);
        result
    }

    fn checkout(&self, tp: &TopicPartition) -> Result<Cached, TaskError> {
        if let Some(cached) = self.idle.lock().expect("consumer cache").remove(tp) {
            return Ok(cached);
        }
        let consumer = self
            .config
            .create_with_context(ReaderContext)
            .map_err(|e| TaskError::kafka(format_args!("cannot create a consumer for {tp}"), &e))?;
        Ok(Cached { consumer, next: None })
    }
}

fn seek(cached: &mut Cached, tp: &TopicPartition, from: i64) -> Result<(), TaskError> {
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&tp.topic, tp.partition, Offset::Offset(from))
        .map_err(|e| TaskError::kafka(tp, &e))?;
    cached
        .consumer
        .assign(&assignment)
        .map_err(|e| TaskError::kafka(format_args!("cannot assign {tp} at {from}"), &e))?;
    cached.next = Some(from);
    Ok(())
}

fn read_into(
    cached: &mut Cached,
    range: &OffsetRange,
    on_data_loss: OnDataLoss,
    cancel: &AtomicBool,
    on_record: &mut impl FnMut(&BorrowedMessage<'_>) -> Result<(), TaskError>,
) -> Result<u64, TaskError> {
    use rdkafka::message::Message;
    let tp = range.topic_partition();
    let (from, until) = (range.from(), range.until());
    let mut position = from;
    // An end-of-partition event says the fetcher reached the end of the log *then*; one queued
    // before this read (the consumer keeps fetching between tasks) may be older than records
    // still to come. Only an EOF that follows a seek made during this read is proof that the
    // range is complete: after the seek the fetcher delivers every record from `position` on
    // before it can report an end, and that end is at or past `until`. An unproven EOF is first
    // given STALE_EOF_GRACE for records to follow (they usually are queued right behind it), and
    // only then answered with a seek.
    let mut seeked = cached.next != Some(from);
    if seeked {
        seek(cached, tp, from)?;
    }
    let mut lost = 0;
    let mut last_progress = Instant::now();
    // An end-of-partition event that may be stale: usually records already fetched follow it.
    let mut unproven_eof: Option<Instant> = None;
    while position < until {
        if cancel.load(Ordering::Relaxed) {
            return Err(TaskError::transient("cancelled"));
        }
        if unproven_eof.is_some_and(|at| at.elapsed() >= STALE_EOF_GRACE) {
            // Nothing followed it: the range may end in a gap. Only a seek can prove that.
            unproven_eof = None;
            seek(cached, tp, position)?;
            seeked = true;
        }
        let wait = if unproven_eof.is_some() { POLL / 5 } else { POLL };
        match cached.consumer.poll(wait) {
            None => {
                if last_progress.elapsed() > STALL_TIMEOUT {
                    return Err(TaskError::transient(format!(
                        "no record of {tp} for {STALL_TIMEOUT:?} at offset {position} (reading {range})"
                    )));
                }
            }
            Some(Ok(m)) => {
                let offset = m.offset();
                if offset < position {
                    continue;
                }
                if offset >= until {
                    // A gap reached past `until`: the record belongs to the next range, which
                    // must seek back to it.
                    cached.next = None;
                    return Ok(lost);
                }
                on_record(&m)?;
                position = offset + 1;
                last_progress = Instant::now();
                unproven_eof = None;
            }
            Some(Err(KafkaError::PartitionEOF(_))) if seeked => {
                // The rest of the range is a gap (transaction markers, aborted or compacted
                // records).
                cached.next = None;
                return Ok(lost);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {
                unproven_eof.get_or_insert_with(Instant::now);
            }
            Some(Err(e)) if is_out_of_range(&e) => {
                // Deleted after the batch was planned (retention, DeleteRecords).
                let start = log_start(cached, tp)?;
                if start <= position {
                    return Err(classify(e, range, position));
                }
                let gone = start.min(until) - position;
                if on_data_loss == OnDataLoss::Fail {
                    return Err(TaskError::data(format!(
                        "offsets [{position}, {start}) of {tp} are no longer in Kafka: {gone} \
                         records of this task's range {range} are gone (retention or \
                         DeleteRecords). Set source.on_data_loss = \"skip\" to go on"
                    )));
                }
                tracing::warn!(partition = %tp, from = position, until = start.min(until), records = gone,
                    "Offsets no longer in Kafka; skipped (source.on_data_loss = \"skip\")");
                lost += gone as u64;
                if start >= until {
                    cached.next = None;
                    return Ok(lost);
                }
                position = start;
                seek(cached, tp, position)?;
                seeked = true;
                unproven_eof = None;
            }
            // The connection state librdkafka reports and recovers from by itself (a broker
            // away, then back): the stall timeout still bounds the wait. Failing here would
            // fail the task on a stale event queued while the broker was down.
            Some(Err(e)) if is_connection_state(&e) => {
                if last_progress.elapsed() > STALL_TIMEOUT {
                    return Err(classify(e, range, position));
                }
            }
            Some(Err(e)) => return Err(classify(e, range, position)),
        }
    }
    cached.next = Some(until);
    Ok(lost)
}

fn is_connection_state(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::AllBrokersDown
                | C::BrokerTransportFailure
                | C::Resolve
                | C::BrokerNotAvailable
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::NetworkException
        )
    )
}

fn is_out_of_range(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::OffsetOutOfRange) | Some(RDKafkaErrorCode::AutoOffsetReset)
    )
}

/// The first offset still in the partition's log.
fn log_start(cached: &Cached, tp: &TopicPartition) -> Result<i64, TaskError> {
    let (low, _) = cached
        .consumer
        .fetch_watermarks(&tp.topic, tp.partition, Duration::from_secs(10))
        .map_err(|e| TaskError::kafka(format_args!("reading the log start of {tp}"), &e))?;
    Ok(low)
}

fn classify(e: KafkaError, range: &OffsetRange, position: i64) -> TaskError {
    let tp = range.topic_partition();
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::OffsetOutOfRange) | Some(RDKafkaErrorCode::AutoOffsetReset) => {
            TaskError::data(format!(
                "offsets [{position}, {}) of {tp} are not in Kafka any more (deleted by retention?): {e}",
                range.until()
            ))
        }
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
            TaskError::data(format!("{tp} does not exist any more: {e}"))
        }
        _ => TaskError::kafka(format_args!("reading {range}"), &e),
    }
}
