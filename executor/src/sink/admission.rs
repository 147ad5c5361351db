//! What a Kafka topic the sink writes accepts, so a record the topic would refuse is refused
//! here, before it is written, and follows `transform.on_record_error` like a transform's
//! rejection (one code path, in `task.rs`) instead of failing its task on every attempt.
//!
//! Invariant: a record this module admits is one librdkafka and the broker accept, as far as the
//! topic's limits are known: its size (the producer's `message.max.bytes`, and the topic's
//! `max.message.bytes` for a batch holding the record alone), its timestamp (the topic's
//! `message.timestamp.*` bounds under `CreateTime`, kept with a margin for clock skew) and, with
//! `sink.partitioning = "same-as-input"`, its partition. The checks are pure ([`Rules`]); a
//! [`TopicGate`] reads the limits from the cluster at first use, again every minute (topic
//! configs change), and the partition count again (at most once a second) when a record names a
//! partition past it (partitions can be added). Limits that cannot be read (no `DescribeConfigs`
//! permission, the cluster away) are unknown: only the producer's own limit is checked, and a
//! record the topic refuses fails its task, as before.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use tracing::{debug, info, warn};
use weir_common::Record;
use weir_common::config::Partitioning;

use crate::error::TaskError;

/// The header of a record batch (format v2), which holds the record when it is alone.
pub const BATCH_HEADER_BYTES: u64 = 61;
/// The most framing one record takes in a v2 batch besides its key, value and headers (its
/// length, attributes, timestamp and offset deltas, key and value lengths, header count), as
/// librdkafka counts it against `message.max.bytes`.
pub const RECORD_FRAMING_BYTES: u64 = 36;
/// librdkafka's default `message.max.bytes` and `batch.size`.
pub const LIBRDKAFKA_DEFAULT_BYTES: u64 = 1_000_000;
/// A timestamp bound is applied this much tighter (at most a tenth of the bound), so a record
/// admitted here is not refused by a broker whose clock is a little ahead, or a little later.
pub const TIMESTAMP_MARGIN: Duration = Duration::from_secs(10);
/// Topic configs are read again after this long.
const CONFIG_REFRESH: Duration = Duration::from_secs(60);
/// After a failed read, the next task tries again after this long.
const UNREADABLE_RETRY: Duration = Duration::from_secs(5);
/// The partition count is read again at most this often.
const PARTITIONS_REFRESH: Duration = Duration::from_secs(1);
/// How long one read of a topic's configs or metadata may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A topic's limits, as far as they are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicLimits {
    /// `max.message.bytes`: the largest record batch the topic takes.
    pub max_message_bytes: Option<u64>,
    pub timestamps: Timestamps,
    pub partitions: Option<i32>,
}

/// Which record timestamps a topic takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamps {
    /// `message.timestamp.type = LogAppendTime`: the broker stamps each record; any is taken.
    LogAppendTime,
    /// `CreateTime`: the record's own, within these distances from the broker's clock (`None`:
    /// unbounded or unknown).
    CreateTime { before_max_ms: Option<i64>, after_max_ms: Option<i64> },
}

impl TopicLimits {
    /// Nothing known: only the producer's limit applies.
    pub fn unknown() -> Self {
        TopicLimits {
            max_message_bytes: None,
            timestamps: Timestamps::CreateTime { before_max_ms: None, after_max_ms: None },
            partitions: None,
        }
    }

    /// The limits from a topic's config entries (`config(name)` gives an entry's value).
    /// Kafka 3.6+ bounds timestamps with `message.timestamp.before.max.ms` and
    /// `after.max.ms`; older brokers with `message.timestamp.difference.max.ms`, both ways.
    pub fn from_configs<'a>(
        config: impl Fn(&str) -> Option<&'a str>,
        partitions: Option<i32>,
    ) -> Self {
        let number = |name: &str| config(name).and_then(|v| v.trim().parse::<i64>().ok());
        // Kafka writes "unbounded" as Long.MAX_VALUE.
        let bound = |name: &str| number(name).filter(|&ms| (0..i64::MAX / 2).contains(&ms));
        let difference = bound("message.timestamp.difference.max.ms");
        let timestamps = match config("message.timestamp.type") {
            Some("LogAppendTime") => Timestamps::LogAppendTime,
            _ => Timestamps::CreateTime {
                before_max_ms: match number("message.timestamp.before.max.ms") {
                    Some(_) => bound("message.timestamp.before.max.ms"),
                    None => difference,
                },
                after_max_ms: match number("message.timestamp.after.max.ms") {
                    Some(_) => bound("message.timestamp.after.max.ms"),
                    None => difference,
                },
            },
        };
        TopicLimits {
            max_message_bytes: number("max.message.bytes").and_then(|b| u64::try_from(b).ok()),
            timestamps,
            partitions,
        }
    }
}

