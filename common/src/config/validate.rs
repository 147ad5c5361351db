//! The start-up checks on a deserialized config: bounds on single values and the rules between
//! keys. The first broken rule is reported; a config that passes can be run as written.

use std::collections::BTreeSet;
use std::time::Duration;

use super::model::{MAX_LANES, anchored};
use super::{
    CheckpointConfig, ConfigError, DriverSection, Guarantee, JobConfig, SinkConfig, SinkKind,
    SourceConfig, StartingOffsets, duration, secrets,
};
use crate::transform::{OnRecordError, StepConfig, TransformConfig};

const MIN_BATCH_INTERVAL: Duration = Duration::from_millis(10);
const MAX_BATCH_INTERVAL: Duration = Duration::from_secs(3600);
/// librdkafka refuses a `transaction.timeout.ms` below 1000.
const MIN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(1);

pub(super) fn validate(config: &JobConfig) -> Result<(), ConfigError> {
    let job = &config.job;
    let name_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if job.name.is_empty() || !job.name.chars().all(name_ok) {
        return Err(invalid(
            "job.name",
            quoted(&job.name),
            "1 or more of A-Z a-z 0-9 . _ - (the name namespaces etcd keys and the Kafka group)",
        ));
    }
    if job.batch_interval < MIN_BATCH_INTERVAL || job.batch_interval > MAX_BATCH_INTERVAL {
        return Err(invalid(
            "job.batch_interval",
            quoted(&duration::format(job.batch_interval)),
            "between \"10ms\" and \"1h\"",
        ));
    }
    source(&config.source)?;
    sink(&config.sink, &config.source, job.batch_interval)?;
    transform(&config.transform, &config.sink, &config.source)?;
    checkpoint(&config.checkpoint)?;
    driver(&config.driver)
}

fn source(source: &SourceConfig) -> Result<(), ConfigError> {
    check_brokers("source.brokers", &source.brokers)?;
    match (source.topics.is_empty(), &source.pattern) {
        (false, Some(_)) => return Err(rule("source", "give either topics or pattern, not both")),
        (true, None) => return Err(rule("source", "give topics or pattern")),
        (false, None) => {
            let mut seen = BTreeSet::new();
            for topic in &source.topics {
                if topic.is_empty() {
                    return Err(invalid("source.topics", quoted(topic), "non-empty topic names"));
                }
                if !seen.insert(topic) {
                    return Err(rule("source.topics", format!("{topic:?} is listed twice")));
                }
            }
        }
        (true, Some(pattern)) => {
            if pattern.is_empty() {
                return Err(invalid("source.pattern", quoted(pattern), "a regular expression"));
            }
            if let Err(error) = regex::Regex::new(pattern).and_then(|_| anchored(pattern)) {
                let expected = format!("a regular expression ({error})");
                return Err(invalid("source.pattern", quoted(pattern), expected));
            }
        }
    }
    let limits = [
        ("source.max_rate_per_partition", source.max_rate_per_partition),
        ("source.max_records_per_batch", source.max_records_per_batch),
        ("source.initial_rate_per_partition", source.initial_rate_per_partition),
    ];
    for (key, value) in limits {
        if value == Some(0) {
            return Err(invalid(key, "0".into(), "a number >= 1 (leave it out for no limit)"));
        }
    }
    if !(1..=MAX_LANES).contains(&source.lanes) {
        let expected = format!("a number from 1 to {MAX_LANES}");
        return Err(invalid("source.lanes", source.lanes.to_string(), expected));
    }
    if let (Some(initial), Some(max)) =
        (source.initial_rate_per_partition, source.max_rate_per_partition)
        && initial > max
    {
        return Err(rule(
            "source.initial_rate_per_partition",
            format!("{initial} is above source.max_rate_per_partition ({max})"),
        ));
    }
    match &source.starting_offsets {
        StartingOffsets::Earliest | StartingOffsets::Latest => {}
        StartingOffsets::Timestamp { timestamp_ms } if *timestamp_ms < 0 => {
            let key = "source.starting_offsets.timestamp_ms";
            return Err(invalid(key, timestamp_ms.to_string(), "milliseconds since 1970, >= 0"));
        }
        StartingOffsets::Timestamp { .. } => {}
        StartingOffsets::Offsets { offsets } => {
            for (topic, partitions) in offsets {
                let key = format!("source.starting_offsets.offsets.{topic}");
                if !source.reads(topic) {
                    let why = match source.pattern {
                        Some(_) => "does not match source.pattern",
                        None => "is not in source.topics",
                    };
                    return Err(rule(key, format!("{topic:?} {why}")));
                }
                for (partition, offset) in partitions {
                    let key = format!("{key}.{partition}");
                    if *partition < 0 {
                        return Err(invalid(key, partition.to_string(), "a partition number >= 0"));
                    }
                    if *offset < 0 {
                        return Err(invalid(key, offset.to_string(), "an offset >= 0"));
                    }
                }
            }
        }
    }
    Ok(())
}

