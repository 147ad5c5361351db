use std::time::Duration;

use weir_tests::job::{JobFixture, id_counts};
use weir_tests::kafka;

/// 100,000 records over 8 partitions through 2 executors: every record arrives, once, with its
/// key and payload, and etcd's offsets reach the end of every input partition.
#[tokio::test]
async fn every_record_of_8_partitions_arrives_through_2_executors() {
    let mut job = JobFixture::new("pipeline-100k", 8, "").await;
    let produced = kafka::produce_ids(&job.input, 8, 100_000).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.start_executor("ex-2");
    job.wait_committed(&job.input.clone(), 100_000, Duration::from_secs(90)).await;

    let output = kafka::read_committed(&job.output).await;
    let counts = id_counts(&output);
    assert_eq!(counts.len(), produced.len(), "distinct ids in the output");
    assert!(counts.values().all(|&n| n == 1), "a record arrived twice without any fault");
    let record = output.values().flatten().find(|r| r.id() == Some(4242)).expect("record 4242");
    assert_eq!(record.payload.as_deref(), Some(kafka::record_payload(4242).as_bytes()));
    let driver_log = job.supervisor.log("driver");
    assert!(driver_log.contains("Batch committed"), "one summary line per batch:\n{driver_log}");
    for ex in ["ex-1", "ex-2"] {
        assert!(driver_log.contains(&format!("executor={ex}")), "{ex} took part");
    }
}

/// SIGTERM on the driver: it stops planning, lets the batches in flight commit and exits 0,
/// leaving no recorded-but-uncommitted batch in etcd; the output holds exactly what etcd says
/// was committed.
#[tokio::test]
async fn sigterm_on_the_driver_leaves_no_uncommitted_batch() {
    let mut job = JobFixture::new("pipeline-sigterm", 4, "").await;
    kafka::produce_ids(&job.input, 4, 40_000).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.supervisor.wait_for_log("driver", "Batch recorded", Duration::from_secs(30)).await;
    let status = job.supervisor.terminate("driver", Duration::from_secs(60)).await;
    assert!(status.success(), "driver exit: {status}\n{}", job.supervisor.log("driver"));

    assert_eq!(
        job.uncommitted_batches().await,
        Vec::<u64>::new(),
        "uncommitted batches left in etcd"
    );
    let committed = job.committed_records(&job.input).await;
    assert!(committed > 0, "the batch in flight was committed");
    let output = kafka::read_committed(&job.output).await;
    let counts = id_counts(&output);
    assert_eq!(counts.len() as i64, committed, "output records vs committed offsets");
}

/// Records a transform rejects go to the dead-letter topic, unchanged, with the reason in a
/// header; the others are cleaned (filtered, fields dropped and renamed, keyed by a field).
#[tokio::test]
async fn malformed_records_go_to_dead_letters_and_the_rest_are_cleaned() {
    let transform = |dlq: &str| {
        format!(
            r#"[transform]
on_record_error = "dead-letter"
dead_letter_topic = "{dlq}"
steps = [
  {{ type = "parse_json" }},
  {{ type = "filter", field = "type", not_equals = "heartbeat" }},
  {{ type = "drop", fields = ["debug"] }},
  {{ type = "rename", fields = {{ ts = "timestamp" }} }},
  {{ type = "key_from_field", field = "user" }},
]"#
        )
    };
    let mut job = JobFixture::new("pipeline-dead-letters", 2, "").await;
    let dlq = job.names.topic("dead");
    kafka::create_topic(&dlq, 1).await;
    job.write_config(&format!("topics = [\"{}\"]", job.input), &transform(&dlq));
    // 400 events: every 10th is not JSON; a quarter of the rest are heartbeats.
    let producer = weir_tests::binaries::path("weir-kafka");
    let out = std::process::Command::new(producer)
        .args(["produce", &job.input, "400", "--events", "--malformed-every", "10"])
        .output()
        .expect("run weir-kafka");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    job.start_driver();
    job.start_executor("ex-1");
    job.wait_committed(&job.input.clone(), 400, Duration::from_secs(60)).await;

    let dead = kafka::read_committed(&dlq).await;
    let dead: Vec<_> = dead.values().flatten().collect();
    assert_eq!(dead.len(), 40, "one dead letter per malformed record");
    for d in &dead {
        let payload = String::from_utf8_lossy(d.payload.as_deref().unwrap_or_default());
        assert!(payload.starts_with("not json #"), "dead letter unchanged: {payload}");
        let reason = d.header("weir.error").expect("reason header");
        assert!(reason.contains("not valid JSON"), "reason: {reason}");
    }
    let clean = kafka::read_committed(&job.output).await;
    let clean: Vec<_> = clean.values().flatten().collect();
    // Ids 0..400 minus the 40 malformed (i % 10 == 9), minus heartbeats (i % 4 == 2).
    let expected = (0..400u64).filter(|i| i % 10 != 9 && i % 4 != 2).count();
    assert_eq!(clean.len(), expected);
    for r in &clean {
        let v: serde_json::Value = serde_json::from_slice(r.payload.as_deref().unwrap()).unwrap();
        assert!(
            v.get("debug").is_none() && v.get("ts").is_none() && v.get("timestamp").is_some(),
            "{v}"
        );
        assert_ne!(v["type"], "heartbeat");
        assert_eq!(
            r.key.as_deref(),
            Some(v["user"].as_str().unwrap().as_bytes()),
            "key from field"
        );
    }
}

