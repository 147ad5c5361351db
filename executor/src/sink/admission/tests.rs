use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use weir_common::Header;

use super::*;

const NOW: i64 = 1_750_000_000_000;
const HOUR: i64 = 3_600_000;
const PRODUCER: ProducerLimits = ProducerLimits { message_max_bytes: 1_000_000, compressed: false };

fn kafka4_topic(partitions: i32) -> TopicLimits {
    TopicLimits {
        max_message_bytes: Some(1_048_588),
        timestamps: Timestamps::CreateTime { before_max_ms: None, after_max_ms: Some(HOUR) },
        partitions: Some(partitions),
    }
}

fn rules(limits: TopicLimits) -> Rules {
    Rules { topic: "out".to_owned(), limits, producer: PRODUCER }
}

fn record(payload: &[u8]) -> Record<'_> {
    Record { timestamp_ms: Some(NOW), ..Record::with_payload("in", 0, 7, payload) }
}

#[test]
fn a_record_is_measured_as_librdkafka_measures_it() {
    assert_eq!(record_bytes(&record(b"12345"), &[]), 36 + 5);
    let mut keyed = record(b"12345");
    keyed.key = Some(Cow::Borrowed(b"abc"));
    // A header: its name and value, each after a zigzag varint of its length.
    keyed.headers =
        vec![Header { key: Cow::Borrowed("trace"), value: Some(Cow::Borrowed(b"t-1")) }];
    assert_eq!(record_bytes(&keyed, &[]), 36 + 3 + 5 + (1 + 5 + 1 + 3));
    keyed.headers[0].value = None;
    assert_eq!(record_bytes(&keyed, &[]), 36 + 3 + 5 + (1 + 5 + 1));
    let reason = vec![b'r'; 100];
    assert_eq!(record_bytes(&keyed, &[("weir.error", &reason)]), 36 + 8 + 7 + (1 + 10 + 2 + 100));
    for (n, bytes) in [(0, 1), (63, 1), (64, 2), (8_191, 2), (8_192, 3), (1_200_000, 4)] {
        assert_eq!(varint_bytes(n), bytes, "{n}");
    }
}

#[test]
fn a_record_larger_than_the_topic_takes_is_refused_naming_the_limit() {
    let rules = rules(kafka4_topic(1));
    let mut producer = PRODUCER;
    producer.message_max_bytes = 2_000_000;
    let rules = Rules { producer, ..rules };
    let big = vec![b'x'; 1_200_000];
    let refusal = rules.refusal(&record(&big), &[], None, NOW).expect("refused");
    assert_eq!(
        refusal,
        Refusal::TopicSize { topic: "out".into(), bytes: 1_200_000 + 97, limit: 1_048_588 }
    );
    assert_eq!(
        refusal.to_string(),
        "record of 1200097 bytes is larger than topic out's max.message.bytes 1048588 \
         (key, value, headers and 97 bytes of batch framing)"
    );
    assert!(refusal.is_size() && !refusal.is_timestamp());

    // The edge: a batch of exactly max.message.bytes is taken, one byte more is not.
    let fits = vec![b'x'; 1_048_588 - 97];
    assert_eq!(rules.refusal(&record(&fits), &[], None, NOW), None);
    let over = vec![b'x'; 1_048_588 - 96];
    assert!(rules.refusal(&record(&over), &[], None, NOW).is_some());
}

#[test]
fn the_tighter_of_the_producer_and_topic_limits_is_named() {
    let big = vec![b'x'; 1_000_000];
    // librdkafka's default message.max.bytes is below the broker's default topic limit.
    let refusal = rules(kafka4_topic(1)).refusal(&record(&big), &[], None, NOW);
    assert_eq!(refusal, Some(Refusal::ProducerSize { bytes: 1_000_036, limit: 1_000_000 }));
    assert!(refusal.unwrap().to_string().contains("producer's message.max.bytes 1000000"));

    let mut small_topic = kafka4_topic(1);
    small_topic.max_message_bytes = Some(500_000);
    let refusal = rules(small_topic.clone()).refusal(&record(&big), &[], None, NOW);
    assert!(matches!(refusal, Some(Refusal::TopicSize { limit: 500_000, .. })), "{refusal:?}");

    // A compressing producer: the topic sees the compressed batch, so only the producer's
    // own limit is checked.
    let compressed = Rules {
        producer: ProducerLimits { message_max_bytes: 1_000_000, compressed: true },
        ..rules(small_topic)
    };
    let half = vec![b'x'; 600_000];
    assert_eq!(compressed.refusal(&record(&half), &[], None, NOW), None);
    assert!(compressed.refusal(&record(&big), &[], None, NOW).is_some_and(|r| r.is_size()));

    let unknown = rules(TopicLimits::unknown());
    assert_eq!(unknown.refusal(&record(&half), &[], Some(9), NOW), None, "nothing known");
    assert!(unknown.refusal(&record(&big), &[], None, NOW).is_some(), "the producer's limit");
}

