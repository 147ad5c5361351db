//! The three guarantees, each on its own deterministic path: exactly-once output and dead letters
//! read once with `read_committed`; a replayed batch whose transactions Kafka already committed is
//! not written again; progress that contradicts a range stops the job; at-most-once commits before
//! dispatch; the transaction timeout is checked against the broker; and every mode shows its
//! progress in the group `weir.{job}`, as Kafka's own `kafka-consumer-groups` tool reads it.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use weir_common::OffsetsCheckpoint;
use weir_common::protocol::JobKeys;
use weir_tests::job::{JobFixture, id_counts};
use weir_tests::{etcd, group, kafka};

fn sink(job: &JobFixture, guarantee: &str) -> String {
    format!(
        "type = \"kafka\"\ntopic = \"{}\"\npartitioning = \"same-as-input\"\nguarantee = \"{guarantee}\"",
        job.output
    )
}

fn topics(job: &JobFixture) -> String {
    format!("topics = [\"{}\"]", job.input)
}

async fn produce_malformed(topic: &str, count: usize) {
    let producer: FutureProducer = kafka::client_config().create().expect("producer");
    for i in 0..count {
        let key = format!("bad-{i}");
        let record = FutureRecord::to(topic).key(&key).payload("not json").partition(0);
        producer.send(record, Duration::from_secs(10)).await.expect("produce a malformed record");
    }
}

/// Exactly-once: every record once in the output and every reject once in the dead letters, both
/// written in the tasks' transactions; the group `weir.{job}` holds the input's end, so Kafka's
/// own tool shows lag 0.
#[tokio::test]
async fn exactly_once_writes_each_record_and_dead_letter_once_and_shows_lag_in_the_group() {
    let mut job = JobFixture::new("eo-basic", 4, "").await;
    let dlq = job.names.topic("dead");
    kafka::create_topic(&dlq, 1).await;
    let transform = format!(
        "[transform]\non_record_error = \"dead-letter\"\ndead_letter_topic = \"{dlq}\"\n\
         steps = [{{ type = \"parse_json\" }}]"
    );
    job.write_config_with_sink(&topics(&job), &sink(&job, "exactly-once"), &transform);
    kafka::produce_ids(&job.input, 4, 20_000).await;
    produce_malformed(&job.input, 100).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.start_executor("ex-2");
    job.wait_committed(&job.input.clone(), 20_100, Duration::from_secs(90)).await;

    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 20_000, "every record arrived");
    assert!(counts.values().all(|&n| n == 1), "no record twice");
    let dead: Vec<_> = kafka::read_committed(&dlq).await.into_values().flatten().collect();
    assert_eq!(dead.len(), 100, "each malformed record once in the dead letters");
    let log = job.supervisor.log("ex-1") + &job.supervisor.log("ex-2");
    assert!(log.contains("Lane producer initialised"), "transactional producers per lane: {log}");

    let group = format!("weir.{}", job.names.job);
    let committed = group::committed(&group, &job.input, 4);
    for p in 0..4 {
        let (_, end) = kafka::watermarks(&job.input, p);
        assert_eq!(committed.get(&p), Some(&end), "the group holds the end of partition {p}");
    }
    let table = group::describe_with_kafka_tool(&group);
    for p in 0..4 {
        let (current, end, lag) = group::tool_row(&table, &job.input, p)
            .unwrap_or_else(|| panic!("no row for partition {p} in:\n{table}"));
        assert_eq!((current, lag), (end, 0), "partition {p}:\n{table}");
    }
}

/// A batch whose tasks committed in Kafka but whose commit etcd never saw (the driver died in
/// between) is replayed after a restart; the executors find the group's progress at the end of
/// each range and report the tasks done without writing a record twice.
#[tokio::test]
async fn a_replayed_batch_already_committed_in_kafka_is_not_written_again() {
    let mut job = JobFixture::new("eo-replay", 2, "").await;
    job.write_config_with_sink(&topics(&job), &sink(&job, "exactly-once"), "");
    kafka::produce_ids(&job.input, 2, 5_000).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.wait_committed(&job.input.clone(), 5_000, Duration::from_secs(60)).await;
    job.supervisor.terminate("driver", Duration::from_secs(30)).await;
    job.supervisor.terminate("ex-1", Duration::from_secs(30)).await;

    // Rewind etcd to before the last batch, as if its etcd commit had been lost.
    let committed = job.committed().await.expect("committed offsets");
    let last = committed.last_committed_batch.expect("a committed batch");
    let plan = job.batch_records().await.remove(&last).expect("the last batch's record is kept");
    let mut rewound = OffsetsCheckpoint { last_committed_batch: Some(last - 1), ..committed };
    for range in plan.ranges() {
        rewound.next_offsets.insert(range.topic_partition().clone(), range.from());
    }
    let key = JobKeys::new(&job.prefix, &job.names.job).offsets();
    etcd::client().await.put(key, rewound.encode(), None).await.expect("rewind etcd");
    assert_eq!(job.uncommitted_batches().await, [last]);

    job.start_driver();
    job.start_executor("ex-1");
    job.wait_committed(&job.input.clone(), 5_000, Duration::from_secs(60)).await;
    let replayed = format!("Replaying a recorded batch batch={last}");
    job.supervisor.wait_for_log("driver", &replayed, Duration::from_secs(10)).await;
    let executor = job.supervisor.log("ex-1");
    assert!(executor.contains("Task already committed in Kafka; not written again"), "{executor}");
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 5_000, "every record arrived");
    assert!(counts.values().all(|&n| n == 1), "the replay wrote nothing twice");
}