fn sink(
    sink: &SinkConfig,
    source: &SourceConfig,
    batch_interval: Duration,
) -> Result<(), ConfigError> {
    let kind = sink.kind;
    let only = |key: &str, wanted: &str, what: &str| {
        rule(key, format!("only a {wanted} sink takes {what}"))
    };
    if kind != SinkKind::Kafka {
        if sink.topic.is_some() {
            return Err(only("sink.topic", "kafka", "a topic"));
        }
        if sink.brokers.is_some() {
            return Err(only("sink.brokers", "kafka", "brokers"));
        }
        if !sink.kafka.is_empty() {
            return Err(only("sink.kafka", "kafka", "producer properties"));
        }
    }
    if kind != SinkKind::File && sink.path.is_some() {
        return Err(only("sink.path", "file", "a path"));
    }
    match kind {
        SinkKind::Kafka => {
            if let Some(brokers) = &sink.brokers {
                check_brokers("sink.brokers", brokers)?;
            }
            let topic = sink.topic.as_deref().unwrap_or_default();
            if topic.is_empty() {
                return Err(rule("sink.topic", "a kafka sink needs a topic"));
            }
            if source.reads(topic) {
                let loops = "reading and writing one topic loops forever";
                return Err(rule(
                    "sink.topic",
                    format!("{topic:?} is also a source topic; {loops}"),
                ));
            }
        }
        SinkKind::File => {
            if sink.path.as_ref().is_none_or(|path| path.as_os_str().is_empty()) {
                return Err(rule("sink.path", "a file sink needs a path: the output directory"));
            }
        }
        SinkKind::Stdout => {}
    }
    if sink.guarantee == Guarantee::ExactlyOnce {
        exactly_once(sink, source, batch_interval)?;
    }
    Ok(())
}

/// What exactly-once needs from the sink: a transactional Kafka sink on the source's cluster
/// (the input offsets are committed in the same transaction as the output, and a transaction
/// spans one cluster), or the file sink (idempotent overwrite); and a transaction timeout that a
/// task fits in.
fn exactly_once(
    sink: &SinkConfig,
    source: &SourceConfig,
    batch_interval: Duration,
) -> Result<(), ConfigError> {
    match sink.kind {
        SinkKind::Kafka => {}
        SinkKind::File => return Ok(()),
        SinkKind::Stdout => {
            return Err(rule(
                "sink.guarantee",
                "\"exactly-once\" needs the kafka sink (transactions) or the file sink \
                 (idempotent overwrite); stdout cannot take back what a failed task printed",
            ));
        }
    }
    let brokers = sink.brokers(source);
    if brokers != source.brokers {
        return Err(rule(
            "sink.brokers",
            format!(
                "{brokers:?} differs from source.brokers ({:?}); \"exactly-once\" commits the \
                 input offsets in the output's Kafka transaction, and a transaction spans one \
                 cluster",
                source.brokers
            ),
        ));
    }
    let timeout = sink.transaction_timeout;
    let floor = (batch_interval * 2).max(MIN_TRANSACTION_TIMEOUT);
    if timeout < floor {
        return Err(rule(
            "sink.transaction_timeout",
            format!(
                "{} is less than {}: a task's transaction must outlast at least two batch \
                 intervals (job.batch_interval = {}), and librdkafka needs 1s or more",
                quoted(&duration::format(timeout)),
                quoted(&duration::format(floor)),
                quoted(&duration::format(batch_interval)),
            ),
        ));
    }
    if sink.kafka.contains_key("transaction.timeout.ms")
        || sink.kafka.contains_key("transactional.id")
    {
        return Err(rule(
            "sink.kafka",
            "set the transaction timeout with sink.transaction_timeout; Weir sets \
             transaction.timeout.ms and transactional.id itself",
        ));
    }
    Ok(())
}