/// What the sink's producer itself refuses, from the `[sink.kafka]` properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerLimits {
    /// `message.max.bytes`: the largest record librdkafka queues (key, value, headers and
    /// [`RECORD_FRAMING_BYTES`]).
    pub message_max_bytes: u64,
    /// Whether the producer compresses: then the topic sees the compressed batch, whose size is
    /// not known here, so only the producer's limit (on the uncompressed record) is checked.
    pub compressed: bool,
}

impl ProducerLimits {
    pub fn of(properties: &BTreeMap<String, String>) -> Self {
        let message_max_bytes = properties
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(LIBRDKAFKA_DEFAULT_BYTES);
        let codec = properties.get("compression.codec").or(properties.get("compression.type"));
        let compressed = codec.is_some_and(|c| !c.trim().eq_ignore_ascii_case("none"));
        ProducerLimits { message_max_bytes, compressed }
    }
}

/// Why a topic would refuse a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Larger than the topic's `max.message.bytes`, in a batch of its own.
    TopicSize { topic: String, bytes: u64, limit: u64 },
    /// Larger than the producer's `message.max.bytes`.
    ProducerSize { bytes: u64, limit: u64 },
    /// Further ahead of the clock than the topic's `message.timestamp.after.max.ms`.
    TooNew { topic: String, timestamp_ms: i64, ahead_ms: i64, limit_ms: i64 },
    /// Further behind the clock than the topic's `message.timestamp.before.max.ms`.
    TooOld { topic: String, timestamp_ms: i64, behind_ms: i64, limit_ms: i64 },
    /// `same-as-input` names a partition the topic does not have.
    NoPartition { topic: String, partition: i32, partitions: i32 },
}

impl Refusal {
    pub fn is_size(&self) -> bool {
        matches!(self, Refusal::TopicSize { .. } | Refusal::ProducerSize { .. })
    }

    pub fn is_timestamp(&self) -> bool {
        matches!(self, Refusal::TooNew { .. } | Refusal::TooOld { .. })
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TopicSize { topic, bytes, limit } => write!(
                f,
                "record of {bytes} bytes is larger than topic {topic}'s max.message.bytes {limit} \
                 (key, value, headers and {} bytes of batch framing)",
                BATCH_HEADER_BYTES + RECORD_FRAMING_BYTES
            ),
            Refusal::ProducerSize { bytes, limit } => write!(
                f,
                "record of {bytes} bytes is larger than the producer's message.max.bytes {limit} \
                 (key, value, headers and {RECORD_FRAMING_BYTES} bytes of framing; set in [sink.kafka])"
            ),
            Refusal::TooNew { topic, timestamp_ms, ahead_ms, limit_ms } => write!(
                f,
                "record timestamp {timestamp_ms} is {} ahead of the clock; topic {topic} takes \
                 at most {limit_ms} ms ahead (message.timestamp.after.max.ms)",
                human(*ahead_ms)
            ),
            Refusal::TooOld { topic, timestamp_ms, behind_ms, limit_ms } => write!(
                f,
                "record timestamp {timestamp_ms} is {} behind the clock; topic {topic} takes at \
                 most {limit_ms} ms behind (message.timestamp.before.max.ms)",
                human(*behind_ms)
            ),
            Refusal::NoPartition { topic, partition, partitions } => write!(
                f,
                "topic {topic} has no partition {partition}, only {partitions} \
                 (sink.partitioning = \"same-as-input\")"
            ),
        }
    }
}

/// `90061000` ms as `25h 1m 1s`.
fn human(ms: i64) -> String {
    let s = ms / 1000;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s ({ms} ms)"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, s) => format!("{h}h {m}m {s}s"),
    }
}

/// The bytes of a zigzag varint holding `n`.
fn varint_bytes(n: i64) -> u64 {
    let mut zigzag = ((n << 1) ^ (n >> 63)) as u64;
    let mut bytes = 1;
    while zigzag >= 0x80 {
        zigzag >>= 7;
        bytes += 1;
    }
    bytes
}

