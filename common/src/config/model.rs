//! The job config's types, section by section, with their defaults. Every struct refuses unknown
//! keys. The shapes that plain derives cannot express (`starting_offsets`, addresses, Kafka
//! property values) are read and written by `super::de`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::de;
use crate::transform::TransformConfig;

/// A whole job config: what the driver reads from its file and sends to every executor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    pub job: JobSection,
    pub source: SourceConfig,
    #[serde(default)]
    pub transform: TransformConfig,
    pub sink: SinkConfig,
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    #[serde(default)]
    pub driver: DriverSection,
}

/// `[job]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSection {
    /// Namespaces etcd keys, the Kafka group `weir.{name}` and transactional ids.
    pub name: String,
    /// How often the driver plans a batch.
    #[serde(default = "default_batch_interval", with = "super::duration")]
    pub batch_interval: Duration,
}

/// `[source]`: the Kafka topics the job reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Comma-separated `host:port` list.
    pub brokers: String,
    /// Fixed topic names; exactly one of `topics` and `pattern` is given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// A regex matched against whole topic names (see [`SourceConfig::topic_matcher`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Where a partition starts when etcd holds no offsets for it yet.
    #[serde(default)]
    pub starting_offsets: StartingOffsets,
    /// The most records per second one partition feeds into batches; none: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate_per_partition: Option<u64>,
    /// The most records in one batch, split over the partitions in proportion to their lag
    /// (every lagging partition gets at least one); none: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_records_per_batch: Option<u64>,
    /// The rate per partition of the batches after a start, until the rate controller has
    /// measured a batch; none: only the other limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_rate_per_partition: Option<u64>,
    /// Whether the rate controller sizes batches from the measured processing rate.
    #[serde(default = "default_backpressure")]
    pub backpressure: bool,
    /// What to do when records to read are gone (retention, a deleted or recreated topic).
    #[serde(default)]
    pub on_data_loss: OnDataLoss,
    /// The most lanes the job's partitions are grouped into. A lane is a batch's unit of work
    /// (one task, one consumer, under exactly-once one transactional producer and one
    /// transaction), so this bounds the Kafka clients an executor holds and the transactions
    /// per batch, whatever the partition count; it also bounds how many tasks of a batch run at
    /// once. Lowering it regroups an existing job's lanes (see `docs/lanes.md`).
    #[serde(default = "default_lanes")]
    pub lanes: u32,
    /// `[source.kafka]`: librdkafka consumer properties, passed through.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "de::kafka_properties"
    )]
    pub kafka: BTreeMap<String, String>,
}

/// The rate per partition of the first batches after a start when `initial_rate_per_partition`
/// is not set and backpressure is on, so that a first batch never takes a whole backlog: with the
/// default 1 s interval, 10,000 records per partition, which a task reads and writes in well under
/// a second.
pub const DEFAULT_INITIAL_RATE_PER_PARTITION: u64 = 10_000;

impl SourceConfig {
    /// The rate per partition that bounds the batches after a start until the rate controller
    /// has measured one: `initial_rate_per_partition`, or with backpressure on, the default
    /// [`DEFAULT_INITIAL_RATE_PER_PARTITION`]. (Without backpressure nothing is ever measured,
    /// so a default would cap every batch; only the limits the user set apply then.)
    pub fn effective_initial_rate(&self) -> Option<u64> {
        let default = self.backpressure.then_some(DEFAULT_INITIAL_RATE_PER_PARTITION);
        self.initial_rate_per_partition.or(default)
    }

    /// The pattern anchored as `^(?:pattern)$`, so it must match the whole topic name. `None`
    /// when topics are listed (or the pattern does not compile, which `validate` refuses).
    pub fn topic_matcher(&self) -> Option<regex::Regex> {
        self.pattern.as_deref().and_then(|pattern| anchored(pattern).ok())
    }

    /// True when the job reads `topic`: it is listed, or it matches the pattern.
    pub fn reads(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| t == topic)
            || self.topic_matcher().is_some_and(|matcher| matcher.is_match(topic))
    }
}

