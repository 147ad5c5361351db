//! The Kafka sink for at-least-once and at-most-once: records go to the output topic through the
//! executor's shared idempotent producer, keys, headers and timestamps kept; the task's output is
//! flushed and every record acknowledged before the task is reported done. (Exactly-once uses
//! `transactional.rs`; both get only records the topic takes: `task.rs` asks `admission.rs`.)

use std::sync::Arc;

use weir_common::config::Partitioning;
use weir_common::protocol::TaskId;
use weir_common::{OffsetRange, Record};

use super::dead_letters::no_dead_letter_topic;
use super::{Begun, Sink, TaskOutput, record_bytes};
use crate::error::TaskError;
use crate::kafka::producer::{Deliveries, LazyProducer, SharedProducer};

pub struct KafkaSink {
    producer: Arc<LazyProducer>,
    topic: String,
    partitioning: Partitioning,
}

impl KafkaSink {
    pub fn new(producer: Arc<LazyProducer>, topic: String, partitioning: Partitioning) -> Self {
        KafkaSink { producer, topic, partitioning }
    }
}

impl Sink for KafkaSink {
    fn begin(&self, _task: TaskId, ranges: &[OffsetRange]) -> Result<Begun<'_>, TaskError> {
        let producer = self.producer.get()?;
        let deliveries = Deliveries::for_ranges(ranges);
        Ok(Begun::Write(Box::new(KafkaOutput { sink: self, producer, deliveries })))
    }
}

struct KafkaOutput<'a> {
    sink: &'a KafkaSink,
    producer: SharedProducer,
    deliveries: Arc<Deliveries>,
}

impl TaskOutput for KafkaOutput<'_> {
    fn write(&mut self, record: &Record<'_>) -> Result<u64, TaskError> {
        let partition = match self.sink.partitioning {
            Partitioning::Key => None,
            Partitioning::SameAsInput => Some(record.partition),
        };
        self.producer.send(&self.deliveries, &self.sink.topic, partition, record, &[])?;
        Ok(record_bytes(record))
    }

    fn write_dead_letter(&mut self, record: &Record<'_>, _reason: &str) -> Result<(), TaskError> {
        Err(no_dead_letter_topic(record))
    }

    fn finish(self: Box<Self>) -> Result<(), TaskError> {
        self.producer.flush(&self.deliveries)
    }
}
