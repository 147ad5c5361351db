//! A Kafka cluster that refuses a client, told apart from one that does not answer. librdkafka
//! retries a failed SASL authentication or a TLS certificate it cannot verify for ever, and the
//! calls waiting on the connection end as timeouts or "broker transport failure", as in an
//! outage; the reason comes only as an error event on the client's queue. A client made with a
//! [`RefusalWatch`] as its context keeps that reason: after a call fails transiently, its owner
//! serves the queue ([`drain`]) and a refusal found there is a config failure (a wrong password,
//! an unknown user or mechanism, a CA that does not sign the broker's certificate), which
//! waiting cannot mend, instead of an outage waited out for ever.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::error;

/// A client context that remembers the last refusal librdkafka reported.
#[derive(Debug, Default)]
pub struct RefusalWatch {
    refusal: Mutex<Option<String>>,
}

impl RefusalWatch {
    /// The last refusal since the last [`clear`](Self::clear), as librdkafka worded it.
    pub fn refusal(&self) -> Option<String> {
        self.refusal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forgets the refusals seen so far (after a call that succeeded: the cluster takes this
    /// client now).
    pub fn clear(&self) {
        *self.refusal.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl ClientContext for RefusalWatch {
    fn error(&self, error: KafkaError, reason: &str) {
        if is_refusal(&error, reason) {
            *self.refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_owned());
        }
        // As rdkafka's default context does.
        error!(error = %error, reason, "librdkafka reported an error");
    }
}

impl ConsumerContext for RefusalWatch {}

/// Whether librdkafka's error event means the cluster refuses this client's credentials or
/// cannot be trusted by it. A TLS handshake that fails for another reason (the broker went away
/// mid-handshake) is not one.
pub fn is_refusal(error: &KafkaError, reason: &str) -> bool {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => true,
        Some(RDKafkaErrorCode::UnsupportedSASLMechanism) => true,
        Some(RDKafkaErrorCode::SSL) => {
            reason.contains("certificate verify failed") || reason.contains("could not be verified")
        }
        _ => false,
    }
}

/// How long [`drain`] serves the queue: librdkafka's `poll` cannot say whether it served an event
/// or found none, so the queue is served for this long.
const DRAIN_TIME: Duration = Duration::from_millis(50);

/// Serves the events queued on `consumer` for [`DRAIN_TIME`] (its logs and errors reach the
/// context), then returns the refusal seen, if any. For after a failed call.
pub fn drain(consumer: &BaseConsumer<RefusalWatch>) -> Option<String> {
    let until = Instant::now() + DRAIN_TIME;
    // `poll` serves logs until its timeout; it returns early only with an error or a message.
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        if left.is_zero() || consumer.poll(left).is_none() {
            break;
        }
    }
    consumer.context().refusal()
}

/// After a call that succeeded: serves a few queued events without waiting and forgets any
/// refusal seen so far (the cluster takes this client now).
pub fn settle(consumer: &BaseConsumer<RefusalWatch>) {
    for _ in 0..SETTLE_POLLS {
        consumer.poll(Duration::ZERO);
    }
    consumer.context().clear();
}

/// Events [`settle`] serves at most.
const SETTLE_POLLS: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_authentication_is_a_refusal() {
        let sasl = KafkaError::Global(RDKafkaErrorCode::Authentication);
        let reason = "sasl_ssl://127.0.0.1:9095/bootstrap: SASL authentication error: \
            Authentication failed during authentication due to invalid credentials with SASL \
            mechanism SCRAM-SHA-512";
        assert!(is_refusal(&sasl, reason));
        let watch = RefusalWatch::default();
        watch.error(sasl, reason);
        assert_eq!(watch.refusal().as_deref(), Some(reason));
        watch.clear();
        assert_eq!(watch.refusal(), None);
    }

    #[test]
    fn a_certificate_not_verified_is_a_refusal_a_broken_handshake_is_not() {
        let ssl = KafkaError::Global(RDKafkaErrorCode::SSL);
        let unverified = "ssl://127.0.0.1:9094/bootstrap: SSL handshake failed: \
            error:0A000086:SSL routines::certificate verify failed: broker certificate could not \
            be verified, verify that ssl.ca.location is correctly configured";
        assert!(is_refusal(&ssl, unverified));
        assert!(!is_refusal(
            &ssl,
            "ssl://127.0.0.1:9094/bootstrap: SSL handshake failed: Disconnected"
        ));
    }

    #[test]
    fn an_unreachable_broker_is_not_a_refusal() {
        let watch = RefusalWatch::default();
        for code in [RDKafkaErrorCode::AllBrokersDown, RDKafkaErrorCode::BrokerTransportFailure] {
            let down = KafkaError::Global(code);
            assert!(!is_refusal(&down, "1/1 brokers are down"));
            watch.error(down, "1/1 brokers are down");
        }
        assert_eq!(watch.refusal(), None);
    }
}
