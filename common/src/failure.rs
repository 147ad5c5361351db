//! Why an operation failed, as the caller needs to know it: whether waiting and running it
//! again can succeed, and if not, what an operator must fix. A task's failure carries its kind
//! to the driver on the wire (`weir.v1.FailureKind`); the driver retries only transient ones.
//!
//! The one classification of Kafka errors lives here too (`kafka_failure`), so the driver and
//! the executors decide the same way about the same broker answer.

use std::fmt;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// A service was unavailable, slow or busy (a broker or coordinator down or moving, a
    /// timeout, a full queue, a fenced producer replaced by a new one): running again can succeed.
    Transient,
    /// The job's configuration cannot work against this cluster (a bad property, missing
    /// authorisation, an unsupported feature): retrying cannot help; an operator must act.
    Config,
    /// The data cannot be processed as configured (a record rejected under
    /// `on_record_error = "fail"`, a record too large for the broker, offsets no longer in Kafka
    /// under `on_data_loss = "fail"`): retrying cannot help.
    Data,
    /// A transient failure met while the Kafka cluster the task needs did not answer at all (the
    /// executor asked it for metadata right after, and got nothing). It is waited out: retried
    /// without using up `driver.max_task_attempts`, bounded only by `driver.outage_limit`.
    Unavailable,
}

impl FailureKind {
    pub fn is_retryable(self) -> bool {
        matches!(self, FailureKind::Transient | FailureKind::Unavailable)
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Transient => "transient",
            FailureKind::Config => "config",
            FailureKind::Data => "data",
            FailureKind::Unavailable => "unavailable",
        })
    }
}

/// What a Kafka error means for the operation that met it. Codes not named here count as
/// transient: a task is then retried up to `driver.max_task_attempts`, and the job stops after,
/// so an unknown permanent error still ends in a stop that names it.
pub fn kafka_failure(error: &KafkaError) -> FailureKind {
    if let KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..) = error {
        return FailureKind::Config;
    }
    error.rdkafka_error_code().map_or(FailureKind::Transient, code_failure)
}

/// `error` as text for an error message or a log: a property librdkafka refused is named, its
/// value is not (it may be a password, which librdkafka's own text would repeat).
pub fn kafka_error_text(error: &KafkaError) -> String {
    match error {
        KafkaError::ClientConfig(_, description, key, _) => {
            format!("Client config error: {description} (property {key})")
        }
        other => other.to_string(),
    }
}

/// The same for a bare error code (metadata answers carry codes, not errors).
pub fn code_failure(code: RDKafkaErrorCode) -> FailureKind {
    use RDKafkaErrorCode as C;
    match code {
        C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed
        | C::DelegationTokenAuthorizationFailed
        | C::SaslAuthenticationFailed
        | C::Authentication
        | C::UnsupportedSASLMechanism
        | C::UnsupportedVersion
        | C::UnsupportedFeature
        | C::UnsupportedCompressionType
        | C::UnsupportedForMessageFormat
        | C::InvalidConfig
        | C::InvalidArgument
        | C::InvalidRequiredAcks
        | C::InvalidTransactionTimeout
        | C::InvalidReplicationFactor
        | C::PolicyViolation => FailureKind::Config,
        C::MessageSizeTooLarge
        | C::MessageBatchTooLarge
        | C::InvalidMessageSize
        | C::InvalidMessage
        | C::InvalidRecord
        | C::OffsetMetadataTooLarge => FailureKind::Data,
        _ => FailureKind::Transient,
    }
}

/// The message a panic carried (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use rdkafka::types::RDKafkaConfRes;

    use super::*;

    #[test]
    fn an_unreachable_or_busy_cluster_is_transient() {
        for code in [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerNotAvailable,
            RDKafkaErrorCode::CoordinatorNotAvailable,
            RDKafkaErrorCode::NotCoordinator,
            RDKafkaErrorCode::LeaderNotAvailable,
            RDKafkaErrorCode::RequestTimedOut,
            RDKafkaErrorCode::OperationTimedOut,
            RDKafkaErrorCode::QueueFull,
            RDKafkaErrorCode::NotEnoughReplicas,
        ] {
            assert_eq!(code_failure(code), FailureKind::Transient, "{code:?}");
            assert!(code_failure(code).is_retryable());
        }
        let timeout = KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut);
        assert_eq!(kafka_failure(&timeout), FailureKind::Transient);
    }

    #[test]
    fn a_bad_property_or_missing_permission_is_config() {
        let bad_property = KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN,
            "No such configuration property: \"bootstrap.srvers\"".into(),
            "bootstrap.srvers".into(),
            "x".into(),
        );
        assert_eq!(kafka_failure(&bad_property), FailureKind::Config);
        let denied = KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert_eq!(kafka_failure(&denied), FailureKind::Config);
        assert!(!kafka_failure(&denied).is_retryable());
        let sasl = KafkaError::Global(RDKafkaErrorCode::SaslAuthenticationFailed);
        assert_eq!(kafka_failure(&sasl), FailureKind::Config);
    }

    #[test]
    fn a_refused_property_is_named_without_its_value() {
        let refused = KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Configuration property \"sasl.oauthbearer.client.secret\" not supported in this build"
                .into(),
            "sasl.oauthbearer.client.secret".into(),
            "s3cr3t".into(),
        );
        let text = kafka_error_text(&refused);
        assert!(text.contains("sasl.oauthbearer.client.secret"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(refused.to_string().contains("s3cr3t"), "rdkafka's own text shows the value");
    }

    #[test]
    fn a_record_the_broker_cannot_take_is_data() {
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert_eq!(kafka_failure(&too_large), FailureKind::Data);
        assert!(!kafka_failure(&too_large).is_retryable());
    }
}
