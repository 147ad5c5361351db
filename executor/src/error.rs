//! The executor's errors. A task error carries its `FailureKind`, which travels to the driver:
//! the driver runs transient failures again and stops the job on the others.

use std::fmt::Display;

use rdkafka::error::KafkaError;
use weir_common::etcd;
use weir_common::failure::{FailureKind, kafka_error_text, kafka_failure};
use weir_common::retry::Retryable;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    pub kind: FailureKind,
    pub message: String,
}

impl TaskError {
    /// Worth another attempt: a broker hiccup, a timeout, a file system that refused a write.
    pub fn transient(message: impl Into<String>) -> Self {
        TaskError { kind: FailureKind::Transient, message: message.into() }
    }
    /// The job's configuration cannot work here: an operator must change it.
    pub fn config(message: impl Into<String>) -> Self {
        TaskError { kind: FailureKind::Config, message: message.into() }
    }
    /// The data cannot be processed as configured: a rejected record, offsets gone.
    pub fn data(message: impl Into<String>) -> Self {
        TaskError { kind: FailureKind::Data, message: message.into() }
    }
    /// A Kafka error, classified once for the whole project (`weir_common::failure`).
    pub fn kafka(context: impl Display, error: &KafkaError) -> Self {
        let message = format!("{context}: {}", kafka_error_text(error));
        TaskError { kind: kafka_failure(error), message }
    }
}

impl Retryable for TaskError {
    fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("etcd at {endpoints}: {source}")]
    Etcd { endpoints: String, source: etcd_client::Error },
    /// etcd refused this executor's credentials, or its role cannot read the leader key: no
    /// wait mends that, so the executor stops.
    #[error(
        "etcd at {endpoints}: {refusal} ({}); {}",
        etcd::message(source),
        refusal.hint()
    )]
    EtcdRefused { endpoints: String, refusal: etcd::Refusal, source: etcd_client::Error },
    #[error("no driver leads job {job} yet (etcd key {key} is empty)")]
    NoLeader { job: String, key: String },
    /// Another running executor process has this one's id; the driver kept refusing it.
    #[error("{0}")]
    DuplicateId(String),
}

impl ExecutorError {
    /// An etcd error met at `endpoints` (where and as whom: [`etcd::EtcdAccess::describe`]):
    /// refused credentials or permissions apart from the rest, which waiting may mend.
    pub fn etcd(endpoints: String, source: etcd_client::Error) -> Self {
        match etcd::refusal(&source) {
            Some(refusal) => ExecutorError::EtcdRefused { endpoints, refusal, source },
            None => ExecutorError::Etcd { endpoints, source },
        }
    }
}

impl Retryable for ExecutorError {
    fn is_retryable(&self) -> bool {
        !matches!(self, ExecutorError::EtcdRefused { .. })
    }
}
