//! Flow control and Kafka's hard cases, end to end: batch limits, offsets deleted while the job
//! was down or during a batch (`on_data_loss`), partitions added while it runs, and inputs
//! written in transactions (aborted records, control markers, a transaction still open).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use weir_tests::job::{JobFixture, id_counts};
use weir_tests::kafka;

const LIMIT: Duration = Duration::from_secs(60);

async fn stop_all(job: &mut JobFixture, executors: &[&str]) {
    job.supervisor.terminate("driver", Duration::from_secs(30)).await;
    for e in executors {
        job.supervisor.terminate(e, Duration::from_secs(30)).await;
    }
}

/// `max_records_per_batch` and `max_rate_per_partition` bound every batch, and the backlog
/// still drains completely.
#[tokio::test]
async fn batch_limits_bound_every_batch_of_a_backlog() {
    let mut job = JobFixture::new("flow-limits", 4, "").await;
    kafka::produce_ids(&job.input, 4, 20_000).await;
    // 200 ms batches: 2,500 records/s per partition is 500 per partition per batch.
    job.start_driver_with(&[
        "source.max_records_per_batch=1500",
        "source.max_rate_per_partition=2500",
        "source.backpressure=false",
    ]);
    job.start_executor("ex-1");
    job.wait_committed(&job.input.clone(), 20_000, LIMIT).await;

    let last = job.committed().await.and_then(|c| c.last_committed_batch).unwrap();
    assert!(last >= 20_000 / 1_500, "at least 14 batches for 20,000 records, got {last}");
    let batches = job.batch_records().await;
    assert!(!batches.is_empty());
    for plan in batches.values() {
        assert!(plan.max_records() <= 1_500, "batch {} holds {}", plan.id, plan.max_records());
        for range in plan.ranges() {
            assert!(range.max_records() <= 500, "batch {}: {range}", plan.id);
        }
    }
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 20_000, "every record arrived");
}

/// The first batches after a start take `initial_rate_per_partition`, not the whole backlog.
#[tokio::test]
async fn the_first_batch_after_a_start_takes_the_initial_rate() {
    let mut job = JobFixture::new("flow-initial-rate", 2, "").await;
    kafka::produce_ids(&job.input, 2, 10_000).await;
    job.start_driver_with(&["source.initial_rate_per_partition=500"]);
    // No executor yet: the first batches stay recorded, as planned.
    job.supervisor.wait_for_log("driver", "Batch recorded", LIMIT).await;
    let first = job.batch_records().await.remove(&1).expect("batch 1");
    for range in first.ranges() {
        assert_eq!(range.max_records(), 100, "500 records/s × 200 ms: {range}");
    }
    job.start_executor("ex-1");
    job.wait_committed(&job.input.clone(), 10_000, LIMIT).await;
    assert_eq!(id_counts(&kafka::read_committed(&job.output).await).len(), 10_000);
}

/// Offsets deleted below a stopped job's position: by default the restarted job stops, naming
/// the partition, the offsets and the count; with `on_data_loss = "skip"` it jumps to the log
/// start, and only the deleted records are missing.
#[tokio::test]
async fn offsets_deleted_while_the_job_was_down_fail_or_are_skipped() {
    let mut job = JobFixture::new("loss-planning", 2, "").await;
    let input = job.input.clone();
    kafka::produce_ids(&input, 2, 2_000).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.wait_committed(&input, 2_000, LIMIT).await;
    stop_all(&mut job, &["ex-1"]).await;

    // 1,000 more per partition while the job is down; retention takes partition 0 to 1,500.
    let produced = kafka::produce_range(&input, 2, 2_000..4_000).await;
    kafka::delete_records_before(&input, 0, 1_500).await;
    job.start_driver();
    let status = job.supervisor.wait_exit("driver", LIMIT).await;
    let log = job.supervisor.log("driver");
    assert!(status.is_some_and(|s| !s.success()), "the job stops: {log}");
    let expected = format!("offsets [1000, 1500) of {input}-0 are no longer in Kafka: 500 records");
    assert!(log.contains(&expected), "{log}");

    job.start_driver_with(&["source.on_data_loss=skip"]);
    job.start_executor("ex-1");
    job.wait_committed(&input, 4_000, LIMIT).await;
    let skipped: Vec<u64> = job
        .batch_records()
        .await
        .values()
        .flat_map(|plan| plan.data_lost.iter().map(|r| r.max_records()))
        .collect();
    assert_eq!(skipped, [500], "the batch record counts the skipped records");
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    let gone: Vec<u64> =
        produced.iter().filter(|p| p.partition == 0 && p.offset < 1_500).map(|p| p.id).collect();
    assert_eq!(gone.len(), 500);
    assert_eq!(counts.len(), 4_000 - 500, "all but the deleted records arrived");
    assert!(gone.iter().all(|id| !counts.contains_key(id)), "the deleted records are the gap");
    assert!(counts.values().all(|&n| n == 1));
}

