//! The driver's errors, each knowing whether waiting and trying again can help.

use std::fmt::Display;

use rdkafka::error::KafkaError;
use weir_common::ProtoError;
use weir_common::etcd;
use weir_common::failure::{FailureKind, kafka_error_text, kafka_failure};
use weir_common::retry::Retryable;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("etcd at {endpoints}: {source}")]
    Etcd { endpoints: String, source: etcd_client::Error },
    /// etcd refuses the write for its size or for its own space: waiting cannot help.
    #[error(
        "etcd at {endpoints} refused a write: {source}; etcd's limits are --max-request-bytes \
         (a request) and --quota-backend-bytes (the database; compact and defragment it, or run etcd \
         with --auto-compaction-retention, see docs/architecture.md#etcd-layout)"
    )]
    EtcdLimit { endpoints: String, source: etcd_client::Error },
    /// etcd refused this driver's credentials or its permissions: waiting cannot help.
    #[error(
        "etcd at {endpoints}: {refusal} ({}); {}",
        etcd::message(source),
        refusal.hint()
    )]
    EtcdRefused { endpoints: String, refusal: etcd::Refusal, source: etcd_client::Error },
    /// A Kafka request failed; `kind` (from the one classification, `weir_common::failure`)
    /// says whether waiting can help: a broker away is transient, a refused property is not.
    #[error("Kafka at {brokers}: {message} ({kind})")]
    Kafka { brokers: String, message: String, kind: FailureKind },
    #[error("etcd key {key}: {source}")]
    Corrupt { key: String, source: ProtoError },
    #[error(
        "this driver lost the leadership of job {job}: its lease ran out while etcd did not answer, or another driver took over"
    )]
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
    /// Kafka did not answer for longer than `driver.outage_limit`.
    #[error(
        "job stopped: Kafka did not answer for {} (driver.outage_limit); the last error: {error}",
        weir_common::config::duration::format(*limit)
    )]
    OutageLimit { limit: std::time::Duration, error: Box<DriverError> },
    #[error("job stopped: {0}")]
    JobFailed(#[from] crate::scheduler::JobFailure),
}

impl DriverError {
    /// An etcd error, told apart by whether waiting can help: a request too large, a full
    /// database, refused credentials or permissions cannot be waited out. `endpoints` says
    /// where and as whom ([`etcd::EtcdAccess::describe`]).
    pub fn etcd(endpoints: &str, source: etcd_client::Error) -> Self {
        let text = source.to_string();
        let endpoints = endpoints.to_owned();
        if let Some(refusal) = etcd::refusal(&source) {
            DriverError::EtcdRefused { endpoints, refusal, source }
        } else if text.contains("request is too large") || text.contains("database space exceeded")
        {
            DriverError::EtcdLimit { endpoints, source }
        } else {
            DriverError::Etcd { endpoints, source }
        }
    }

    /// A Kafka error met while doing `context`, classified.
    pub fn kafka(brokers: &str, context: impl Display, error: &KafkaError) -> Self {
        DriverError::Kafka {
            brokers: brokers.to_owned(),
            message: format!("{context}: {}", kafka_error_text(error)),
            kind: kafka_failure(error),
        }
    }

    /// A Kafka answer that is not an error of the client but means waiting may help (a topic
    /// not created yet, a broker without its config yet).
    pub fn kafka_transient(brokers: &str, message: impl Into<String>) -> Self {
        DriverError::Kafka {
            brokers: brokers.to_owned(),
            message: message.into(),
            kind: FailureKind::Transient,
        }
    }
}

impl Retryable for DriverError {
    fn is_retryable(&self) -> bool {
        match self {
            DriverError::Etcd { .. } | DriverError::LeaseExpired => true,
            DriverError::Kafka { kind, .. } => kind.is_retryable(),
            _ => false,
        }
    }
}