/// One header's bytes in a record, as librdkafka counts them (a missing value as empty).
fn header_bytes(name: usize, value: usize) -> u64 {
    name as u64 + value as u64 + varint_bytes(name as i64) + varint_bytes(value as i64)
}

/// The size librdkafka checks against `message.max.bytes`: key, value, headers (those of the
/// record and `extra`) and [`RECORD_FRAMING_BYTES`]. A batch holding only this record is
/// [`BATCH_HEADER_BYTES`] more.
pub fn record_bytes(record: &Record<'_>, extra: &[(&str, &[u8])]) -> u64 {
    let len = |b: &Option<std::borrow::Cow<'_, [u8]>>| b.as_deref().map_or(0, <[u8]>::len) as u64;
    let headers: u64 = record
        .headers
        .iter()
        .map(|h| header_bytes(h.key.len(), h.value.as_deref().map_or(0, <[u8]>::len)))
        .chain(extra.iter().map(|(k, v)| header_bytes(k.len(), v.len())))
        .sum();
    RECORD_FRAMING_BYTES + len(&record.key) + len(&record.payload) + headers
}

/// One topic's limits and the producer's: the pure check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub topic: String,
    pub limits: TopicLimits,
    pub producer: ProducerLimits,
}

impl Rules {
    /// Why the topic would refuse `record` (with `extra` headers added) written to `partition`
    /// (`None`: the partitioner chooses) at `now_ms`; `None` when it takes it.
    pub fn refusal(
        &self,
        record: &Record<'_>,
        extra: &[(&str, &[u8])],
        partition: Option<i32>,
        now_ms: i64,
    ) -> Option<Refusal> {
        self.size_refusal(record, extra)
            .or_else(|| self.timestamp_refusal(record.timestamp_ms, now_ms))
            .or_else(|| self.partition_refusal(partition))
    }

    fn size_refusal(&self, record: &Record<'_>, extra: &[(&str, &[u8])]) -> Option<Refusal> {
        let bytes = record_bytes(record, extra);
        let producer_limit = self.producer.message_max_bytes;
        let topic_limit = self.limits.max_message_bytes.filter(|_| !self.producer.compressed);
        let over_topic = topic_limit.filter(|&limit| bytes + BATCH_HEADER_BYTES > limit);
        let topic_size = |limit| Refusal::TopicSize {
            topic: self.topic.clone(),
            bytes: bytes + BATCH_HEADER_BYTES,
            limit,
        };
        // Over both: the tighter limit is the one named.
        match (over_topic, bytes > producer_limit) {
            (Some(limit), true) if limit.saturating_sub(BATCH_HEADER_BYTES) <= producer_limit => {
                Some(topic_size(limit))
            }
            (_, true) => Some(Refusal::ProducerSize { bytes, limit: producer_limit }),
            (Some(limit), false) => Some(topic_size(limit)),
            (None, false) => None,
        }
    }

    /// A record without a timestamp is stamped by the producer now: always taken.
    fn timestamp_refusal(&self, timestamp_ms: Option<i64>, now_ms: i64) -> Option<Refusal> {
        let Timestamps::CreateTime { before_max_ms, after_max_ms } = self.limits.timestamps else {
            return None;
        };
        let ts = timestamp_ms.filter(|&ts| ts >= 0)?;
        let tighter = |limit: i64| limit - (limit / 10).min(TIMESTAMP_MARGIN.as_millis() as i64);
        let ahead_ms = ts.saturating_sub(now_ms);
        if let Some(limit_ms) = after_max_ms
            && ahead_ms > tighter(limit_ms)
        {
            let topic = self.topic.clone();
            return Some(Refusal::TooNew { topic, timestamp_ms: ts, ahead_ms, limit_ms });
        }
        let behind_ms = now_ms.saturating_sub(ts);
        if let Some(limit_ms) = before_max_ms
            && behind_ms > tighter(limit_ms)
        {
            let topic = self.topic.clone();
            return Some(Refusal::TooOld { topic, timestamp_ms: ts, behind_ms, limit_ms });
        }
        None
    }