pub(super) fn anchored(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
}

/// When offsets the job still has to read are no longer in Kafka.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnDataLoss {
    /// Stop the job with an error naming the partition, the missing offsets and the count.
    #[default]
    Fail,
    /// Jump to the log start, count the lost records, warn.
    Skip,
}

fn default_backpressure() -> bool {
    true
}

/// Eight lanes: with the default two slots, four executors run a whole batch at once, and an
/// executor holding every lane has 16 Kafka clients.
pub const DEFAULT_LANES: u32 = 8;
/// More lanes than this is a thousand transactions per batch again: what lanes exist to avoid.
pub const MAX_LANES: u32 = 1024;

fn default_lanes() -> u32 {
    DEFAULT_LANES
}

/// Where a partition starts on the job's first run. Once offsets are in etcd they win.
///
/// TOML: `"earliest"`, `"latest"`, `{ timestamp_ms = 1700000000000 }` or
/// `{ offsets = { topic = { 0 = 42, 1 = 7 } } }`. With `offsets`, partitions not listed start at
/// the earliest offset.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum StartingOffsets {
    #[default]
    Earliest,
    Latest,
    /// The first offset whose record timestamp is at or after this time.
    Timestamp {
        timestamp_ms: i64,
    },
    /// topic -> partition -> offset.
    Offsets {
        offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    },
}

/// `[sink]`: where the transformed records go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    #[serde(rename = "type")]
    pub kind: SinkKind,
    /// Kafka sink only. Loading fills it with `source.brokers` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    /// Kafka sink only, required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// File sink only, required: the output directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub guarantee: Guarantee,
    /// Kafka sink only.
    #[serde(default)]
    pub partitioning: Partitioning,
    /// Kafka sink under exactly-once: librdkafka's `transaction.timeout.ms`, the longest a task's
    /// transaction may stay open before the broker aborts it.
    #[serde(default = "default_transaction_timeout", with = "super::duration")]
    pub transaction_timeout: Duration,
    /// `[sink.kafka]`: librdkafka producer properties, passed through.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "de::kafka_properties"
    )]
    pub kafka: BTreeMap<String, String>,
}

impl SinkConfig {
    /// The sink's brokers: its own, or the source's when none are given.
    pub fn brokers<'a>(&'a self, source: &'a SourceConfig) -> &'a str {
        self.brokers.as_deref().unwrap_or(&source.brokers)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Kafka,
    File,
    Stdout,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    ExactlyOnce,
    #[default]
    AtLeastOnce,
    AtMostOnce,
}

impl fmt::Display for Guarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Guarantee::ExactlyOnce => "exactly-once",
            Guarantee::AtLeastOnce => "at-least-once",
            Guarantee::AtMostOnce => "at-most-once",
        })
    }
}

/// How a Kafka sink picks the output partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Partitioning {
    /// librdkafka's partitioner on the output key.
    #[default]
    Key,
    /// The partition number the record was read from.
    SameAsInput,
}

/// `[checkpoint]`: where the driver keeps plans and offsets, and how it logs in there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// etcd endpoints: `http://` URLs, or `https://` ones with `[checkpoint.tls]`.
    pub etcd: Vec<String>,
    /// The key prefix; the job's keys live under `{prefix}/jobs/{job.name}/`.
    pub prefix: String,
    /// The etcd user the driver (and `weirctl`) log in as, with `password`. None: no user, or
    /// the name in the client certificate of `[checkpoint.tls]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `user`'s password, always a secret reference (`${env:NAME}` or `${file:PATH}`), read by
    /// each process where it connects: the config executors receive never holds the password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `[checkpoint.tls]`: TLS to etcd; `None`: plaintext (`http://` endpoints).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<EtcdTls>,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            etcd: vec!["http://127.0.0.1:2379".to_owned()],
            prefix: "/weir".to_owned(),
            user: None,
            password: None,
            tls: None,
        }
    }
}