/// Records deleted after a batch was planned, before its task read them: by default the job
/// stops naming what is gone; with `on_data_loss = "skip"` the task reads what is left.
#[tokio::test]
async fn offsets_deleted_during_a_batch_fail_or_are_skipped() {
    for (policy, name) in [("fail", "loss-reading-fail"), ("skip", "loss-reading-skip")] {
        let mut job = JobFixture::new(name, 1, "").await;
        let input = job.input.clone();
        kafka::produce_ids(&input, 1, 1_000).await;
        job.start_driver_with(&[&format!("source.on_data_loss={policy}")]);
        job.supervisor.wait_for_log("driver", "Batch recorded", LIMIT).await;
        let batch = job.batch_records().await.remove(&1).expect("batch 1 recorded");
        assert_eq!(batch.ranges().next().unwrap().from(), 0);
        kafka::delete_records_before(&input, 0, 400).await;
        job.start_executor("ex-1");
        if policy == "fail" {
            let status = job.supervisor.wait_exit("driver", LIMIT).await;
            let log = job.supervisor.log("driver");
            assert!(status.is_some_and(|s| !s.success()), "the job stops: {log}");
            let expected = format!("offsets [0, 400) of {input}-0 are no longer in Kafka: 400");
            assert!(log.contains(&expected), "{log}");
        } else {
            job.wait_committed(&input, 1_000, LIMIT).await;
            let counts = id_counts(&kafka::read_committed(&job.output).await);
            assert_eq!(counts.len(), 600, "the 600 records left arrived");
            assert!(counts.keys().all(|&id| id >= 400));
            job.supervisor.wait_for_log("driver", "records_lost=400", LIMIT).await;
        }
    }
}

/// Partitions added to a topic while the job runs are discovered at planning and read from
/// their earliest offset: records written to them before the job noticed are not lost.
#[tokio::test]
async fn partitions_added_while_running_lose_nothing() {
    let mut job = JobFixture::new("added-partitions", 2, "").await;
    let input = job.input.clone();
    kafka::produce_ids(&input, 2, 1_000).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.wait_committed(&input, 1_000, LIMIT).await;

    kafka::add_partitions(&input, 4).await;
    kafka::produce_range(&input, 4, 1_000..3_000).await;
    job.wait_committed(&input, 3_000, LIMIT).await;
    let log = job.supervisor.log("driver");
    for p in [2, 3] {
        let line = format!("New partition; reading from here partition={input}-{p} offset=0");
        assert!(log.contains(&line), "{line}\n{log}");
    }
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 3_000, "every record arrived, the new partitions' included");
}

type TxProducer = ThreadedProducer<DefaultProducerContext>;

