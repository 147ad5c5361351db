//! Is the Kafka cluster answering at all? Asked after a task fails transiently, to tell an outage
//! from the task's own failure: the driver waits an outage out (`FailureKind::Unavailable`)
//! without counting the attempt, while the task's own failures use up `max_task_attempts`.
//! A cluster that refuses the job's client (a wrong password, a CA that does not sign the
//! broker's certificate: `weir_common::kafka_refusal`) looks like one that does not answer to
//! the task's clients; the probe tells it apart, and the task fails as `Config`, which stops the
//! job naming the reason.
//!
//! The question is a metadata request from a fresh client, so no connection state of the task's
//! clients can answer it from a cache.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tracing::warn;
use weir_common::config::{JobConfig, SinkKind};
use weir_common::failure::FailureKind;
use weir_common::kafka_refusal::{self, RefusalWatch};

use super::client_config;
use crate::error::TaskError;

/// How long a cluster has to answer the metadata request.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// `error` as the driver should see it: `Unavailable` when it is transient and a Kafka cluster
/// the job uses (the source's, and the sink's when its brokers or its properties differ) does
/// not answer; `Config` when one refuses the job's client. Blocking: up to `PROBE_TIMEOUT` per
/// cluster.
pub fn classify(error: TaskError, config: &JobConfig) -> TaskError {
    if error.kind != FailureKind::Transient {
        return error;
    }
    let source = &config.source;
    let mut clusters = vec![client_config(&source.brokers, &source.kafka)];
    // A Kafka sink's producers use `[sink.kafka]`: other credentials, maybe, even on the
    // source's cluster. (Dead letters of other sinks go to the source's, as its readers do.)
    let sink_brokers = config.sink.brokers(source);
    if config.sink.kind == SinkKind::Kafka
        && (sink_brokers != source.brokers || config.sink.kafka != source.kafka)
    {
        clusters.push(client_config(sink_brokers, &config.sink.kafka));
    }
    for cluster in clusters {
        let brokers = cluster.get("bootstrap.servers").unwrap_or_default().to_owned();
        match probe(&cluster) {
            Probe::Answers => {}
            Probe::Refuses(reason) => {
                warn!(brokers, reason, error = %error, "Task failed: Kafka refuses the job's client");
                let message = format!(
                    "{} (Kafka at {brokers} refuses the job's client: {reason})",
                    error.message
                );
                return TaskError { kind: FailureKind::Config, message };
            }
            Probe::Silent => {
                warn!(brokers, error = %error, "Task failed while Kafka does not answer: an outage, waited out");
                let message = format!(
                    "{} (Kafka at {brokers} did not answer within {PROBE_TIMEOUT:?})",
                    error.message
                );
                return TaskError { kind: FailureKind::Unavailable, message };
            }
        }
    }
    error
}

enum Probe {
    Answers,
    Silent,
    Refuses(String),
}

fn probe(config: &rdkafka::ClientConfig) -> Probe {
    // A client that cannot even be built is a config problem, not an outage: the task's own
    // error says so.
    let Ok(client) =
        config.create_with_context::<_, BaseConsumer<RefusalWatch>>(RefusalWatch::default())
    else {
        return Probe::Answers;
    };
    let answered = client.fetch_metadata(None, PROBE_TIMEOUT).is_ok();
    match (answered, kafka_refusal::drain(&client)) {
        (true, _) => Probe::Answers,
        (false, Some(reason)) => Probe::Refuses(reason),
        (false, None) => Probe::Silent,
    }
}