/// `[checkpoint.tls]`: the files of TLS to etcd, all PEM. `cert` and `key` (together) are a
/// client certificate, for an etcd run with `--client-cert-auth`; with authentication on and no
/// `checkpoint.user`, etcd takes the certificate's common name as the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTls {
    /// The CA that signed etcd's server certificate.
    pub ca: PathBuf,
    /// A client certificate (chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// Its private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

/// `[driver]`: the driver's endpoints and how it watches executors and retries tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriverSection {
    /// Where the gRPC service listens.
    #[serde(with = "de::socket_addr")]
    pub grpc_listen: SocketAddr,
    /// The URL executors use to reach the driver; see [`DriverSection::advertise_url`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// Where the HTTP status page and `/metrics` listen; `None` (written `"off"`) disables it.
    #[serde(with = "de::optional_socket_addr")]
    pub http_listen: Option<SocketAddr>,
    /// `[driver.tls]`: TLS with mutual authentication on the gRPC port; `None`: plaintext.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<DriverTls>,
    /// A bearer token the status page, `/api/*` and `/metrics` require (a secret reference);
    /// `None`: they are open to whoever reaches `http_listen`. `/healthz` and `/readyz` stay open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_token: Option<String>,
    /// A token every executor must present when it attaches (a secret reference), on top of
    /// `[driver.tls]` or where TLS ends in front of the driver; `None`: none is asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executor_token: Option<String>,
    /// An executor silent this long is declared lost.
    #[serde(with = "super::duration")]
    pub executor_timeout: Duration,
    /// How often executors send a heartbeat.
    #[serde(with = "super::duration")]
    pub heartbeat_interval: Duration,
    /// A retryable task failure is retried up to this many attempts in total.
    pub max_task_attempts: u32,
    /// The first retry's delay; it doubles on each retry, capped at 30s.
    #[serde(with = "super::duration")]
    pub task_retry_backoff: Duration,
    /// A running task whose executor reports no new record read for this long (a transform or
    /// a sink that hangs) is cancelled and run again on another executor; it counts as a failed
    /// attempt.
    #[serde(with = "super::duration")]
    pub task_stall_timeout: Duration,
    /// How long the job waits out a Kafka cluster that does not answer (tasks failing while
    /// it is unreachable, planning that cannot ask it for offsets) before it stops; `None`
    /// (written `"off"`): for ever. Such failures never use up `max_task_attempts`.
    #[serde(with = "super::duration::optional")]
    pub outage_limit: Option<Duration>,
    /// How many of the latest batches the status page and `/api/status` keep.
    pub status_history: usize,
    /// Whether `/metrics` has a lag series per partition (off for jobs with many partitions).
    pub partition_metrics: bool,
}

impl DriverSection {
    /// `advertise`, or `http://{grpc_listen}` (`https://` with TLS) when it is not given.
    pub fn advertise_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.advertise.clone().unwrap_or_else(|| format!("{scheme}://{}", self.grpc_listen))
    }
}

/// `[driver.tls]`: the files of the driver's TLS on its gRPC port, all PEM. Executors must
/// present a certificate that `client_ca` signed: a client without one is refused in the
/// handshake, before it can send anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverTls {
    /// The driver's certificate (chain), valid for the host in `driver.advertise`.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA that signs the executors' client certificates.
    pub client_ca: PathBuf,
}

impl Default for DriverSection {
    fn default() -> Self {
        DriverSection {
            grpc_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 7070)),
            advertise: None,
            http_listen: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 7071))),
            tls: None,
            http_token: None,
            executor_token: None,
            executor_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(1),
            max_task_attempts: 4,
            task_retry_backoff: Duration::from_millis(500),
            task_stall_timeout: Duration::from_secs(300),
            outage_limit: None,
            status_history: 100,
            partition_metrics: true,
        }
    }
}

fn default_transaction_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_batch_interval() -> Duration {
    Duration::from_secs(1)
}
