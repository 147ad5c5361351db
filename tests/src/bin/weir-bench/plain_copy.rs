//! `plain loop`: the baseline Weir's overhead is measured against, written as well as one can
//! with the same client: one consumer assigned to every partition from the beginning, with large
//! fetches and a deep prefetch queue, read in batches of up to 10,000 records (librdkafka's
//! `rd_kafka_consume_batch_queue`; rust-rdkafka's `poll` takes one record per call), and one
//! producer tuned as Weir's are
//! (idempotent, `acks=all`, `linger.ms = 5`), with a deep queue so a send never waits while the
//! consumer has records. Two variants:
//!
//! - idempotent: no transactions, flushed at the end;
//! - transactional: a transaction every `every` records, the consumer's position sent to it
//!   (`send_offsets_to_transaction`) before each commit, as a hand-written exactly-once copy does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use weir_tests::kafka;

/// How the plain loop writes.
#[derive(Debug, Clone, Copy)]
pub enum PlainMode {
    Idempotent,
    /// A transaction every this many records.
    Transactional(u64),
}

impl PlainMode {
    pub fn label(self) -> String {
        match self {
            PlainMode::Idempotent => "plain loop, idempotent producer".into(),
            PlainMode::Transactional(every) => {
                format!("plain loop, a transaction every {}k records", every / 1000)
            }
        }
    }
}

const TIMEOUT: Duration = Duration::from_secs(60);

/// Copies `records` records (key and payload) of `input`'s `partitions` partitions to `output`
/// and returns how long it took, until the last record is acknowledged (or committed).
pub fn plain_copy(
    input: &str,
    output: &str,
    partitions: i32,
    records: u64,
    mode: PlainMode,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let group = weir_tests::names::unique("bench-plain");
    let consumer: BaseConsumer = kafka::client_config()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        // Large fetches and a deep prefetch queue: with librdkafka's defaults (1 MiB per
        // partition and fetch, a 64 MiB queue) the loop read 227k records/s, with these 566k.
        .set("fetch.max.bytes", "104857600")
        .set("max.partition.fetch.bytes", "16777216")
        .set("queued.min.messages", "1000000")
        .set("queued.max.messages.kbytes", "1048576")
        .set_extra("WEIR_BENCH_PLAIN_CONSUMER")
        .create()?;
    let mut producer_config = kafka::client_config();
    producer_config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000");
    producer_config.set_extra("WEIR_BENCH_PLAIN_PRODUCER");
    if let PlainMode::Transactional(_) = mode {
        producer_config.set("transactional.id", format!("{group}-txn"));
    }
    let producer: ThreadedProducer<DefaultProducerContext> = producer_config.create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(input, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    if let PlainMode::Transactional(_) = mode {
        producer.init_transactions(TIMEOUT)?;
        producer.begin_transaction()?;
    }
    // The next offset of each partition, sent with each transaction as a hand-written
    // exactly-once copy does.
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let commit = |producer: &ThreadedProducer<DefaultProducerContext>,
                  next: &BTreeMap<i32, i64>|
     -> anyhow::Result<()> {
        let mut position = TopicPartitionList::new();
        for (&partition, &offset) in next {
            position.add_partition_offset(input, partition, Offset::Offset(offset))?;
        }
        let metadata = consumer.group_metadata().context("the consumer's group metadata")?;
        producer.send_offsets_to_transaction(&position, &metadata, TIMEOUT)?;
        producer.commit_transaction(TIMEOUT)?;
        Ok(())
    };
    let mut batch = BatchQueue::of(&consumer);
    let (mut copied, mut ended) = (0u64, 0);
    while copied < records || ended < partitions {
        ensure!(started.elapsed() < Duration::from_secs(900), "plain copy: {copied} after 15 min");
        for message in batch.consume(Duration::from_millis(100))? {
            match message {
                Consumed::Record { partition, offset, key, payload } => {
                    let mut record = BaseRecord::<[u8], [u8]>::to(output);
                    if let Some(key) = key {
                        record = record.key(key);
                    }
                    if let Some(payload) = payload {
                        record = record.payload(payload);
                    }
                    kafka::send_when_room(&producer, record)
                        .map_err(|e| anyhow::anyhow!("plain copy: producing: {e}"))?;
                    next.insert(partition, offset + 1);
                    copied += 1;
                    if let PlainMode::Transactional(every) = mode
                        && copied % every == 0
                    {
                        commit(&producer, &next)?;
                        producer.begin_transaction()?;
                    }
                }
                Consumed::EndOfPartition => ended += 1,
            }
        }
    }
    drop(batch);
    match mode {
        PlainMode::Idempotent => producer.flush(TIMEOUT)?,
        PlainMode::Transactional(_) => commit(&producer, &next)?,
    }
    Ok(started.elapsed())
}

/// A record or an end of partition, borrowed from a batch of [`BatchQueue::consume`].
enum Consumed<'a> {
    Record { partition: i32, offset: i64, key: Option<&'a [u8]>, payload: Option<&'a [u8]> },
    EndOfPartition,
}