/// The file sink: one complete file per task range, named by the range, holding every record's
/// payload on its own line; no temporary file is left behind.
#[tokio::test]
async fn the_file_sink_writes_one_complete_file_per_range() {
    let mut job = JobFixture::new("pipeline-file-sink", 4, "").await;
    let dir = job.supervisor.log_dir().join("out");
    let sink = format!("type = \"file\"\npath = \"{}\"", dir.display());
    job.write_config_with_sink(&format!("topics = [\"{}\"]", job.input), &sink, "");
    kafka::produce_ids(&job.input, 4, 20_000).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.wait_committed(&job.input.clone(), 20_000, Duration::from_secs(60)).await;

    let mut lines = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(name.starts_with(&job.input) && name.ends_with(".jsonl"), "unexpected file {name}");
        let text = std::fs::read_to_string(dir.join(&name)).unwrap();
        lines.extend(text.lines().map(str::to_owned));
    }
    let mut expected: Vec<String> = (0..20_000).map(kafka::record_payload).collect();
    expected.sort();
    lines.sort();
    assert_eq!(lines, expected);
}

/// The stdout sink: every payload on its own line of the executor's standard output.
#[tokio::test]
async fn the_stdout_sink_prints_every_payload() {
    let mut job = JobFixture::new("pipeline-stdout-sink", 2, "").await;
    job.write_config_with_sink(&format!("topics = [\"{}\"]", job.input), "type = \"stdout\"", "");
    kafka::produce_ids(&job.input, 2, 1_000).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.wait_committed(&job.input.clone(), 1_000, Duration::from_secs(60)).await;
    // The output is flushed before the task is reported, so it is in the log once committed.
    let log = job.supervisor.log("ex-1");
    let mut printed: Vec<&str> = log.lines().filter(|l| l.starts_with("{\"id\":")).collect();
    printed.sort();
    let mut expected: Vec<String> = (0..1_000).map(kafka::record_payload).collect();
    expected.sort();
    assert_eq!(printed, expected);
}

/// Records written while the job runs, in many small writes between and during batches, all
/// arrive: a reader never takes an old end-of-partition event for the end of its range.
#[tokio::test]
async fn records_written_while_the_job_runs_all_arrive() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let mut job = JobFixture::new("pipeline-trickle", 2, "").await;
    job.start_driver();
    job.start_executor("ex-1");
    job.supervisor.wait_for_log("driver", "Executor attached", Duration::from_secs(30)).await;
    let producer: FutureProducer =
        kafka::client_config().set("linger.ms", "0").create().expect("producer");
    for id in 0..1_000u64 {
        let (key, payload) = (kafka::record_key(id), kafka::record_payload(id));
        let record =
            FutureRecord::to(&job.input).key(&key).payload(&payload).partition((id % 2) as i32);
        producer.send(record, Duration::from_secs(10)).await.expect("delivered");
        if id % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    job.wait_committed(&job.input.clone(), 1_000, Duration::from_secs(60)).await;
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), (0..1_000).collect::<Vec<_>>());
}