#[test]
fn timestamps_outside_the_topics_bounds_are_refused_with_a_margin() {
    let rules = rules(kafka4_topic(1));
    let at = |ts: i64| Record { timestamp_ms: Some(ts), ..record(b"{}") };
    let refusal = rules.refusal(&at(NOW + 2 * HOUR), &[], None, NOW).expect("2 h ahead");
    assert_eq!(
        refusal,
        Refusal::TooNew {
            topic: "out".into(),
            timestamp_ms: NOW + 2 * HOUR,
            ahead_ms: 2 * HOUR,
            limit_ms: HOUR
        }
    );
    assert!(refusal.is_timestamp());
    assert_eq!(
        refusal.to_string(),
        format!(
            "record timestamp {} is 2h 0m 0s ahead of the clock; topic out takes at most \
             3600000 ms ahead (message.timestamp.after.max.ms)",
            NOW + 2 * HOUR
        )
    );
    assert_eq!(rules.refusal(&at(NOW + HOUR - 60_000), &[], None, NOW), None, "59 min ahead");
    // Within 10 s of the bound: a broker a little ahead, or a little later, could refuse it.
    assert!(rules.refusal(&at(NOW + HOUR - 5_000), &[], None, NOW).is_some());
    assert_eq!(rules.refusal(&at(NOW - 400 * 24 * HOUR), &[], None, NOW), None, "no lower bound");
    let unstamped = Record { timestamp_ms: None, ..record(b"{}") };
    assert_eq!(rules.refusal(&unstamped, &[], None, NOW), None, "the producer stamps it now");

    let mut old_limit = kafka4_topic(1);
    old_limit.timestamps =
        Timestamps::CreateTime { before_max_ms: Some(HOUR), after_max_ms: Some(HOUR) };
    let refusal = super::Rules { limits: old_limit, ..rules.clone() }
        .refusal(&at(NOW - 3 * HOUR), &[], None, NOW)
        .expect("3 h old");
    assert!(matches!(refusal, Refusal::TooOld { behind_ms, .. } if behind_ms == 3 * HOUR));
    assert!(refusal.to_string().contains("message.timestamp.before.max.ms"), "{refusal}");

    // A tiny bound keeps nine tenths of itself.
    let mut tiny = kafka4_topic(1);
    tiny.timestamps = Timestamps::CreateTime { before_max_ms: Some(1_000), after_max_ms: None };
    let tiny = super::Rules { limits: tiny, ..rules.clone() };
    assert_eq!(tiny.refusal(&at(NOW - 850), &[], None, NOW), None);
    assert!(tiny.refusal(&at(NOW - 950), &[], None, NOW).is_some());

    let mut log_append = kafka4_topic(1);
    log_append.timestamps = Timestamps::LogAppendTime;
    let log_append = super::Rules { limits: log_append, ..rules };
    assert_eq!(log_append.refusal(&at(NOW + 100 * HOUR), &[], None, NOW), None);
}

#[test]
fn a_partition_the_topic_does_not_have_is_refused() {
    let rules = rules(kafka4_topic(2));
    assert_eq!(rules.refusal(&record(b"{}"), &[], Some(1), NOW), None);
    let refusal = rules.refusal(&record(b"{}"), &[], Some(2), NOW).expect("no partition 2");
    assert_eq!(
        refusal.to_string(),
        "topic out has no partition 2, only 2 (sink.partitioning = \"same-as-input\")"
    );
    assert_eq!(rules.refusal(&record(b"{}"), &[], None, NOW), None, "the partitioner chooses");
}

#[test]
fn limits_are_read_from_the_topic_config_of_each_kafka_version() {
    let configs = |entries: &[(&'static str, &'static str)]| {
        let map: BTreeMap<&str, &str> = entries.iter().copied().collect();
        move |name: &str| map.get(name).copied()
    };
    let kafka4 = configs(&[
        ("max.message.bytes", "1048588"),
        ("message.timestamp.type", "CreateTime"),
        ("message.timestamp.before.max.ms", "9223372036854775807"),
        ("message.timestamp.after.max.ms", "3600000"),
    ]);
    assert_eq!(TopicLimits::from_configs(kafka4, Some(3)), kafka4_topic(3));

    let kafka3_5 = configs(&[
        ("max.message.bytes", "2000000"),
        ("message.timestamp.type", "CreateTime"),
        ("message.timestamp.difference.max.ms", "86400000"),
    ]);
    let limits = TopicLimits::from_configs(kafka3_5, None);
    assert_eq!(limits.max_message_bytes, Some(2_000_000));
    let day = Some(24 * HOUR);
    let both = Timestamps::CreateTime { before_max_ms: day, after_max_ms: day };
    assert_eq!(limits.timestamps, both);

    let log_append = configs(&[("message.timestamp.type", "LogAppendTime")]);
    assert_eq!(TopicLimits::from_configs(log_append, None).timestamps, Timestamps::LogAppendTime);
    assert_eq!(TopicLimits::from_configs(configs(&[]), None), TopicLimits::unknown());
}

