//! The driver's view of the source topics (`io::SourceMetadata` on Kafka): which partitions
//! exist, where each log starts and ends now, and where a job starts. librdkafka's calls block,
//! so each runs on a blocking thread; one client is made at start and reused for every batch.
//! A call that fails as if Kafka were away while the cluster in fact refuses the client (its
//! credentials, its trust in the broker's certificate: `kafka_refusal`) fails as `config`, so
//! the job stops naming the reason instead of waiting for ever.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use weir_common::TopicPartition;
use weir_common::config::{SourceConfig, StartingOffsets, secrets};
use weir_common::failure::FailureKind;
use weir_common::kafka_refusal::{self, RefusalWatch};

use crate::error::DriverError;
use crate::io::{Offsets, SourceMetadata, blocking};

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// The source cluster, shared with the blocking threads that call it.
#[derive(Clone)]
pub struct KafkaSource(Arc<Client>);

struct Client {
    consumer: BaseConsumer<RefusalWatch>,
    config: SourceConfig,
    matcher: Option<regex::Regex>,
}

/// A client for the source cluster: the `[source.kafka]` properties and the brokers. Callers set
/// what their use needs on top.
pub fn client_config(config: &SourceConfig) -> ClientConfig {
    client_config_on(&config.brokers, &config.kafka)
}

/// A client for the cluster at `brokers` with librdkafka `properties` (secret references
/// resolved here).
pub fn client_config_on(brokers: &str, properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (k, v) in secrets::resolved(properties) {
        client.set(k, v);
    }
    client.set("bootstrap.servers", brokers);
    client
}

impl KafkaSource {
    pub fn new(config: &SourceConfig) -> Result<Self, DriverError> {
        let mut client = client_config(config);
        client
            // The end of the log as a read_committed reader sees it: the last stable offset, so a
            // batch never waits on an open transaction in the input.
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false");
        let consumer = client
            .create_with_context(RefusalWatch::default())
            .map_err(|e| DriverError::kafka(&config.brokers, "cannot create a client", &e))?;
        Ok(KafkaSource(Arc::new(Client {
            consumer,
            config: config.clone(),
            matcher: config.topic_matcher(),
        })))
    }

    /// Runs one blocking call of the client on a blocking thread.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Client) -> Result<T, DriverError> + Send + 'static,
    ) -> Result<T, DriverError> {
        let client = self.0.clone();
        blocking(move || {
            let result = f(&client);
            or_refused(result, &client.consumer)
        })
        .await
    }
}

/// `result` of a call of `consumer`, unless the call failed as if Kafka were away while the
/// cluster refused the client: then a `config` failure naming librdkafka's reason. Serves the
/// client's queued events either way, so librdkafka's logs reach the log as they come.
pub(crate) fn or_refused<T>(
    result: Result<T, DriverError>,
    consumer: &BaseConsumer<RefusalWatch>,
) -> Result<T, DriverError> {
    match result {
        Ok(value) => {
            kafka_refusal::settle(consumer);
            Ok(value)
        }
        Err(DriverError::Kafka { brokers, message, kind }) if kind.is_retryable() => {
            Err(match kafka_refusal::drain(consumer) {
                Some(reason) => DriverError::Kafka {
                    brokers,
                    message: format!("refuses the job's client: {reason}; {message}"),
                    kind: FailureKind::Config,
                },
                None => DriverError::Kafka { brokers, message, kind },
            })
        }
        Err(e) => Err(e),
    }
}

#[async_trait]
impl SourceMetadata for KafkaSource {
    async fn partitions(
        &self,
        known: BTreeSet<String>,
    ) -> Result<Vec<TopicPartition>, DriverError> {
        self.call(move |c| c.partitions(|t| known.contains(t))).await
    }

    async fn deleted(&self, topics: Vec<String>) -> Result<Vec<String>, DriverError> {
        self.call(move |c| c.deleted(&topics)).await
    }

    async fn latest(&self, partitions: Vec<TopicPartition>) -> Result<Offsets, DriverError> {
        self.call(move |c| c.latest(&partitions)).await
    }

    async fn earliest(&self, partitions: Vec<TopicPartition>) -> Result<Offsets, DriverError> {
        self.call(move |c| c.earliest(&partitions)).await
    }

    async fn starting_offsets(
        &self,
        partitions: Vec<TopicPartition>,
        starting: StartingOffsets,
    ) -> Result<Offsets, DriverError> {
        self.call(move |c| c.starting_offsets(&partitions, &starting)).await
    }
}

impl Client {
    fn kafka_error(&self, context: impl std::fmt::Display, error: &KafkaError) -> DriverError {
        DriverError::kafka(&self.config.brokers, context, error)
    }

