//! Kafka helpers for tests: create topics, produce records with known ids, and read a topic or
//! one offset range back with an independent `read_committed` consumer (the judge of every
//! delivery test, sharing no code with Weir's executor).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::services;

/// How long a helper waits for Kafka before failing the test.
const DEADLINE: Duration = Duration::from_secs(60);

/// A record as a test produced it: `key = "id-{id}"`, payload `{"id":id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produced {
    pub id: u64,
    pub partition: i32,
    pub offset: i64,
}

/// A record as the judge read it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Consumed {
    /// The value of header `key`, as text.
    pub fn header(&self, key: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The id of a record made by [`record_key`], if the key has that shape.
    pub fn id(&self) -> Option<u64> {
        let key = std::str::from_utf8(self.key.as_deref()?).ok()?;
        key.strip_prefix("id-")?.parse().ok()
    }
}

impl From<&BorrowedMessage<'_>> for Consumed {
    fn from(m: &BorrowedMessage<'_>) -> Self {
        Consumed {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            headers: m
                .headers()
                .map(|h| {
                    h.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect()
                })
                .unwrap_or_default(),
        }
    }
}

pub fn record_key(id: u64) -> String {
    format!("id-{id}")
}

pub fn record_payload(id: u64) -> String {
    format!("{{\"id\":{id}}}")
}

/// Base client settings for the test broker.
pub fn client_config() -> ClientConfig {
    client_config_on(&services::ensure().kafka_brokers)
}

/// Base client settings for the cluster at `brokers` (a test's own broker), with the properties
/// of the file `WEIR_KAFKA_CLIENT_PROPERTIES` names, if any (`key=value` lines, values may be
/// `${env:NAME}` or `${file:PATH}` references): how `weir-kafka` reaches a broker that wants
/// SASL_SSL, in the compose deployment.
pub fn client_config_on(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in extra_client_properties() {
        config.set(key, value);
    }
    config
}

static EXTRA_CLIENT_PROPERTIES: std::sync::OnceLock<Vec<(String, String)>> =
    std::sync::OnceLock::new();

/// Makes every client this process creates from now on use `properties` as well (a test whose
/// cluster wants SASL_SSL, known only once the cluster is up). Call it before the first client;
/// a second call, or one after a client was made, panics.
pub fn use_client_properties(properties: Vec<(String, String)>) {
    assert!(
        EXTRA_CLIENT_PROPERTIES.set(properties).is_ok(),
        "use_client_properties: clients were made before it, or it was called twice"
    );
}

fn extra_client_properties() -> &'static [(String, String)] {
    EXTRA_CLIENT_PROPERTIES.get_or_init(|| {
        let Some(path) = std::env::var_os("WEIR_KAFKA_CLIENT_PROPERTIES") else {
            return Vec::new();
        };
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("WEIR_KAFKA_CLIENT_PROPERTIES={}: {e}", path.to_string_lossy())
        });
        parse_properties(&text).unwrap_or_else(|e| {
            panic!("WEIR_KAFKA_CLIENT_PROPERTIES={}: {e}", path.to_string_lossy())
        })
    })
}

/// `key=value` lines (blank lines and `#` comments skipped), each value resolved if it is a
/// secret reference.
fn parse_properties(text: &str) -> Result<Vec<(String, String)>, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) =
                line.split_once('=').ok_or_else(|| format!("expected key=value, got {line:?}"))?;
            let value = weir_common::config::secrets::resolve(value.trim())
                .map_err(|e| format!("{}: {e}", key.trim()))?;
            Ok((key.trim().to_owned(), value.into_owned()))
        })
        .collect()
}

/// The shared test broker's address.
fn shared() -> &'static str {
    &services::ensure().kafka_brokers
}

/// Creates `name` with `partitions` partitions (replication 1) and waits until every partition
/// has a leader, so a producer started right after never sees "unknown partition".
pub async fn create_topic(name: &str, partitions: i32) {
    create_topic_on(shared(), name, partitions).await
}