/// The group's progress strictly inside a task's range cannot come from the job's own
/// transactions: the job stops, loudly, instead of duplicating or skipping records.
#[tokio::test]
async fn progress_strictly_inside_a_range_stops_the_job() {
    let mut job = JobFixture::new("eo-tampered", 1, "").await;
    job.write_config_with_sink(&topics(&job), &sink(&job, "exactly-once"), "");
    kafka::produce_ids(&job.input, 1, 200).await;
    job.start_driver();
    job.supervisor.wait_for_log("driver", "Batch recorded", Duration::from_secs(30)).await;
    // Tampered with after the batch [0, 200) was planned.
    group::commit(&format!("weir.{}", job.names.job), &job.input, &BTreeMap::from([(0, 50)]));
    job.start_executor("ex-1");
    let status = job.supervisor.wait_exit("driver", Duration::from_secs(60)).await;
    let log = job.supervisor.log("driver");
    assert!(status.is_some_and(|s| !s.success()), "the driver stops with an error: {log}");
    assert!(log.contains("committed offset 50") && log.contains("strictly inside"), "{log}");
    let output = kafka::read_committed(&job.output).await;
    assert!(output.values().all(Vec::is_empty), "nothing was written");
}

/// At-most-once: the batch is committed in etcd before any executor runs it, and the driver
/// publishes the progress to the group.
#[tokio::test]
async fn at_most_once_commits_each_batch_before_it_runs() {
    let mut job = JobFixture::new("amo-basic", 4, "").await;
    job.write_config_with_sink(&topics(&job), &sink(&job, "at-most-once"), "");
    kafka::produce_ids(&job.input, 4, 2_000).await;
    job.start_driver();
    job.supervisor.wait_for_log("driver", "Batch recorded", Duration::from_secs(30)).await;
    // No executor is attached: nothing ran, yet the batch is committed.
    job.wait_committed(&job.input.clone(), 2_000, Duration::from_secs(10)).await;
    assert!(job.uncommitted_batches().await.is_empty());

    job.start_executor("ex-1");
    job.supervisor.wait_for_log("driver", "Batch committed batch=1", Duration::from_secs(30)).await;
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 2_000, "no fault, so nothing lost");
    assert!(counts.values().all(|&n| n == 1));
    let committed = group::committed(&format!("weir.{}", job.names.job), &job.input, 4);
    assert_eq!(committed.values().sum::<i64>(), 2_000, "the group shows the progress");
}

/// A transaction timeout the broker would refuse stops the driver at start, naming both values.
#[tokio::test]
async fn a_transaction_timeout_above_the_brokers_limit_is_refused_at_start() {
    let mut job = JobFixture::new("eo-timeout", 1, "").await;
    let sink = sink(&job, "exactly-once") + "\ntransaction_timeout = \"20m\"";
    job.write_config_with_sink(&topics(&job), &sink, "");
    job.start_driver();
    let status = job.supervisor.wait_exit("driver", Duration::from_secs(60)).await;
    let log = job.supervisor.log("driver");
    assert!(status.is_some_and(|s| !s.success()), "{log}");
    assert!(
        log.contains("sink.transaction_timeout (20m) is above the broker's transaction.max.timeout.ms (900000 ms"),
        "{log}"
    );
}

/// A first start whose group already holds progress (an earlier job of the same name, its etcd
/// state gone) would skip records as "already committed": the driver refuses to start and says
/// how to clear the group.
#[tokio::test]
async fn exactly_once_refuses_a_group_left_by_an_earlier_job_of_the_same_name() {
    let mut job = JobFixture::new("eo-stale-group", 1, "").await;
    job.write_config_with_sink(&topics(&job), &sink(&job, "exactly-once"), "");
    kafka::produce_ids(&job.input, 1, 200).await;
    let group = format!("weir.{}", job.names.job);
    group::commit(&group, &job.input, &BTreeMap::from([(0, 150)]));
    job.start_driver();
    let status = job.supervisor.wait_exit("driver", Duration::from_secs(60)).await;
    let log = job.supervisor.log("driver");
    assert!(status.is_some_and(|s| !s.success()), "{log}");
    let expected = format!("the group {group} already holds offset 150 for {}-0", job.input);
    assert!(log.contains(&expected) && log.contains("--delete --group"), "{log}");
    assert!(job.committed().await.is_none_or(|c| c.last_committed_batch.is_none()));
}
