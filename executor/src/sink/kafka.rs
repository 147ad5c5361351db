//! The Kafka sink (at-least-once): records go to the output topic through the executor's shared
//! idempotent producer, keys, headers and timestamps kept; the task's output is flushed and every
//! record acknowledged before the task is reported done. Also writes dead letters.

use std::sync::Arc;

use weir_common::config::Partitioning;
use weir_common::protocol::TaskId;
use weir_common::{OffsetRange, Record};

use super::{Sink, TaskOutput, record_bytes};
use crate::error::TaskError;
use crate::kafka::producer::{Deliveries, SharedProducer};

/// The header that carries a dead letter's reason.
pub const ERROR_HEADER: &str = "weir.error";

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
    fn begin(
        &self,
        _task: TaskId,
        _ranges: &[OffsetRange],
    ) -> Result<Box<dyn TaskOutput + '_>, TaskError> {
        Ok(Box::new(KafkaOutput { sink: self, deliveries: Arc::new(Deliveries::default()) }))
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

    fn finish(self: Box<Self>) -> Result<(), TaskError> {
        self.sink.producer.flush(&self.deliveries)
    }
}

/// Rejected records, unchanged, with the reason in the `weir.error` header.
pub struct DeadLetters {
    producer: SharedProducer,
    topic: String,
}

impl DeadLetters {
    pub fn new(producer: SharedProducer, topic: String) -> Self {
        DeadLetters { producer, topic }
    }

    pub fn begin(&self) -> DeadLetterOutput<'_> {
        DeadLetterOutput { sink: self, deliveries: Arc::new(Deliveries::default()), written: 0 }
    }
}

pub struct DeadLetterOutput<'a> {
    sink: &'a DeadLetters,
    deliveries: Arc<Deliveries>,
    written: u64,
}

impl DeadLetterOutput<'_> {
    pub fn write(&mut self, record: &Record<'_>, reason: &str) -> Result<(), TaskError> {
        self.written += 1;
        let header = (ERROR_HEADER, reason.as_bytes());
        self.sink.producer.send(&self.deliveries, &self.sink.topic, None, record, Some(header))
    }

    pub fn finish(self) -> Result<(), TaskError> {
        if self.written == 0 {
            return Ok(());
        }
        self.sink.producer.flush(&self.deliveries)
    }
}