/// [`create_topic`] on the cluster at `brokers`.
pub async fn create_topic_on(brokers: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        client_config_on(brokers).create().expect("admin client for the test broker");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics([&topic], &options).await.expect("CreateTopics request");
    for result in results {
        if let Err((topic, code)) = result {
            panic!("creating topic {topic} failed: {code}");
        }
    }
    let consumer: BaseConsumer = client_config_on(brokers).create().expect("metadata client");
    let started = Instant::now();
    loop {
        if let Ok(metadata) = consumer.fetch_metadata(Some(name), Duration::from_secs(5)) {
            let ready = metadata.topics().iter().any(|t| {
                t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            });
            if ready {
                return;
            }
        }
        assert!(started.elapsed() < DEADLINE, "topic {name} has no leaders after {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Produces `count` records with ids `0..count`, record `id` to partition `id % partitions`,
/// and returns where each one landed. Waits for every delivery; panics on any failure.
pub async fn produce_ids(topic: &str, partitions: i32, count: u64) -> Vec<Produced> {
    produce_range(topic, partitions, 0..count).await
}

/// Like [`produce_ids`] for the ids `ids` (so a test can add more records with new ids later).
pub async fn produce_range(
    topic: &str,
    partitions: i32,
    ids: std::ops::Range<u64>,
) -> Vec<Produced> {
    produce_with(&test_producer(), topic, partitions, ids).await
}

/// An idempotent producer for test input, to reuse across many [`produce_with`] calls.
pub fn test_producer() -> FutureProducer {
    test_producer_on(shared())
}

/// [`test_producer`] for the cluster at `brokers`. Its records wait out an outage of up to
/// ten minutes in its queue before they fail.
pub fn test_producer_on(brokers: &str) -> FutureProducer {
    client_config_on(brokers)
        .set("message.timeout.ms", "600000")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer for the test broker")
}

/// [`produce_range`] through `producer`: record `id` (key `id-{id}`, payload `{"id":id}`) to
/// partition `id % partitions`. Waits for every delivery; panics on any failure.
pub async fn produce_with(
    producer: &FutureProducer,
    topic: &str,
    partitions: i32,
    ids: std::ops::Range<u64>,
) -> Vec<Produced> {
    let mut deliveries = Vec::with_capacity((ids.end - ids.start) as usize);
    for id in ids {
        let partition = (id % partitions as u64) as i32;
        let key = record_key(id);
        let payload = record_payload(id);
        let mut record = FutureRecord::to(topic).key(&key).payload(&payload).partition(partition);
        // Enqueue without awaiting each delivery; wait for room when the local queue is full.
        let delivery = loop {
            match producer.send_result(record) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => panic!("producing record {id} to {topic} failed: {e}"),
            }
        };
        deliveries.push((id, delivery));
    }
    let mut produced = Vec::with_capacity(deliveries.len());
    for (id, delivery) in deliveries {
        let outcome = delivery.await.expect("the producer was not dropped");
        match outcome {
            Ok(delivered) => produced.push(Produced {
                id,
                partition: delivered.partition,
                offset: delivered.offset,
            }),
            Err((e, _)) => panic!("record {id} to {topic} was not delivered: {e}"),
        }
    }
    produced
}

/// Writes ids `0..records` the way [`produce_range`] does (same keys, payloads and partitions) in
/// consecutive slices, one every `slice_every` (at least one slice, at most one per record), so
/// the last one starts just before `produce_over` has passed: input that keeps arriving while a
/// test does something to the job. Returns where each record landed and when the last delivery
/// was confirmed.
///
/// One idempotent producer for the whole run ([`produce_with`]): a producer per slice costs its
/// start and teardown every slice, and fell behind the schedule on a busy two-core machine.
pub async fn produce_paced(
    topic: String,
    partitions: i32,
    records: u64,
    produce_over: Duration,
    slice_every: Duration,
) -> (Vec<Produced>, Duration) {
    produce_paced_on(shared(), topic, partitions, records, produce_over, slice_every).await
}

/// [`produce_paced`] to the cluster at `brokers`.
pub async fn produce_paced_on(
    brokers: &str,
    topic: String,
    partitions: i32,
    records: u64,
    produce_over: Duration,
    slice_every: Duration,
) -> (Vec<Produced>, Duration) {
    let started = tokio::time::Instant::now();
    let producer = test_producer_on(brokers);
    let slices = ((produce_over.as_millis() / slice_every.as_millis().max(1)) as u64)
        .clamp(1, records.max(1));
    let mut produced = Vec::with_capacity(records as usize);
    for i in 0..slices {
        let from = records * i / slices;
        let until = records * (i + 1) / slices;
        tokio::time::sleep_until(started + produce_over.mul_f64(i as f64 / slices as f64)).await;
        produced.extend(produce_with(&producer, &topic, partitions, from..until).await);
    }
    (produced, started.elapsed())
}

/// What a reader sees of transactional records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Only records of committed transactions (and non-transactional ones): what users read.
    ReadCommitted,
    /// Everything in the log, aborted and open transactions included: to prove records exist.
    ReadUncommitted,
}

/// A consumer that never commits, with partition-EOF events on.
/// Waits until no partition of `topic` has a transaction left to complete: its last stable offset
/// (what `committed` reads, a `read_committed` client's watermark) has reached its high
/// watermark. A commit returns once the coordinator decided it; the markers reach the partitions
/// a moment later, and a reader that stopped at the first end of partition before them would
/// miss committed records.
fn wait_for_transaction_markers(
    brokers: &str,
    committed: &BaseConsumer,
    topic: &str,
    partitions: i32,
) {
    let uncommitted = judge_consumer(brokers, Isolation::ReadUncommitted);
    let timeout = Duration::from_secs(10);
    let started = Instant::now();
    let mut open: Vec<i32> = (0..partitions).collect();
    while !open.is_empty() {
        open.retain(|&p| {
            let (_, stable) = committed.fetch_watermarks(topic, p, timeout).expect("LSO");
            let (_, high) =
                uncommitted.fetch_watermarks(topic, p, timeout).expect("high watermark");
            stable < high
        });
        if open.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "reading {topic}: partitions {open:?} kept a transaction open for {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn judge_consumer(brokers: &str, isolation: Isolation) -> BaseConsumer {
    let level = match isolation {
        Isolation::ReadCommitted => "read_committed",
        Isolation::ReadUncommitted => "read_uncommitted",
    };
    client_config_on(brokers)
        .set("group.id", crate::names::unique("weir-judge"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", level)
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "error")
        .create()
        .expect("judge consumer")
}

fn partition_count(consumer: &BaseConsumer, topic: &str) -> i32 {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
    let t = metadata.topics().iter().find(|t| t.name() == topic).expect("topic in metadata");
    assert!(t.error().is_none(), "topic {topic}: {:?}", t.error());
    t.partitions().len() as i32
}

/// Reads every committed record of `topic`, per partition in offset order, as a
/// `read_committed` consumer sees it: records of aborted or still-open transactions are not
/// returned. Stops when every partition reached its end (its last stable offset).
pub async fn read_committed(topic: &str) -> BTreeMap<i32, Vec<Consumed>> {
    read_topic(topic, Isolation::ReadCommitted).await
}

/// Reads every record of `topic` visible at `isolation`, per partition in offset order, until
/// every partition reached its end.
pub async fn read_topic(topic: &str, isolation: Isolation) -> BTreeMap<i32, Vec<Consumed>> {
    read_topic_on(shared(), topic, isolation).await
}

/// [`read_topic`] on the cluster at `brokers`.
pub async fn read_topic_on(
    brokers: &str,
    topic: &str,
    isolation: Isolation,
) -> BTreeMap<i32, Vec<Consumed>> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer = judge_consumer(&brokers, isolation);
        let partitions = partition_count(&consumer, &topic);
        if isolation == Isolation::ReadCommitted {
            wait_for_transaction_markers(&brokers, &consumer, &topic, partitions);
        }
        let mut assignment = TopicPartitionList::new();
        for p in 0..partitions {
            assignment.add_partition_offset(&topic, p, Offset::Beginning).expect("valid offset");
        }
        consumer.assign(&assignment).expect("assign");
        let mut pending: BTreeSet<i32> = (0..partitions).collect();
        let mut records: BTreeMap<i32, Vec<Consumed>> =
            (0..partitions).map(|p| (p, Vec::new())).collect();
        let started = Instant::now();
        while !pending.is_empty() {
            assert!(
                started.elapsed() < DEADLINE,
                "reading {topic}: partitions {pending:?} did not reach their end in {DEADLINE:?}"
            );
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Ok(m)) => records.entry(m.partition()).or_default().push(Consumed::from(&m)),
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    pending.remove(&p);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
            }
        }
        records
    })
    .await
    .expect("reader thread")
}

