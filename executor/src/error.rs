//! The executor's errors. A task error says whether running the task again can succeed; the
//! driver retries the retryable ones and stops the job on the others.

use weir_common::retry::Retryable;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    pub retryable: bool,
    pub message: String,
}

impl TaskError {
    /// Worth another attempt: a broker hiccup, a timeout.
    pub fn retryable(message: impl Into<String>) -> Self {
        TaskError { retryable: true, message: message.into() }
    }
    /// Running again cannot help: bad data, bad config, missing offsets.
    pub fn fatal(message: impl Into<String>) -> Self {
        TaskError { retryable: false, message: message.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("etcd at {endpoints}: {source}")]
    Etcd { endpoints: String, source: etcd_client::Error },
    #[error("no driver leads job {job} yet (etcd key {key} is empty)")]
    NoLeader { job: String, key: String },
}

impl Retryable for ExecutorError {
    fn is_retryable(&self) -> bool {
        true
    }
}
