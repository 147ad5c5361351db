//! The driver's errors, each knowing whether waiting and trying again can help.

use weir_common::ProtoError;
use weir_common::retry::Retryable;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("etcd at {endpoints}: {source}")]
    Etcd { endpoints: String, source: etcd_client::Error },
    #[error("Kafka at {brokers}: {message}")]
    Kafka { brokers: String, message: String },
    #[error("etcd key {key}: {source}")]
    Corrupt { key: String, source: ProtoError },
    #[error("this driver is no longer the leader of job {job} (another driver took over)")]
    LostLeadership { job: String },
    #[error("cannot listen on {what} {addr}: {source}")]
    Listen { what: &'static str, addr: std::net::SocketAddr, source: std::io::Error },
    #[error("etcd key {key} holds {value:?}, not a number")]
    NotANumber { key: String, value: String },
    #[error("the election lease expired while waiting to lead; campaigning again with a new one")]
    LeaseExpired,
    /// Records the job has not read are gone from Kafka, and `source.on_data_loss = "fail"`.
    #[error("data loss: {0}")]
    DataLoss(String),
    /// The job's config cannot work on this cluster (found at start, against the broker).
    #[error("{0}")]
    Unfit(String),
    #[error("{0}")]
    Internal(String),
    #[error("job stopped: {0}")]
    JobFailed(#[from] crate::scheduler::JobFailure),
}

impl Retryable for DriverError {
    fn is_retryable(&self) -> bool {
        matches!(
            self,
            DriverError::Etcd { .. } | DriverError::Kafka { .. } | DriverError::LeaseExpired
        )
    }
}