    /// Every partition the job reads now: the configured topics, or the topics matching the
    /// pattern (internal topics excluded).
    /// Listed topics for which `known` is true and that are missing are left out rather than
    /// failing the call: the caller checks whether they were deleted.
    fn partitions(&self, known: impl Fn(&str) -> bool) -> Result<Vec<TopicPartition>, DriverError> {
        let metadata_of = |topic: Option<&str>| {
            self.consumer
                .fetch_metadata(topic, KAFKA_TIMEOUT)
                .map_err(|e| self.kafka_error("metadata request failed", &e))
        };
        let mut found = Vec::new();
        let mut add = |topic: &rdkafka::metadata::MetadataTopic| {
            found.extend(
                topic.partitions().iter().map(|p| TopicPartition::new(topic.name(), p.id())),
            );
        };
        match &self.matcher {
            // A pattern needs every topic's name; listed topics are asked for one by one, so an
            // idle round costs the same however many topics the cluster has.
            Some(re) => {
                let metadata = metadata_of(None)?;
                for topic in metadata.topics() {
                    let name = topic.name();
                    if !name.starts_with("__") && re.is_match(name) && topic.error().is_none() {
                        add(topic);
                    }
                }
            }
            None => {
                let mut missing = Vec::new();
                for name in &self.config.topics {
                    let metadata = metadata_of(Some(name))?;
                    match metadata.topics().iter().find(|t| t.name() == name) {
                        Some(topic) if topic.error().is_none() => add(topic),
                        _ if known(name) => {}
                        _ => missing.push(name.as_str()),
                    }
                }
                if !missing.is_empty() {
                    let missing = missing.join(", ");
                    // Waited for, as a broker away is: an operator may be creating them.
                    let message = format!("source topic(s) {missing} do not exist");
                    return Err(DriverError::kafka_transient(&self.config.brokers, message));
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// Which of `topics` the cluster says do not exist (`UnknownTopicOrPartition`): deleted.
    /// A topic that fails for another reason (no leader yet) is not reported.
    fn deleted(&self, topics: &[String]) -> Result<Vec<String>, DriverError> {
        let mut deleted = Vec::new();
        for name in topics {
            let metadata = self
                .consumer
                .fetch_metadata(Some(name), KAFKA_TIMEOUT)
                .map_err(|e| self.kafka_error("metadata request failed", &e))?;
            let gone = match metadata.topics().iter().find(|t| t.name() == name) {
                None => true,
                Some(topic) => matches!(
                    topic.error().map(rdkafka::error::RDKafkaErrorCode::from),
                    Some(rdkafka::error::RDKafkaErrorCode::UnknownTopicOrPartition)
                ),
            };
            if gone {
                deleted.push(name.clone());
            }
        }
        Ok(deleted)
    }

    /// The end of each partition's log (last stable offset).
    fn latest(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, DriverError> {
        self.list_offsets(partitions, |_| Offset::End)
    }

    /// Where each partition starts on a first start, by `source.starting_offsets`. Partitions of
    /// topics the config names no offsets for start at their earliest offset.
    fn starting_offsets(
        &self,
        partitions: &[TopicPartition],
        starting: &StartingOffsets,
    ) -> Result<BTreeMap<TopicPartition, i64>, DriverError> {
        match starting {
            StartingOffsets::Earliest => self.earliest(partitions),
            StartingOffsets::Latest => self.latest(partitions),
            StartingOffsets::Timestamp { timestamp_ms } => {
                // A partition with no record at or after the timestamp starts at its end.
                let by_time = self.list_offsets(partitions, |_| Offset::Offset(*timestamp_ms))?;
                let latest = self.latest(partitions)?;
                Ok(by_time
                    .into_iter()
                    .map(|(tp, o)| {
                        let end = latest[&tp];
                        (tp, if o < 0 { end } else { o })
                    })
                    .collect())
            }
            StartingOffsets::Offsets { offsets } => {
                let earliest = self.earliest(partitions)?;
                Ok(earliest
                    .into_iter()
                    .map(|(tp, low)| {
                        let given =
                            offsets.get(&tp.topic).and_then(|p| p.get(&tp.partition)).copied();
                        (tp, given.unwrap_or(low))
                    })
                    .collect())
            }
        }
    }

    /// The first offset still in each partition's log.
    fn earliest(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, DriverError> {
        self.list_offsets(partitions, |_| Offset::Beginning)
    }

    /// One ListOffsets round for all partitions (`offsets_for_times` takes the special
    /// timestamps -1 = latest and -2 = earliest as well as real ones).
    fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        query: impl Fn(&TopicPartition) -> Offset,
    ) -> Result<BTreeMap<TopicPartition, i64>, DriverError> {
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for tp in partitions {
            tpl.add_partition_offset(&tp.topic, tp.partition, query(tp))
                .map_err(|e| self.kafka_error(tp, &e))?;
        }
        let answer = self
            .consumer
            .offsets_for_times(tpl, KAFKA_TIMEOUT)
            .map_err(|e| self.kafka_error("listing offsets failed", &e))?;
        let mut result = BTreeMap::new();
        for element in answer.elements() {
            let tp = TopicPartition::new(element.topic(), element.partition());
            if let Err(e) = element.error() {
                return Err(self.kafka_error(format_args!("listing offsets of {tp} failed"), &e));
            }
            let offset = match element.offset() {
                Offset::Offset(o) => o,
                // No such record (a timestamp after the last one): -1, resolved by the caller.
                _ => -1,
            };
            result.insert(tp, offset);
        }
        Ok(result)
    }
}
