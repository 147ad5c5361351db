//! The executor's errors. A task error says whether running the task again can succeed; the
//! driver retries the retryable ones and stops the job on the others.

use weir_common::retry::Retryable;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    pub retryable: bool,
    /// Another executor took over the task's lane (its transactional producer was fenced): this
    /// executor's view of its lanes is stale, so it re-attaches.
    pub fenced: bool,
    pub message: String,
}

impl TaskError {
    /// Worth another attempt: a broker hiccup, a timeout.
    pub fn retryable(message: impl Into<String>) -> Self {
        TaskError { retryable: true, fenced: false, message: message.into() }
    }
    /// The lane moved to another executor while this one ran its task.
    pub fn fenced(message: impl Into<String>) -> Self {
        TaskError { retryable: true, fenced: true, message: message.into() }
    }
    /// Running again cannot help: bad data, bad config, missing offsets.
    pub fn fatal(message: impl Into<String>) -> Self {
        TaskError { retryable: false, fenced: false, message: message.into() }
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