#[test]
fn producer_limits_come_from_the_sink_properties() {
    let properties = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    assert_eq!(ProducerLimits::of(&properties(&[])), PRODUCER);
    let set = properties(&[("message.max.bytes", "3000000"), ("compression.type", "zstd")]);
    assert_eq!(
        ProducerLimits::of(&set),
        ProducerLimits { message_max_bytes: 3_000_000, compressed: true }
    );
    let none = properties(&[("compression.codec", "none")]);
    assert!(!ProducerLimits::of(&none).compressed);
}

/// A cluster whose topic changes under the gate; counts the reads.
struct Cluster {
    limits: Mutex<Result<TopicLimits, TaskError>>,
    config_reads: AtomicU32,
    partition_reads: AtomicU32,
}

impl Cluster {
    fn new(limits: Result<TopicLimits, TaskError>) -> Arc<Self> {
        Arc::new(Cluster {
            limits: Mutex::new(limits),
            config_reads: AtomicU32::new(0),
            partition_reads: AtomicU32::new(0),
        })
    }

    fn add_partitions(&self, partitions: i32) {
        if let Ok(limits) = &mut *self.limits.lock().unwrap() {
            limits.partitions = Some(partitions);
        }
    }
}

impl LimitReader for Cluster {
    fn limits(&self, _topic: &str) -> Result<TopicLimits, TaskError> {
        self.config_reads.fetch_add(1, Ordering::Relaxed);
        self.limits.lock().unwrap().clone()
    }
    fn partitions(&self, _topic: &str) -> Result<i32, TaskError> {
        self.partition_reads.fetch_add(1, Ordering::Relaxed);
        let limits = self.limits.lock().unwrap().clone()?;
        Ok(limits.partitions.unwrap_or(1))
    }
}

#[test]
fn a_gate_reads_the_topic_once_and_again_when_a_record_names_a_new_partition() {
    let cluster = Cluster::new(Ok(kafka4_topic(2)));
    let gate = TopicGate::new("out", Partitioning::SameAsInput, PRODUCER, cluster.clone());
    let mut task = gate.admission();
    let mut second = gate.admission();
    assert_eq!(cluster.config_reads.load(Ordering::Relaxed), 1, "read once, shared by tasks");
    let on = |partition: i32| Record { partition, ..record(b"{}") };
    assert_eq!(task.refusal(&on(1), &[]), None);

    // Partition 2 is refused; the count is read again, once a second at most.
    assert!(matches!(task.refusal(&on(2), &[]), Some(Refusal::NoPartition { .. })));
    assert_eq!(
        cluster.partition_reads.load(Ordering::Relaxed),
        0,
        "read with the configs just now"
    );
    cluster.add_partitions(4);
    assert!(second.refusal(&on(2), &[]).is_some(), "not read again within a second");
    assert_eq!(cluster.partition_reads.load(Ordering::Relaxed), 0);

    let gate = TopicGate { partitions_refresh: Duration::ZERO, ..gate };
    let mut task = gate.admission();
    assert_eq!(task.refusal(&on(2), &[]), None, "added partitions are seen");
    assert_eq!(task.refusal(&on(3), &[]), None);
    assert_eq!(cluster.partition_reads.load(Ordering::Relaxed), 1, "read once for both");
    assert!(task.refusal(&on(4), &[]).is_some());
}

#[test]
fn a_topic_whose_limits_cannot_be_read_is_checked_against_the_producer_only() {
    let denied = TaskError::config("Broker: Topic authorization failed");
    let cluster = Cluster::new(Err(denied));
    let gate = TopicGate::new("out", Partitioning::SameAsInput, PRODUCER, cluster.clone());
    let mut task = gate.admission();
    let future = Record { timestamp_ms: Some(NOW * 2), partition: 40, ..record(b"{}") };
    assert_eq!(task.refusal(&future, &[]), None, "unknown limits refuse nothing");
    let big = vec![b'x'; 1_000_000];
    assert!(task.refusal(&record(&big), &[]).is_some_and(|r| r.is_size()));
    let _again = gate.admission();
    assert_eq!(cluster.config_reads.load(Ordering::Relaxed), 1, "retried after 5 s, not at once");
}

#[test]
fn batches_fit_the_smallest_topic_a_producer_writes() {
    let topic = |max: u64| {
        let limits = TopicLimits { max_message_bytes: Some(max), ..kafka4_topic(1) };
        TopicGate::new("t", Partitioning::Key, PRODUCER, Cluster::new(Ok(limits)))
    };
    let (small, large) = (topic(200_000), topic(5_000_000));
    let mut config = ClientConfig::new();
    fit_batches(&mut config, &[&large, &small]);
    assert_eq!(config.get("batch.size"), Some("200000"));

    let mut config = ClientConfig::new();
    fit_batches(&mut config, &[&large]);
    assert_eq!(config.get("batch.size"), None, "librdkafka's 1000000 fits already");

    let mut config = ClientConfig::new();
    config.set("batch.size", "900000");
    fit_batches(&mut config, &[&small]);
    assert_eq!(config.get("batch.size"), Some("900000"), "the user's own setting stays");
}

#[test]
fn durations_read_as_people_write_them() {
    assert_eq!(human(900), "0s (900 ms)");
    assert_eq!(human(61_000), "1m 1s");
    assert_eq!(human(90_061_000), "25h 1m 1s");
}