/// Reads exactly the records of `partition` with `from <= offset < until`, by `assign` at
/// `from` (a seek), stopping as soon as the position reaches `until` even across offset gaps.
/// Returns fewer records only when the partition ends before `until`.
pub async fn read_range(topic: &str, partition: i32, from: i64, until: i64) -> Vec<Consumed> {
    if from >= until {
        return Vec::new();
    }
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer = judge_consumer(shared(), Isolation::ReadCommitted);
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&topic, partition, Offset::Offset(from)).expect("offset");
        consumer.assign(&assignment).expect("assign");
        let mut records = Vec::new();
        let started = Instant::now();
        loop {
            assert!(started.elapsed() < DEADLINE, "reading {topic}-{partition}[{from}, {until})");
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Ok(m)) => {
                    if m.offset() >= until {
                        break;
                    }
                    records.push(Consumed::from(&m));
                    if m.offset() + 1 >= until {
                        break;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => panic!("reading {topic}-{partition}: {e}"),
            }
        }
        records
    })
    .await
    .expect("reader thread")
}

/// `(low, high)` watermarks of one partition.
pub fn watermarks(topic: &str, partition: i32) -> (i64, i64) {
    let consumer: BaseConsumer = client_config().create().expect("watermark client");
    consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("watermarks of {topic}-{partition}: {e}"))
}

