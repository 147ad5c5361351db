//! A backlog of 5 million records under exactly-once, run with the shipped example config
//! (`deploy/examples/clean-events.toml`: parse, filter, drop, rename, re-key, dead letters) and a
//! `transaction_timeout` of 10 s. Before, the first batch after a start took the whole backlog
//! as one transaction per task; the broker aborted each at the timeout and every replay met the
//! same batch: the job wedged. Now the first batches are bounded by the default initial rate and
//! a long task commits in steps. The job must drain, and every record must arrive once.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use weir_tests::job::{JobFixture, free_port};
use weir_tests::scenario::one_at_a_time;
use weir_tests::{binaries, kafka};

const RECORDS: u64 = 5_000_000;
const PARTITIONS: i32 = 4;
/// `weir-kafka produce --malformed-every` (as the demo): every 50th record is not JSON.
const MALFORMED_EVERY: u64 = 50;

#[tokio::test]
async fn five_million_records_of_backlog_drain_under_exactly_once_with_the_example_config() {
    let _alone = one_at_a_time().await;
    let mut job = JobFixture::new("faults-backlog", PARTITIONS, "").await;
    let dead = job.names.topic("dead");
    kafka::create_topic(&dead, 1).await;
    job.http_listen = format!("127.0.0.1:{}", free_port());
    std::fs::write(&job.config_path, example_config(&job, &dead)).expect("write the config");

    let started = Instant::now();
    let produce = Command::new(binaries::path("weir-kafka"))
        .args(["produce", &job.input, &RECORDS.to_string(), "--events"])
        .args(["--malformed-every", &MALFORMED_EVERY.to_string()])
        .env("WEIR_KAFKA_BROKERS", &job.brokers)
        .status()
        .expect("run weir-kafka");
    assert!(produce.success(), "weir-kafka produce failed");
    let produced_in = started.elapsed();

    let started = Instant::now();
    job.start_driver();
    job.start_executor("ex-1");
    job.start_executor("ex-2");
    let mut progress = job.progress().await;
    let limit = Duration::from_secs(900);
    progress.wait_committed(&job.input, RECORDS as i64, limit, Some(&mut job.supervisor)).await;
    let drained_in = started.elapsed();

    // The first batch after the start took the default initial rate, not the backlog.
    let driver_log = job.supervisor.log("driver");
    let first =
        driver_log.lines().find(|l| l.contains("Batch committed batch=1 ")).expect("batch 1");
    let records_in: u64 = field(first, "records_in").expect("records_in");
    let bound = weir_common::config::DEFAULT_INITIAL_RATE_PER_PARTITION * PARTITIONS as u64;
    assert!(records_in <= bound, "batch 1 took {records_in} records: {first}");
    let batches = driver_log.matches("Batch committed").count();

    // Every JSON record but the heartbeats arrives once; every malformed one is a dead letter.
    let is_malformed = |i: u64| i % MALFORMED_EVERY == MALFORMED_EVERY - 1;
    let is_heartbeat = |i: u64| i % 4 == 2;
    let output = ids(&kafka::read_committed(&job.output).await, payload_id);
    let expected = (0..RECORDS).filter(|&i| !is_malformed(i) && !is_heartbeat(i)).count();
    assert_eq!(output.len(), expected, "distinct records in the output");
    let twice: Vec<_> = output.iter().filter(|&(_, &n)| n > 1).take(5).collect();
    assert!(twice.is_empty(), "records written twice: {twice:?}");
    assert!(output.keys().all(|&i| !is_malformed(i) && !is_heartbeat(i)));
    let dead_letters = ids(&kafka::read_committed(&dead).await, |c| c.id());
    let malformed = (0..RECORDS).filter(|&i| is_malformed(i)).count();
    assert_eq!(dead_letters.len(), malformed, "distinct dead letters");
    assert!(dead_letters.values().all(|&n| n == 1), "a dead letter written twice");

    println!("\n| records | produced in | drained in (start to last commit) | batches |");
    println!("|---:|---:|---:|---:|");
    println!(
        "| {RECORDS} | {:.1} s | {:.1} s | {batches} |",
        produced_in.as_secs_f64(),
        drained_in.as_secs_f64()
    );
}

/// The example config with this test's topics, services and ports, and a 10 s transaction
/// timeout. Each substitution is checked, so a change to the example fails here.
fn example_config(job: &JobFixture, dead: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples/clean-events.toml");
    let mut text = std::fs::read_to_string(path).expect("the example config");
    let etcd: Vec<String> = job.etcd_endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    for (from, to) in [
        ("name = \"clean-events\"".to_owned(), format!("name = \"{}\"", job.names.job)),
        ("topics = [\"raw-events\"]".to_owned(), format!("topics = [\"{}\"]", job.input)),
        ("topic = \"clean-events\"".to_owned(), format!("topic = \"{}\"", job.output)),
        (
            "dead_letter_topic = \"raw-events-dead-letters\"".to_owned(),
            format!("dead_letter_topic = \"{dead}\""),
        ),
        ("brokers = \"127.0.0.1:9092\"".to_owned(), format!("brokers = \"{}\"", job.brokers)),
        ("etcd = [\"http://127.0.0.1:2379\"]".to_owned(), format!("etcd = [{}]", etcd.join(", "))),
        ("prefix = \"/weir\"".to_owned(), format!("prefix = \"{}\"", job.prefix)),
        (
            "grpc_listen = \"127.0.0.1:7070\"".to_owned(),
            format!("grpc_listen = \"127.0.0.1:{}\"", job.grpc_port),
        ),
        (
            "http_listen = \"127.0.0.1:7071\"".to_owned(),
            format!("http_listen = \"{}\"", job.http_listen),
        ),
        ("# transaction_timeout = \"60s\"".to_owned(), "transaction_timeout = \"10s\"".to_owned()),
    ] {
        assert!(text.contains(&from), "the example no longer has {from}");
        text = text.replacen(&from, &to, 1);
    }
    text
}

/// The value of `key=` in a log line.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// How often each id appears in `records`, by `id_of`.
fn ids(
    records: &BTreeMap<i32, Vec<kafka::Consumed>>,
    id_of: impl Fn(&kafka::Consumed) -> Option<u64>,
) -> BTreeMap<u64, u32> {
    let mut counts = BTreeMap::new();
    for record in records.values().flatten() {
        let id = id_of(record).unwrap_or_else(|| panic!("a record without an id: {record:?}"));
        *counts.entry(id).or_default() += 1;
    }
    counts
}

/// The `"id"` field of an output record's JSON payload.
fn payload_id(record: &kafka::Consumed) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(record.payload.as_deref()?).ok()?;
    value["id"].as_u64()
}
