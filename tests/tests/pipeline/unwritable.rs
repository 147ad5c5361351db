//! Records the output topic refuses: one larger than its `max.message.bytes`, one whose
//! timestamp is further ahead than its `message.timestamp.after.max.ms`, and, with
//! `sink.partitioning = "same-as-input"`, records of an input partition the output topic does not
//! have. Each follows `transform.on_record_error` (dead letter with the reason, skip and count,
//! or stop once naming the record) under every guarantee, and the records around them arrive:
//! never a loop of replays.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use weir_common::health::get;
use weir_tests::job::{JobFixture, free_port, id_counts};
use weir_tests::kafka;
use weir_tests::metrics::sample;

const LIMIT: Duration = Duration::from_secs(60);
/// The test record larger than a topic takes by default (1048588 bytes).
const BIG: usize = 1_200_000;
const HOUR_MS: i64 = 3_600_000;

fn admin() -> AdminClient<DefaultClientContext> {
    kafka::client_config().create().expect("admin client")
}

fn options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))
}

/// Creates `name` with `partitions` and `configs` (the broker's defaults for the rest), and
/// waits for leaders.
async fn create_topic(name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    for result in admin().create_topics([&topic], &options()).await.expect("CreateTopics") {
        result.unwrap_or_else(|(topic, code)| panic!("creating {topic}: {code}"));
    }
    let consumer: BaseConsumer = kafka::client_config().create().expect("metadata client");
    for _ in 0..600 {
        let metadata = consumer.fetch_metadata(Some(name), Duration::from_secs(5));
        let ready = metadata.is_ok_and(|m| {
            m.topics().iter().any(|t| {
                t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            })
        });
        if ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("topic {name} has no leaders");
}

/// Lets the job's input topic hold what the test writes: records up to 3 MB, timestamps up to
/// a day ahead (Kafka 4's default refuses more than an hour ahead).
async fn open_up_input(topic: &str) {
    let alter = AlterConfig::new(ResourceSpecifier::Topic(topic))
        .set("max.message.bytes", "3000000")
        .set("message.timestamp.after.max.ms", "86400000");
    for result in admin().alter_configs([&alter], &options()).await.expect("AlterConfigs") {
        result.unwrap_or_else(|(resource, code)| panic!("altering {resource:?}: {code}"));
    }
    // The broker applies a config change shortly after it answers.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// What a test writes to the input, in order, to one partition.
enum Input {
    /// Ordinary records with these ids (key `id-N`, payload `{"id":N}`).
    Ids(std::ops::Range<u64>),
    /// One record of [`BIG`] bytes, key `big`.
    Big,
    /// One small record, key `future`, stamped two hours ahead.
    Future,
}

/// Writes `inputs` to `topic`'s `partition`, in order; returns the records written.
async fn produce(topic: &str, partition: i32, inputs: &[Input]) -> i64 {
    let producer: FutureProducer = kafka::client_config()
        .set("enable.idempotence", "true")
        .set("message.max.bytes", "3000000")
        .create()
        .expect("producer");
    let big = vec![b'x'; BIG];
    let mut written = 0;
    for input in inputs {
        let records: Vec<(String, Vec<u8>, Option<i64>)> = match input {
            Input::Ids(ids) => ids
                .clone()
                .map(|id| (kafka::record_key(id), kafka::record_payload(id).into_bytes(), None))
                .collect(),
            Input::Big => vec![("big".to_owned(), big.clone(), None)],
            Input::Future => {
                vec![("future".to_owned(), b"{}".to_vec(), Some(now_ms() + 2 * HOUR_MS))]
            }
        };
        for (key, payload, timestamp) in records {
            let mut record =
                FutureRecord::to(topic).key(&key).payload(&payload).partition(partition);
            if let Some(ts) = timestamp {
                record = record.timestamp(ts);
            }
            producer
                .send(record, Duration::from_secs(30))
                .await
                .unwrap_or_else(|(e, _)| panic!("producing {key} to {topic}: {e}"));
            written += 1;
        }
    }
    written
}

fn dead_letter_transform(topic: &str) -> String {
    format!("[transform]\non_record_error = \"dead-letter\"\ndead_letter_topic = \"{topic}\"\n")
}

/// A Kafka sink to `topic` under `guarantee`; the producer may queue records up to 3 MB, so the
/// topic's own limit is the one that refuses the big record.
fn sink(topic: &str, guarantee: &str, partitioning: &str) -> String {
    format!(
        "type = \"kafka\"\ntopic = \"{topic}\"\nguarantee = \"{guarantee}\"\n\
         partitioning = \"{partitioning}\"\n[sink.kafka]\n\"message.max.bytes\" = \"3000000\""
    )
}

/// Waits until `topic` holds `count` committed records: at-most-once commits each batch before
/// it runs, so its offsets in etcd do not say the output is written.
async fn wait_for_records(topic: &str, count: usize) {
    let started = std::time::Instant::now();
    loop {
        let now: usize = kafka::read_committed(topic).await.values().map(Vec::len).sum();
        if now >= count {
            return;
        }
        assert!(started.elapsed() < LIMIT, "only {now} of {count} records in {topic}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn stop_and_clean(mut job: JobFixture, topics: &[&str]) {
    let _ = job.supervisor.terminate("driver", Duration::from_secs(30)).await;
    let _ = job.supervisor.terminate("ex-1", Duration::from_secs(30)).await;
    for topic in topics {
        kafka::delete_topic(topic).await;
    }
}

/// The three refusals in one job: partition 0 carries a big record and a future one among
/// ordinary records; partition 1 has no partner in the one-partition output topic. Every
/// refused record is dead-lettered once with its reason, the big one without its payload (the
/// dead-letter topic cannot hold it either) and the future one stamped now; every other record
/// of partition 0 arrives, once under exactly-once (judged by a `read_committed` reader).
async fn refused_records_go_to_the_dead_letters(guarantee: &str) {
    let mut job = JobFixture::new(&format!("unwritable-{guarantee}"), 2, "").await;
    let (input, narrow, dead) =
        (job.input.clone(), job.names.topic("narrow"), job.names.topic("dead"));
    create_topic(&narrow, 1, &[]).await;
    create_topic(&dead, 1, &[]).await;
    open_up_input(&input).await;
    let mut written = produce(
        &input,
        0,
        &[
            Input::Ids(0..100),
            Input::Big,
            Input::Ids(100..150),
            Input::Future,
            Input::Ids(150..200),
        ],
    )
    .await;
    written += produce(&input, 1, &[Input::Ids(1_000..1_100)]).await;
    let topics = format!("topics = [\"{input}\"]");
    let sink = sink(&narrow, guarantee, "same-as-input");
    job.write_config_with_sink(&topics, &sink, &dead_letter_transform(&dead));
    job.start_driver();
    job.start_executor("ex-1");
    job.progress().await.wait_committed(&input, written, LIMIT, Some(&mut job.supervisor)).await;
    wait_for_records(&narrow, 200).await;
    wait_for_records(&dead, 102).await;

    let counts = id_counts(&kafka::read_committed(&narrow).await);
    assert_eq!(counts.len(), 200, "every record of partition 0 but the refused two arrived");
    assert!(counts.keys().all(|&id| id < 200), "none of partition 1");
    if guarantee == "exactly-once" {
        assert!(counts.values().all(|&n| n == 1), "each once");
    }
    let letters: Vec<kafka::Consumed> =
        kafka::read_committed(&dead).await.into_values().flatten().collect();
    let key = |letter: &kafka::Consumed| {
        String::from_utf8_lossy(letter.key.as_deref().unwrap_or_default()).into_owned()
    };
    let reason = |letter: &kafka::Consumed| letter.header("weir.error").expect("a reason");
    assert_eq!(
        letters.len(),
        102,
        "each refused record once: {:?}",
        letters.iter().map(key).collect::<Vec<_>>()
    );

    let big: Vec<_> = letters.iter().filter(|l| key(l) == "big").collect();
    assert_eq!(big.len(), 1);
    let expected = format!(
        "record of {} bytes is larger than topic {narrow}'s max.message.bytes 1048588",
        BIG + 3 + 36 + 61
    );
    assert!(reason(big[0]).starts_with(&expected), "{}", reason(big[0]));
    assert_eq!(big[0].payload, None, "the dead-letter topic cannot hold the payload");
    assert_eq!(big[0].header("weir.payload.bytes").as_deref(), Some("1200000"));

    let future: Vec<_> = letters.iter().filter(|l| key(l) == "future").collect();
    assert_eq!(future.len(), 1);
    assert!(reason(future[0]).contains("message.timestamp.after.max.ms"), "{}", reason(future[0]));
    assert_eq!(future[0].payload.as_deref(), Some(&b"{}"[..]), "unchanged");
    assert!(future[0].header("weir.timestamp").is_some(), "its own timestamp kept in a header");

    let strays: Vec<_> = letters.iter().filter(|l| l.id().is_some()).collect();
    assert_eq!(strays.len(), 100);
    for letter in strays {
        let expected = format!("topic {narrow} has no partition 1, only 1");
        assert!(reason(letter).starts_with(&expected), "{}", reason(letter));
    }
    let executor = job.supervisor.log("ex-1");
    assert!(!executor.contains("Task failed"), "no task failed:\n{executor}");
    stop_and_clean(job, &[&input, &narrow, &dead]).await;
}

#[tokio::test]
async fn refused_records_go_to_the_dead_letters_exactly_once() {
    refused_records_go_to_the_dead_letters("exactly-once").await;
}

#[tokio::test]
async fn refused_records_go_to_the_dead_letters_at_least_once() {
    refused_records_go_to_the_dead_letters("at-least-once").await;
}

#[tokio::test]
async fn refused_records_go_to_the_dead_letters_at_most_once() {
    refused_records_go_to_the_dead_letters("at-most-once").await;
}

/// `on_record_error = "fail"`: the job stops at the first attempt, naming the record and the
/// limit, and nothing past it is committed.
#[tokio::test]
async fn a_record_too_large_for_the_output_stops_the_job_once_when_errors_fail() {
    let mut job = JobFixture::new("unwritable-fail", 1, "").await;
    let input = job.input.clone();
    open_up_input(&input).await;
    produce(&input, 0, &[Input::Ids(0..10), Input::Big, Input::Ids(10..20)]).await;
    let topics = format!("topics = [\"{input}\"]");
    job.write_config_with_sink(&topics, &sink(&job.output, "exactly-once", "key"), "");
    job.start_driver();
    job.start_executor("ex-1");
    let status = job.supervisor.wait_exit("driver", LIMIT).await;
    let log = job.supervisor.log("driver");
    assert!(status.is_some_and(|s| !s.success()), "the job stops: {log}");
    let named = format!(
        "record {input}-0@10 rejected: record of {} bytes is larger than topic {}'s max.message.bytes 1048588",
        BIG + 3 + 36 + 61,
        job.output
    );
    assert!(log.contains(&named), "{named}\n{log}");
    let executor = job.supervisor.log("ex-1");
    assert_eq!(
        executor.matches(&format!("{input}-0@10 rejected")).count(),
        1,
        "one attempt:\n{executor}"
    );
    assert_eq!(job.committed_records(&input).await, 0, "nothing committed past the record");
    let output = job.output.clone();
    stop_and_clean(job, &[&input, &output]).await;
}

/// `on_record_error = "skip"`: the refused record is counted in
/// `weir_driver_records_rejected_total`, and the others arrive.
#[tokio::test]
async fn a_record_with_a_refused_timestamp_is_skipped_and_counted() {
    let mut job = JobFixture::new("unwritable-skip", 1, "").await;
    let input = job.input.clone();
    let http = format!("127.0.0.1:{}", free_port());
    job.http_listen = http.clone();
    open_up_input(&input).await;
    let written =
        produce(&input, 0, &[Input::Ids(0..50), Input::Future, Input::Ids(50..100)]).await;
    let topics = format!("topics = [\"{input}\"]");
    job.write_config(&topics, "[transform]\non_record_error = \"skip\"\n");
    job.start_driver();
    job.start_executor("ex-1");
    job.progress().await.wait_committed(&input, written, LIMIT, Some(&mut job.supervisor)).await;

    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 100, "every record but the refused one");
    // The driver counts a batch's rejects as it commits the batch.
    let started = std::time::Instant::now();
    loop {
        let (code, metrics) =
            get(&http, "/metrics", Duration::from_secs(5)).await.expect("/metrics");
        assert_eq!(code, 200);
        let rejected = sample(&metrics, "weir_driver_records_rejected_total");
        if rejected == Some(1.0) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "rejected: {rejected:?}\n{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = job.output.clone();
    stop_and_clean(job, &[&input, &output]).await;
}

/// An output topic with a small `max.message.bytes` (16 KiB) takes a backlog of small records:
/// the producers' batches are made to fit it (librdkafka's default batch is 1 MB, which such a
/// topic refuses whole, however small its records), under both kinds of producer.
#[tokio::test]
async fn small_records_fill_batches_a_topic_with_a_small_limit_takes() {
    for guarantee in ["at-least-once", "exactly-once"] {
        let mut job = JobFixture::new(&format!("small-limit-{guarantee}"), 2, "").await;
        let (input, small) = (job.input.clone(), job.names.topic("small"));
        create_topic(&small, 2, &[("max.message.bytes", "16384")]).await;
        kafka::produce_ids(&input, 2, 20_000).await;
        let topics = format!("topics = [\"{input}\"]");
        let sink = format!("type = \"kafka\"\ntopic = \"{small}\"\nguarantee = \"{guarantee}\"");
        job.write_config_with_sink(&topics, &sink, "");
        job.start_driver();
        job.start_executor("ex-1");
        job.progress().await.wait_committed(&input, 20_000, LIMIT, Some(&mut job.supervisor)).await;
        let counts = id_counts(&kafka::read_committed(&small).await);
        assert_eq!(counts.len(), 20_000, "{guarantee}: every record arrived");
        let output = job.output.clone();
        stop_and_clean(job, &[&input, &output, &small]).await;
    }
}
