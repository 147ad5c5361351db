//! Is the Kafka cluster answering at all? Asked after a task fails transiently, to tell an outage
//! from the task's own failure: the driver waits an outage out (`FailureKind::Unavailable`)
//! without counting the attempt, while the task's own failures use up `max_task_attempts`.
//!
//! The question is a metadata request from a fresh client, so no connection state of the task's
//! clients can answer it from a cache.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tracing::warn;
use weir_common::config::{JobConfig, SinkKind};
use weir_common::failure::FailureKind;

use super::client_config;
use crate::error::TaskError;

/// How long a cluster has to answer the metadata request.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// `error` as the driver should see it: `Unavailable` when it is transient and a Kafka cluster
/// the job uses (the source's, and the sink's when it is Kafka elsewhere) does not answer.
/// Blocking: up to `PROBE_TIMEOUT` per cluster.
pub fn classify(error: TaskError, config: &JobConfig) -> TaskError {
    if error.kind != FailureKind::Transient {
        return error;
    }
    let source = &config.source;
    let mut clusters = vec![client_config(&source.brokers, &source.kafka)];
    let sink_brokers = config.sink.brokers(source);
    if config.sink.kind == SinkKind::Kafka && sink_brokers != source.brokers {
        clusters.push(client_config(sink_brokers, &config.sink.kafka));
    }
    for cluster in clusters {
        let brokers = cluster.get("bootstrap.servers").unwrap_or_default().to_owned();
        if !answers(&cluster) {
            warn!(brokers, error = %error, "Task failed while Kafka does not answer: an outage, waited out");
            let message = format!(
                "{} (Kafka at {brokers} did not answer within {PROBE_TIMEOUT:?})",
                error.message
            );
            return TaskError { kind: FailureKind::Unavailable, message };
        }
    }
    error
}

fn answers(config: &rdkafka::ClientConfig) -> bool {
    // A client that cannot even be built is a config problem, not an outage.
    let Ok(client) = config.create::<BaseConsumer>() else { return true };
    client.fetch_metadata(None, PROBE_TIMEOUT).is_ok()
}