/// librdkafka's consumer queue of `consumer`, read in batches. rust-rdkafka has no batch call,
/// so this uses librdkafka's own (`rd_kafka_consume_batch_queue`) on the queue the consumer
/// polls; with `assign` (no group rebalances) nothing else needs serving from it.
struct BatchQueue {
    queue: *mut rd::rd_kafka_queue_t,
    messages: Vec<*mut rd::rd_kafka_message_t>,
}

impl BatchQueue {
    const SIZE: usize = 10_000;

    fn of(consumer: &BaseConsumer) -> Self {
        // SAFETY: the consumer's handle is valid while `consumer` lives, and the queue is
        // released in `drop`, which the caller runs before the consumer is dropped.
        let queue = unsafe { rd::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
        BatchQueue { queue, messages: Vec::with_capacity(Self::SIZE) }
    }

    /// Up to `SIZE` records (or ends of partition), waiting at most `timeout` for the first.
    /// The records live until the next call, which the borrow of `self` enforces.
    fn consume(&mut self, timeout: Duration) -> anyhow::Result<Vec<Consumed<'_>>> {
        let messages = &mut self.messages;
        for &m in messages.iter() {
            // SAFETY: each was returned by librdkafka below and is destroyed once.
            unsafe { rd::rd_kafka_message_destroy(m) };
        }
        messages.clear();
        // SAFETY: `messages` has room for SIZE pointers; librdkafka fills at most that many.
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(
                self.queue,
                timeout.as_millis() as i32,
                messages.as_mut_ptr(),
                Self::SIZE,
            )
        };
        ensure!(n >= 0, "plain copy: rd_kafka_consume_batch_queue failed");
        // SAFETY: librdkafka wrote `n` valid message pointers.
        unsafe { messages.set_len(n as usize) };
        let mut batch = Vec::with_capacity(messages.len());
        for &m in messages.iter() {
            // SAFETY: valid until destroyed at the next call (or in `drop`); the slices borrow
            // `self`, which outlives them.
            let message = unsafe { &*m };
            let slice = |ptr: *mut std::ffi::c_void, len: usize| {
                (!ptr.is_null())
                    .then(|| unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
            };
            match message.err {
                rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => {
                    batch.push(Consumed::Record {
                        partition: message.partition,
                        offset: message.offset,
                        key: slice(message.key, message.key_len),
                        payload: slice(message.payload, message.len),
                    })
                }
                rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                    batch.push(Consumed::EndOfPartition)
                }
                error => bail!("plain copy: consuming: {error:?}"),
            }
        }
        Ok(batch)
    }
}

impl Drop for BatchQueue {
    fn drop(&mut self) {
        for &m in &self.messages {
            // SAFETY: as in `consume`.
            unsafe { rd::rd_kafka_message_destroy(m) };
        }
        // SAFETY: obtained in `of`, released once.
        unsafe { rd::rd_kafka_queue_destroy(self.queue) };
    }
}

/// Tuning experiments: extra client properties from `VARIABLE="key=value,key=value"`
/// (`WEIR_BENCH_PLAIN_CONSUMER`, `WEIR_BENCH_PLAIN_PRODUCER`).
trait SetExtra {
    fn set_extra(&mut self, variable: &str) -> &mut Self;
}

impl SetExtra for rdkafka::ClientConfig {
    fn set_extra(&mut self, variable: &str) -> &mut Self {
        let extra = std::env::var(variable).unwrap_or_default();
        for (key, value) in extra.split(',').filter_map(|kv| kv.split_once('=')) {
            self.set(key, value);
        }
        self
    }
}