/// Queues `record` on a threaded producer, waiting while librdkafka's local queue is full.
pub fn send_when_room<'a, K, P, C>(
    producer: &rdkafka::producer::ThreadedProducer<C>,
    mut record: rdkafka::producer::BaseRecord<'a, K, P, C::DeliveryOpaque>,
) -> Result<(), KafkaError>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
    C: rdkafka::producer::ProducerContext,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

fn admin() -> AdminClient<DefaultClientContext> {
    client_config().create().expect("admin client for the test broker")
}

/// `DeleteRecords`: removes every record of `topic`-`partition` below `before`, as retention
/// would. Returns the partition's new log start.
pub async fn delete_records_before(topic: &str, partition: i32, before: i64) -> i64 {
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(topic, partition, Offset::Offset(before)).expect("offset");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let result = admin().delete_records(&offsets, &options).await.expect("DeleteRecords request");
    let element = result.elements().into_iter().next().expect("one partition");
    if let Err(e) = element.error() {
        panic!("DeleteRecords on {topic}-{partition} failed: {e}");
    }
    let (low, _) = watermarks(topic, partition);
    assert_eq!(low, before, "the log of {topic}-{partition} starts at {before} now");
    low
}

/// Grows `topic` to `partitions` partitions and waits until each has a leader.
pub async fn add_partitions(topic: &str, partitions: i32) {
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let new = rdkafka::admin::NewPartitions::new(topic, partitions as usize);
    let results = admin().create_partitions([&new], &options).await.expect("CreatePartitions");
    for result in results {
        if let Err((topic, code)) = result {
            panic!("adding partitions to {topic} failed: {code}");
        }
    }
    let consumer: BaseConsumer = client_config().create().expect("metadata client");
    let started = Instant::now();
    while partition_count(&consumer, topic) < partitions {
        assert!(started.elapsed() < DEADLINE, "{topic} did not grow to {partitions} partitions");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deletes `topic` and waits until the cluster no longer lists it.
pub async fn delete_topic(topic: &str) {
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin().delete_topics(&[topic], &options).await.expect("DeleteTopics request");
    for result in results {
        if let Err((topic, code)) = result {
            panic!("deleting topic {topic} failed: {code}");
        }
    }
    let consumer: BaseConsumer = client_config().create().expect("metadata client");
    let started = Instant::now();
    loop {
        let listed = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .map(|m| m.topics().iter().any(|t| t.name() == topic))
            .unwrap_or(true);
        if !listed {
            return;
        }
        assert!(started.elapsed() < DEADLINE, "topic {topic} still listed after deletion");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