    fn partition_refusal(&self, partition: Option<i32>) -> Option<Refusal> {
        let (partition, partitions) = (partition?, self.limits.partitions?);
        (partition >= partitions).then(|| Refusal::NoPartition {
            topic: self.topic.clone(),
            partition,
            partitions,
        })
    }
}

/// Reads a topic's limits from its cluster (a fake one in tests).
pub trait LimitReader: Send + Sync {
    fn limits(&self, topic: &str) -> Result<TopicLimits, TaskError>;
    fn partitions(&self, topic: &str) -> Result<i32, TaskError>;
}

/// [`LimitReader`] for a real cluster: `DescribeConfigs` and metadata, through an admin client
/// made at the first read.
pub struct KafkaLimits {
    config: ClientConfig,
    brokers: String,
    admin: Mutex<Option<Arc<AdminClient<DefaultClientContext>>>>,
}

impl KafkaLimits {
    /// `config`: the sink's client properties with the brokers (`kafka::client_config`).
    pub fn new(config: ClientConfig, brokers: &str) -> Self {
        KafkaLimits { config, brokers: brokers.to_owned(), admin: Mutex::new(None) }
    }

    fn admin(&self) -> Result<Arc<AdminClient<DefaultClientContext>>, TaskError> {
        let mut admin = self.admin.lock().expect("admin client");
        if let Some(admin) = &*admin {
            return Ok(admin.clone());
        }
        let made: AdminClient<DefaultClientContext> = self.config.create().map_err(|e| {
            TaskError::kafka(format_args!("cannot create an admin client for {}", self.brokers), &e)
        })?;
        Ok(admin.insert(Arc::new(made)).clone())
    }
}

impl LimitReader for KafkaLimits {
    fn limits(&self, topic: &str) -> Result<TopicLimits, TaskError> {
        let admin = self.admin()?;
        let options = AdminOptions::new().request_timeout(Some(READ_TIMEOUT));
        let resource = [ResourceSpecifier::Topic(topic)];
        let describe = admin.describe_configs(&resource, &options);
        // Tasks run on blocking threads; the answer comes on librdkafka's own thread.
        let described = wait(describe);
        let context = || format!("describing topic {topic}'s configs on {}", self.brokers);
        let results = described.map_err(|e| TaskError::kafka(context(), &e))?;
        let config = match results.into_iter().next() {
            Some(Ok(config)) => config,
            Some(Err(code)) => {
                return Err(TaskError {
                    kind: weir_common::failure::code_failure(code),
                    message: format!("{}: {code}", context()),
                });
            }
            None => return Err(TaskError::transient(format!("{}: no answer", context()))),
        };
        let partitions = self.partitions(topic).ok();
        let value = |name: &str| config.get(name).and_then(|e| e.value.as_deref());
        Ok(TopicLimits::from_configs(value, partitions))
    }

    fn partitions(&self, topic: &str) -> Result<i32, TaskError> {
        let admin = self.admin()?;
        let context = || format!("reading topic {topic}'s partitions on {}", self.brokers);
        let metadata = admin
            .inner()
            .fetch_metadata(Some(topic), READ_TIMEOUT)
            .map_err(|e| TaskError::kafka(context(), &e))?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        match found {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                Ok(t.partitions().len() as i32)
            }
            _ => Err(TaskError::transient(format!(
                "{}: the topic is not in the metadata",
                context()
            ))),
        }
    }
}

/// Waits for `future` on this thread: a task's blocking thread (never a runtime's worker), or
/// a thread outside any runtime.
fn wait<F: std::future::Future>(future: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime.block_on(future),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime for one admin request")
            .block_on(future),
    }
}

/// One topic the sink writes, its limits read from the cluster as they are needed. Shared by
/// every task of the job; each task checks against the [`Admission`] it takes.
pub struct TopicGate {
    topic: String,
    partitioning: Partitioning,
    producer: ProducerLimits,
    reader: Arc<dyn LimitReader>,
    partitions_refresh: Duration,
    state: Mutex<GateState>,
}

struct GateState {
    rules: Arc<Rules>,
    /// When the configs were last read, and whether that read succeeded.
    read: Option<(Instant, bool)>,
    partitions_read: Option<Instant>,
}