/// Why the driver refuses an executor's stream or one of its messages. The one mapping from the
/// driver's errors to gRPC `Status` is below; `service.rs` returns these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachRefused {
    #[error("the first message must be a hello")]
    NoHello,
    #[error("no hello within {0:?} of connecting")]
    HelloLate(std::time::Duration),
    #[error("hello sent twice")]
    HelloTwice,
    #[error("hello without an executor id")]
    NoExecutorId,
    #[error("message without a task id")]
    NoTaskId,
    #[error(
        "executor speaks protocol {executor}, this driver speaks {driver}; run the same Weir release on both"
    )]
    ProtocolMismatch { executor: u32, driver: u32 },
    #[error("this driver (generation {this}) was replaced by generation {newer}")]
    Replaced { this: u64, newer: u64 },
    #[error("the driver is stopping")]
    Stopping,
    #[error("the job has {limit} executors attached, the most one job takes")]
    TooMany { limit: usize },
    #[error(
        "executor id {executor} is already attached from another running process (at {address}); give each executor its own --id"
    )]
    DuplicateId { executor: String, address: String, executor_timeout_ms: u64 },
}

/// The gRPC metadata key that carries the driver's `executor_timeout` with a duplicate-id
/// refusal: an executor refused for longer than that is a true duplicate, not the restart of a
/// process the driver has not yet noticed is gone.
pub const EXECUTOR_TIMEOUT_HEADER: &str = "weir-executor-timeout-ms";

impl From<AttachRefused> for tonic::Status {
    fn from(refused: AttachRefused) -> Self {
        let message = refused.to_string();
        match refused {
            AttachRefused::HelloLate(_) => tonic::Status::deadline_exceeded(message),
            AttachRefused::NoHello
            | AttachRefused::HelloTwice
            | AttachRefused::NoExecutorId
            | AttachRefused::NoTaskId => tonic::Status::invalid_argument(message),
            AttachRefused::ProtocolMismatch { .. } | AttachRefused::Replaced { .. } => {
                tonic::Status::failed_precondition(message)
            }
            AttachRefused::Stopping => tonic::Status::unavailable(message),
            AttachRefused::TooMany { .. } => tonic::Status::resource_exhausted(message),
            AttachRefused::DuplicateId { executor_timeout_ms, .. } => {
                let mut status = tonic::Status::already_exists(message);
                if let Ok(value) = executor_timeout_ms.to_string().parse() {
                    status.metadata_mut().insert(EXECUTOR_TIMEOUT_HEADER, value);
                }
                status
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_etcd_write_over_its_limits_is_not_waited_for() {
        let too_large = tonic::Status::invalid_argument("etcdserver: request is too large");
        let e = DriverError::etcd("http://e:2379", etcd_client::Error::GRpcStatus(too_large));
        assert!(!e.is_retryable(), "{e}");
        assert!(e.to_string().contains("--max-request-bytes"), "{e}");
        let away = etcd_client::Error::InvalidArgs("connection refused".into());
        assert!(DriverError::etcd("http://e:2379", away).is_retryable());
    }

    #[test]
    fn refused_credentials_stop_the_driver_naming_the_user_and_the_endpoint() {
        let wrong = tonic::Status::invalid_argument(
            "etcdserver: authentication failed, invalid user ID or password",
        );
        let e = DriverError::etcd(
            "https://e:2379 as user weir-driver",
            etcd_client::Error::GRpcStatus(wrong),
        );
        assert!(!e.is_retryable(), "{e}");
        assert_eq!(
            e.to_string(),
            "etcd at https://e:2379 as user weir-driver: authentication failed (etcdserver: \
             authentication failed, invalid user ID or password); check the user and its \
             password (docs/security.md#etcd)"
        );
        let denied = tonic::Status::permission_denied("etcdserver: permission denied");
        let e = DriverError::etcd("https://e:2379", etcd_client::Error::GRpcStatus(denied));
        assert!(matches!(e, DriverError::EtcdRefused { .. }) && !e.is_retryable(), "{e}");
        let expired = tonic::Status::unauthenticated("etcdserver: invalid auth token");
        let e = DriverError::etcd("https://e:2379", etcd_client::Error::GRpcStatus(expired));
        assert!(e.is_retryable(), "the client renews its token: {e}");
    }
}
