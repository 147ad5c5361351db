//! `plain librdkafka`: the floor Weir's overhead is measured against. One consumer assigned to
//! every partition from the beginning and one idempotent producer copy each record.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use weir_tests::kafka;

use crate::PARTITIONS;

/// Copies `records` records (key and payload) of `input` to `output`, flushed at the end, and
/// returns how long it took.
pub fn plain_copy(input: &str, output: &str, records: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let consumer: BaseConsumer = kafka::client_config()
        .set("group.id", weir_tests::names::unique("bench-plain"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()?;
    let producer: ThreadedProducer<DefaultProducerContext> =
        kafka::client_config().set("enable.idempotence", "true").set("linger.ms", "5").create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment.add_partition_offset(input, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let (mut copied, mut ended) = (0u64, 0);
    while copied < records || ended < PARTITIONS {
        ensure!(started.elapsed() < Duration::from_secs(600), "plain copy: {copied} after 10 min");
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
            }
            Some(Err(KafkaError::PartitionEOF(_))) => ended += 1,
            Some(Err(e)) => bail!("plain copy: consuming: {e}"),
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(started.elapsed())
}