fn send(producer: &TxProducer, topic: &str, keys: impl IntoIterator<Item = String>) {
    for key in keys {
        let record = BaseRecord::to(topic).key(&key).payload("{}").partition(0);
        producer.send(record).map_err(|(e, _)| e).expect("enqueue");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// An input written in transactions: committed records arrive once, aborted ones never, ranges
/// complete across control markers, and a transaction still open does not stall the job: it
/// plans up to the last stable offset and picks the rest up once it commits.
#[tokio::test]
async fn transactional_input_with_aborted_and_open_transactions_completes() {
    let mut job = JobFixture::new("tx-input", 1, "").await;
    let input = job.input.clone();
    let producer: TxProducer = kafka::client_config()
        .set("transactional.id", format!("{}-input", job.names.job))
        .create()
        .expect("transactional producer");
    producer.init_transactions(Duration::from_secs(30)).expect("init");
    let ids = |range: std::ops::Range<u64>| range.map(kafka::record_key).collect::<Vec<_>>();
    let aborted = |range: std::ops::Range<u64>| range.map(|i| format!("aborted-{i}"));
    for (i, commit) in [true, false, true, false, true].into_iter().enumerate() {
        producer.begin_transaction().expect("begin");
        let base = i as u64 * 100;
        if commit {
            send(&producer, &input, ids(base..base + 100));
            producer.commit_transaction(Duration::from_secs(30)).expect("commit");
        } else {
            send(&producer, &input, aborted(base..base + 100));
            producer.abort_transaction(Duration::from_secs(30)).expect("abort");
        }
    }
    // Left open while the job runs.
    producer.begin_transaction().expect("begin");
    send(&producer, &input, ids(1_000..1_050));

    job.start_driver();
    job.start_executor("ex-1");
    let started = std::time::Instant::now();
    let committed_ids = loop {
        let counts = id_counts(&kafka::read_committed(&job.output).await);
        if counts.len() == 300 {
            break counts;
        }
        assert!(started.elapsed() < LIMIT, "only {} of 300 records arrived", counts.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(committed_ids.values().all(|&n| n == 1));

    producer.commit_transaction(Duration::from_secs(30)).expect("commit the open one");
    let started = std::time::Instant::now();
    loop {
        let counts: BTreeMap<u64, usize> = id_counts(&kafka::read_committed(&job.output).await);
        if counts.len() == 350 {
            assert!(counts.values().all(|&n| n == 1));
            break;
        }
        assert!(started.elapsed() < LIMIT, "only {} of 350 records arrived", counts.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A source topic deleted while the job reads it follows `on_data_loss`: `fail` stops the job
/// naming the topic; `skip` goes on with the other topics.
#[tokio::test]
async fn a_deleted_source_topic_fails_or_is_skipped() {
    for policy in ["fail", "skip"] {
        let mut job = JobFixture::new(&format!("deleted-topic-{policy}"), 2, "").await;
        let (kept, doomed) = (job.input.clone(), job.names.topic("doomed"));
        kafka::create_topic(&doomed, 2).await;
        job.write_config(&format!("topics = [\"{kept}\", \"{doomed}\"]"), "");
        kafka::produce_ids(&kept, 2, 500).await;
        kafka::produce_range(&doomed, 2, 500..1_000).await;
        job.start_driver_with(&[&format!("source.on_data_loss={policy}")]);
        job.start_executor("ex-1");
        job.wait_committed(&doomed, 500, LIMIT).await;

        kafka::delete_topic(&doomed).await;
        if policy == "fail" {
            let status = job.supervisor.wait_exit("driver", LIMIT).await;
            let log = job.supervisor.log("driver");
            assert!(status.is_some_and(|s| !s.success()), "the job stops: {log}");
            let expected = format!("source topic(s) {doomed} were deleted while the job read them");
            assert!(log.contains(&expected), "{log}");
        } else {
            kafka::produce_range(&kept, 2, 1_000..1_500).await;
            job.wait_committed(&kept, 1_000, LIMIT).await;
            let log = job.supervisor.log("driver");
            assert!(log.contains("Source topics deleted; no longer read"), "{log}");
            let counts = id_counts(&kafka::read_committed(&job.output).await);
            assert_eq!(counts.len(), 1_500, "everything read before and after the deletion");
            // etcd keeps no trace of the deleted topic: its lanes are pruned too.
            let keys = job.etcd_keys().await;
            let lanes = keys.iter().find(|(key, _)| key.ends_with("/lanes")).expect("lane map");
            let lanes = weir_common::lanes::LaneMap::decode(lanes.1).expect("a lane map");
            let topics: Vec<&str> = lanes.iter().map(|(tp, _)| tp.topic.as_str()).collect();
            assert_eq!(topics, [kept.as_str(), kept.as_str()], "only the kept topic's lanes");
        }
    }
}

/// With `pattern`, a topic created while the job runs is picked up at planning and read from
/// `starting_offsets` (earliest here): the records written to it before it was noticed arrive.
#[tokio::test]
async fn a_pattern_picks_up_a_topic_created_while_running() {
    let mut job = JobFixture::new("pattern-new-topic", 2, "").await;
    // Job names are letters, digits and dashes: only the dot needs escaping.
    let pattern = format!("{}\\\\.(in|late-in)", job.names.job);
    job.write_config(&format!("pattern = \"{pattern}\""), "");
    kafka::produce_ids(&job.input, 2, 500).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.wait_committed(&job.input.clone(), 500, LIMIT).await;

    let late = job.names.topic("late-in");
    kafka::create_topic(&late, 2).await;
    kafka::produce_range(&late, 2, 500..1_000).await;
    job.wait_committed(&late, 500, LIMIT).await;
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 1_000, "the new topic's records, written before discovery, arrived");
}

/// Input topics written with each codec Kafka offers (zstd, lz4, snappy, gzip) are read, and the
/// output is written with zstd (`[sink.kafka] compression.type`): every record arrives once.
#[tokio::test]
async fn every_compression_codec_reads_and_zstd_writes() {
    let mut job = JobFixture::new("kafka-codecs", 1, "").await;
    let codecs = ["zstd", "lz4", "snappy", "gzip"];
    let mut topics = Vec::new();
    for (n, codec) in codecs.iter().enumerate() {
        let topic = job.names.topic(&format!("in-{codec}"));
        kafka::create_topic(&topic, 1).await;
        let producer: rdkafka::producer::FutureProducer = kafka::client_config()
            .set("compression.type", *codec)
            .set("linger.ms", "20")
            .create()
            .expect("a producer");
        let first = n as u64 * 300;
        kafka::produce_with(&producer, &topic, 1, first..first + 300).await;
        topics.push(format!("\"{topic}\""));
    }
    let sink = format!(
        "type = \"kafka\"\ntopic = \"{}\"\nguarantee = \"exactly-once\"\n[sink.kafka]\n\"compression.type\" = \"zstd\"",
        job.output
    );
    job.write_config_with_sink(&format!("topics = [{}]", topics.join(", ")), &sink, "");
    job.start_driver();
    job.start_executor("ex-1");
    let mut progress = job.progress().await;
    let started = std::time::Instant::now();
    loop {
        let committed =
            progress.committed().await.map_or(0, |c| c.next_offsets.values().sum::<i64>());
        if committed == 1_200 {
            break;
        }
        if let Some((name, status)) = job.supervisor.exited() {
            panic!("{name} exited ({status}):\n{}", job.supervisor.log(&name));
        }
        assert!(started.elapsed() < LIMIT, "only {committed} of 1200 records committed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 1_200, "every record of every codec");
    assert!(counts.values().all(|&n| n == 1));
}