fn transform(
    transform: &TransformConfig,
    sink: &SinkConfig,
    source: &SourceConfig,
) -> Result<(), ConfigError> {
    for (index, step) in transform.steps.iter().enumerate() {
        if let StepConfig::Filter { equals, not_equals, exists, .. } = step {
            let given = [equals.is_some(), not_equals.is_some(), exists.is_some()];
            if given.iter().filter(|given| **given).count() != 1 {
                let key = format!("transform.steps[{index}]");
                return Err(rule(key, "a filter takes exactly one of equals, not_equals, exists"));
            }
        }
    }
    if transform.on_record_error != OnRecordError::DeadLetter {
        return Ok(());
    }
    let key = "transform.dead_letter_topic";
    let topic = transform.dead_letter_topic.as_deref().unwrap_or_default();
    if topic.is_empty() {
        return Err(rule(key, "on_record_error = \"dead-letter\" needs a dead_letter_topic"));
    }
    if sink.kind == SinkKind::Kafka && sink.topic.as_deref() == Some(topic) {
        return Err(rule(key, format!("{topic:?} is also sink.topic; use a topic of its own")));
    }
    if source.reads(topic) {
        return Err(rule(key, format!("{topic:?} is also a source topic; use a topic of its own")));
    }
    if sink.guarantee == Guarantee::ExactlyOnce && sink.kind == SinkKind::File {
        return Err(rule(
            "transform.on_record_error",
            "\"dead-letter\" with the file sink cannot be exactly-once: dead letters go to Kafka, \
             outside the file's atomic rename; use \"skip\", the kafka sink, or \
             sink.guarantee = \"at-least-once\"",
        ));
    }
    Ok(())
}

pub(super) fn checkpoint(checkpoint: &CheckpointConfig) -> Result<(), ConfigError> {
    if checkpoint.etcd.is_empty() {
        return Err(rule(
            "checkpoint.etcd",
            "give at least one endpoint, like \"http://127.0.0.1:2379\"",
        ));
    }
    // The scheme says whether TLS is spoken, for every endpoint alike: a mismatch would be
    // refused by etcd or, worse, send the password in clear.
    for endpoint in &checkpoint.etcd {
        if !is_url(endpoint) {
            return Err(invalid("checkpoint.etcd", quoted(endpoint), "an http:// or https:// URL"));
        }
        match (endpoint.starts_with("https://"), checkpoint.tls.is_some()) {
            (true, false) => {
                let expected = "an http:// URL, or set [checkpoint.tls] (ca) for https://";
                return Err(invalid("checkpoint.etcd", quoted(endpoint), expected));
            }
            (false, true) => {
                let expected = "an https:// URL ([checkpoint.tls] is set)";
                return Err(invalid("checkpoint.etcd", quoted(endpoint), expected));
            }
            _ => {}
        }
    }
    let prefix = &checkpoint.prefix;
    if !prefix.starts_with('/') || prefix.ends_with('/') {
        let expected =
            "a key prefix that starts with \"/\" and does not end with one, like \"/weir\"";
        return Err(invalid("checkpoint.prefix", quoted(prefix), expected));
    }
    match (&checkpoint.user, &checkpoint.password) {
        (Some(user), _) if user.is_empty() => {
            return Err(invalid("checkpoint.user", quoted(user), "an etcd user name"));
        }
        (Some(_), None) => {
            return Err(rule("checkpoint.password", "checkpoint.user needs a password"));
        }
        (None, Some(_)) => {
            return Err(rule("checkpoint.user", "checkpoint.password is set without a user"));
        }
        (Some(_), Some(password)) if !secrets::is_reference(password) => {
            // Never echo what might be the password itself.
            return Err(invalid(
                "checkpoint.password",
                "a plain value".into(),
                "a reference, \"${env:NAME}\" or \"${file:PATH}\" (the config travels to \
                 executors and into logs; each process reads the password where it connects)",
            ));
        }
        _ => {}
    }
    if let Some(tls) = &checkpoint.tls
        && tls.cert.is_some() != tls.key.is_some()
    {
        return Err(rule("checkpoint.tls", "cert and key go together: give both or neither"));
    }
    Ok(())
}

