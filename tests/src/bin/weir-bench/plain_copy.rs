//! `plain loop`: the baseline Weir's overhead is measured against, written as well as one can
//! with the same client: one consumer assigned to every partition from the beginning, with large
//! fetches, and one producer tuned as Weir's are (idempotent, `acks=all`, `linger.ms = 5`), with
//! a deep queue so a send never waits while the consumer has records. Two variants:
//!
//! - idempotent: no transactions, flushed at the end;
//! - transactional: a transaction every `every` records, the consumer's position sent to it
//!   (`send_offsets_to_transaction`) before each commit, as a hand-written exactly-once copy does.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
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
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "4194304")
        .create()?;
    let mut producer_config = kafka::client_config();
    producer_config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000");
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
    let commit = |producer: &ThreadedProducer<DefaultProducerContext>| -> anyhow::Result<()> {
        let position = consumer.position()?;
        let metadata = consumer.group_metadata().context("the consumer's group metadata")?;
        producer.send_offsets_to_transaction(&position, &metadata, TIMEOUT)?;
        producer.commit_transaction(TIMEOUT)?;
        Ok(())
    };
    let (mut copied, mut ended) = (0u64, 0);
    while copied < records || ended < partitions {
        ensure!(started.elapsed() < Duration::from_secs(900), "plain copy: {copied} after 15 min");
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                let mut record = BaseRecord::<[u8], [u8]>::to(output);
                if let Some(key) = m.key() {
                    record = record.key(key);
                }
                if let Some(payload) = m.payload() {
                    record = record.payload(payload);
                }
                kafka::send_when_room(&producer, record)
                    .map_err(|e| anyhow::anyhow!("plain copy: producing: {e}"))?;
                copied += 1;
                if let PlainMode::Transactional(every) = mode
                    && copied % every == 0
                {
                    commit(&producer)?;
                    producer.begin_transaction()?;
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => ended += 1,
            Some(Err(e)) => bail!("plain copy: consuming: {e}"),
        }
    }
    match mode {
        PlainMode::Idempotent => producer.flush(TIMEOUT)?,
        PlainMode::Transactional(_) => commit(&producer)?,
    }
    Ok(started.elapsed())
}
