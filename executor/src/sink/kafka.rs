//! The Kafka sink for at-least-once and at-most-once: records go to the output topic through the
//! executor's shared idempotent producer, keys, headers and timestamps kept; the task's output is
//! flushed and every record acknowledged before the task is reported done. (Exactly-once uses
//! `transactional.rs`.)

use std::sync::Arc;

use weir_common::config::Partitioning;
use weir_common::protocol::TaskId;
use weir_common::{OffsetRange, Record};

use super::dead_letters::no_dead_letter_topic;
use super::{Begun, Sink, TaskOutput, record_bytes};
use crate::error::TaskError;
use crate::kafka::producer::{Deliveries, SharedProducer};

pub struct KafkaSink {
    producer: SharedProducer,
    topic: String,
    partitioning: Partitioning,
}

impl KafkaSink {
    pub fn new(producer: SharedProducer, topic: String, partitioning: Partitioning) -> Self {
        KafkaSink { producer, topic, partitioning }
    }
}

impl Sink for KafkaSink {
    fn begin(&self, _task: TaskId, _ranges: &[OffsetRange]) -> Result<Begun<'_>, TaskError> {
        let deliveries = Arc::new(Deliveries::default());
        Ok(Begun::Write(Box::new(KafkaOutput { sink: self, deliveries })))
    }
}

struct KafkaOutput<'a> {
    sink: &'a KafkaSink,
    deliveries: Arc<Deliveries>,
}

impl TaskOutput for KafkaOutput<'_> {
    fn write(&mut self, record: &Record<'_>) -> Result<u64, TaskError> {
        let partition = match self.sink.partitioning {
            Partitioning::Key => None,
            Partitioning::SameAsInput => Some(record.partition),
        };
        self.sink.producer.send(&self.deliveries, &self.sink.topic, partition, record, None)?;
        Ok(record_bytes(record))
    }

    fn write_dead_letter(&mut self, record: &Record<'_>, _reason: &str) -> Result<(), TaskError> {
        Err(no_dead_letter_topic(record))
    }

    fn finish(self: Box<Self>) -> Result<(), TaskError> {
        self.sink.producer.flush(&self.deliveries)
    }
}