impl TopicGate {
    /// The gate of `topic`, whose records go to the partition `partitioning` chooses.
    pub fn new(
        topic: &str,
        partitioning: Partitioning,
        producer: ProducerLimits,
        reader: Arc<dyn LimitReader>,
    ) -> Self {
        let rules = Rules { topic: topic.to_owned(), limits: TopicLimits::unknown(), producer };
        TopicGate {
            topic: topic.to_owned(),
            partitioning,
            producer,
            reader,
            partitions_refresh: PARTITIONS_REFRESH,
            state: Mutex::new(GateState {
                rules: Arc::new(rules),
                read: None,
                partitions_read: None,
            }),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The rules as of now: read from the cluster at the first call, and again once they are
    /// older than a minute (5 s after a failed read). A failed read keeps what was known.
    pub fn rules(&self) -> Arc<Rules> {
        let mut state = self.state.lock().expect("gate state");
        let due = match state.read {
            None => true,
            Some((at, true)) => at.elapsed() >= CONFIG_REFRESH,
            Some((at, false)) => at.elapsed() >= UNREADABLE_RETRY,
        };
        if !due {
            return state.rules.clone();
        }
        let now = Instant::now();
        match self.reader.limits(&self.topic) {
            Ok(limits) => {
                if state.rules.limits != limits {
                    info!(topic = %self.topic, ?limits, "Read the limits of a topic the sink writes");
                }
                let rules = Rules { topic: self.topic.clone(), limits, producer: self.producer };
                state.rules = Arc::new(rules);
                state.read = Some((now, true));
                state.partitions_read = Some(now);
            }
            Err(e) => {
                if state.read.is_none_or(|(_, ok)| ok) {
                    warn!(topic = %self.topic, error = %e,
                        "Cannot read the topic's limits; a record it refuses may fail its task");
                }
                state.read = Some((now, false));
            }
        }
        state.rules.clone()
    }

    /// A task's view: the rules as of now, refreshed as the task meets unknown partitions.
    pub fn admission(&self) -> Admission<'_> {
        Admission { gate: self, rules: self.rules() }
    }

    /// The rules with the partition count read again, unless it was read less than a second
    /// ago.
    fn with_fresh_partitions(&self) -> Arc<Rules> {
        let mut state = self.state.lock().expect("gate state");
        if state.partitions_read.is_some_and(|at| at.elapsed() < self.partitions_refresh) {
            return state.rules.clone();
        }
        state.partitions_read = Some(Instant::now());
        match self.reader.partitions(&self.topic) {
            Ok(partitions) if Some(partitions) != state.rules.limits.partitions => {
                debug!(topic = %self.topic, partitions, "The topic's partition count changed");
                let mut rules = Rules::clone(&state.rules);
                rules.limits.partitions = Some(partitions);
                state.rules = Arc::new(rules);
            }
            Ok(_) => {}
            Err(e) => debug!(topic = %self.topic, error = %e, "Cannot read the partition count"),
        }
        state.rules.clone()
    }
}

/// One task's check of the records it writes to one topic.
pub struct Admission<'g> {
    gate: &'g TopicGate,
    rules: Arc<Rules>,
}

impl Admission<'_> {
    /// Why the topic would refuse `record` with the `extra` headers; `None` if it takes it.
    pub fn refusal(&mut self, record: &Record<'_>, extra: &[(&str, &[u8])]) -> Option<Refusal> {
        let partition = match self.gate.partitioning {
            Partitioning::Key => None,
            Partitioning::SameAsInput => Some(record.partition),
        };
        let now = now_ms();
        match self.rules.refusal(record, extra, partition, now)? {
            Refusal::NoPartition { .. } => {
                // Partitions may have been added since the count was read.
                self.rules = self.gate.with_fresh_partitions();
                self.rules.refusal(record, extra, partition, now)
            }
            refusal => Some(refusal),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Sets `batch.size` (unless `[sink.kafka]` does) no larger than the smallest
/// `max.message.bytes` of the topics a producer writes: librdkafka packs several records in one
/// batch, and a topic refuses a whole batch larger than its limit, however small its records.
pub fn fit_batches(config: &mut ClientConfig, gates: &[&TopicGate]) {
    if config.get("batch.size").is_some() {
        return;
    }
    let smallest = gates.iter().filter_map(|g| g.rules().limits.max_message_bytes).min();
    if let Some(limit) = smallest.filter(|&l| l < LIBRDKAFKA_DEFAULT_BYTES) {
        config.set("batch.size", limit.max(1).to_string());
    }
}

#[cfg(test)]
mod tests;