fn driver(driver: &DriverSection) -> Result<(), ConfigError> {
    for (key, token) in [
        ("driver.http_token", &driver.http_token),
        ("driver.executor_token", &driver.executor_token),
    ] {
        if let Some(token) = token
            && !secrets::is_reference(token)
        {
            // Never echo what might be the token itself.
            return Err(invalid(
                key,
                "a plain value".into(),
                "a reference, \"${env:NAME}\" or \"${file:PATH}\" (the config travels to \
                 executors and into logs)",
            ));
        }
    }
    if let Some(advertise) = &driver.advertise
        && !is_url(advertise)
    {
        return Err(invalid("driver.advertise", quoted(advertise), "an http:// or https:// URL"));
    }
    // The scheme says what executors speak: a mismatch would never attach anyone.
    if let Some(advertise) = &driver.advertise {
        match (advertise.starts_with("https://"), driver.tls.is_some()) {
            (true, false) => {
                let expected = "an http:// URL, or set [driver.tls] for https://";
                return Err(invalid("driver.advertise", quoted(advertise), expected));
            }
            (false, true) => {
                let expected = "an https:// URL ([driver.tls] is set)";
                return Err(invalid("driver.advertise", quoted(advertise), expected));
            }
            _ => {}
        }
    }
    for (key, value) in [
        ("driver.executor_timeout", driver.executor_timeout),
        ("driver.heartbeat_interval", driver.heartbeat_interval),
        ("driver.task_stall_timeout", driver.task_stall_timeout),
    ] {
        if value.is_zero() {
            return Err(invalid(key, quoted(&duration::format(value)), "more than \"0s\""));
        }
    }
    // Upper bounds: beyond them a value is a typo, and some would overflow a clock.
    for (key, value, max) in [
        ("driver.executor_timeout", driver.executor_timeout, Duration::from_secs(600)),
        ("driver.task_retry_backoff", driver.task_retry_backoff, Duration::from_secs(600)),
        ("driver.task_stall_timeout", driver.task_stall_timeout, Duration::from_secs(86_400)),
    ] {
        if value > max {
            let expected = format!("at most {}", quoted(&duration::format(max)));
            return Err(invalid(key, quoted(&duration::format(value)), expected));
        }
    }
    if driver.heartbeat_interval * 2 > driver.executor_timeout {
        return Err(ConfigError::HeartbeatTooSlow {
            heartbeat: driver.heartbeat_interval,
            timeout: driver.executor_timeout,
        });
    }
    // Progress travels with the heartbeats: a stall is only seen across several of them.
    if driver.task_stall_timeout < driver.heartbeat_interval * 3 {
        let value = quoted(&duration::format(driver.task_stall_timeout));
        let expected = "at least three heartbeat_intervals (progress travels with the heartbeats)";
        return Err(invalid("driver.task_stall_timeout", value, expected));
    }
    // An outage shorter than one task's own timeouts (a read stall is 30s) would end the job at
    // the first broker restart.
    if let Some(limit) = driver.outage_limit
        && limit < Duration::from_secs(60)
    {
        let value = quoted(&duration::format(limit));
        return Err(invalid("driver.outage_limit", value, "at least \"1m\", or \"off\""));
    }
    if !(1..=10_000).contains(&driver.status_history) {
        let value = driver.status_history.to_string();
        return Err(invalid("driver.status_history", value, "between 1 and 10000 batches"));
    }
    if driver.max_task_attempts == 0 {
        let value = driver.max_task_attempts.to_string();
        return Err(invalid("driver.max_task_attempts", value, "at least 1"));
    }
    Ok(())
}

/// `host:port[,host:port...]`.
fn check_brokers(key: &str, brokers: &str) -> Result<(), ConfigError> {
    let ok = |broker: &str| {
        broker
            .trim()
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
    };
    if brokers.split(',').all(ok) {
        Ok(())
    } else {
        Err(invalid(key, quoted(brokers), "a comma-separated list of host:port"))
    }
}

fn is_url(text: &str) -> bool {
    ["http://", "https://"]
        .iter()
        .any(|scheme| text.len() > scheme.len() && text.starts_with(scheme))
}

fn quoted(text: &str) -> String {
    format!("{text:?}")
}

fn invalid(key: impl Into<String>, value: String, expected: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), value, expected: expected.into() }
}

fn rule(key: impl Into<String>, rule: impl Into<String>) -> ConfigError {
    ConfigError::Rule { key: key.into(), rule: rule.into() }
}
