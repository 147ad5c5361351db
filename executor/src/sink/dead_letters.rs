//! Dead letters for the sinks that are not transactional: rejected records, unchanged, with the
//! reason in the `weir.error` header, through the executor's shared idempotent producer. Wraps a
//! sink's task output so the task writes both through one [`TaskOutput`]. (The transactional sink
//! writes its dead letters inside the task's transaction instead.)

use std::sync::Arc;

use weir_common::Record;

use super::TaskOutput;
use crate::error::TaskError;
use crate::kafka::producer::{Deliveries, SharedProducer};

/// The header that carries a dead letter's reason.
pub const ERROR_HEADER: &str = "weir.error";

pub struct DeadLetters {
    producer: SharedProducer,
    topic: String,
}

impl DeadLetters {
    pub fn new(producer: SharedProducer, topic: String) -> Self {
        DeadLetters { producer, topic }
    }

    /// `output` plus this task's dead letters.
    pub fn wrap<'a>(&'a self, output: Box<dyn TaskOutput + 'a>) -> Box<dyn TaskOutput + 'a> {
        Box::new(WithDeadLetters {
            output,
            dead_letters: self,
            deliveries: Arc::new(Deliveries::default()),
            written: 0,
        })
    }
}

struct WithDeadLetters<'a> {
    output: Box<dyn TaskOutput + 'a>,
    dead_letters: &'a DeadLetters,
    deliveries: Arc<Deliveries>,
    written: u64,
}

impl TaskOutput for WithDeadLetters<'_> {
    fn write(&mut self, record: &Record<'_>) -> Result<u64, TaskError> {
        self.output.write(record)
    }

    fn write_dead_letter(&mut self, record: &Record<'_>, reason: &str) -> Result<(), TaskError> {
        self.written += 1;
        let header = (ERROR_HEADER, reason.as_bytes());
        let topic = &self.dead_letters.topic;
        self.dead_letters.producer.send(&self.deliveries, topic, None, record, Some(header))
    }

    fn finish(self: Box<Self>) -> Result<(), TaskError> {
        self.output.finish()?;
        if self.written > 0 {
            self.dead_letters.producer.flush(&self.deliveries)?;
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
