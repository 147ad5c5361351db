//! Lanes that group partitions (`source.lanes`): a batch has a task per lane, each read by one
//! consumer and written in one transaction; every record still arrives once, in order; and a job
//! whose lanes are over the limit (mapped one partition per lane by an older Weir, or the
//! setting lowered) is regrouped once, after fencing the old lanes' transactional producers.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use weir_common::lanes::LaneMap;
use weir_tests::job::{JobFixture, id_counts};
use weir_tests::kafka;

const LIMIT: Duration = Duration::from_secs(90);

fn exactly_once_sink(job: &JobFixture) -> String {
    format!(
        "type = \"kafka\"\ntopic = \"{}\"\npartitioning = \"same-as-input\"\n\
         guarantee = \"exactly-once\"",
        job.output
    )
}

/// Every id once, and each output partition in input order (ids of partition `p` are
/// `p, p + n, p + 2n, ...`).
fn assert_once_in_order(output: &BTreeMap<i32, Vec<kafka::Consumed>>, total: usize) {
    let counts = id_counts(output);
    assert_eq!(counts.len(), total, "every record arrived");
    let twice: Vec<_> = counts.iter().filter(|&(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "records arrived twice: {twice:?}");
    for (partition, records) in output {
        let ids: Vec<u64> = records.iter().filter_map(kafka::Consumed::id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "partition {partition} out of order");
    }
}

/// Eight partitions in two lanes, exactly-once, through two executors one of which is killed:
/// every batch has two tasks, and every record arrives once, in order.
#[tokio::test]
async fn eight_partitions_in_two_lanes_arrive_once_in_order_when_an_executor_is_killed() {
    let mut job = JobFixture::new("lanes-two", 8, "").await;
    let topics = format!("topics = [\"{}\"]\nlanes = 2", job.input);
    job.write_config_with_sink(&topics, &exactly_once_sink(&job), "");
    kafka::produce_ids(&job.input, 8, 40_000).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.start_executor("ex-2");
    job.supervisor.wait_for_log("driver", "Batch committed", LIMIT).await;
    job.supervisor.kill("ex-1");
    kafka::produce_range(&job.input, 8, 40_000..60_000).await;
    job.wait_committed(&job.input.clone(), 60_000, LIMIT).await;

    let lanes = job.lane_map().await;
    assert_eq!((lanes.len(), lanes.lane_ids()), (8, vec![0, 1]), "8 partitions in lanes 0 and 1");
    let log = job.supervisor.log("driver");
    let recorded: Vec<&str> = log.lines().filter(|l| l.contains("Batch recorded")).collect();
    assert!(!recorded.is_empty());
    assert!(
        recorded.iter().all(|l| l.contains("tasks=1") || l.contains("tasks=2")),
        "a task per lane, not per partition: {recorded:?}"
    );
    assert_once_in_order(&kafka::read_committed(&job.output).await, 60_000);
}

/// A job that ran with a lane per partition, restarted with `source.lanes = 2`: the driver fences
/// the six old lanes' producers, then moves the partitions to two new lanes. A producer of an old
/// lane with a transaction open (a zombie) cannot commit afterwards, and nothing is lost or
/// written twice across the move.
#[tokio::test]
async fn lanes_over_the_limit_are_regrouped_and_the_old_lanes_writers_fenced() {
    let mut job = JobFixture::new("lanes-regroup", 6, "").await;
    let input = job.input.clone();
    let topics = |lanes: u32| format!("topics = [\"{input}\"]\nlanes = {lanes}");
    job.write_config_with_sink(&topics(64), &exactly_once_sink(&job), "");
    kafka::produce_ids(&job.input, 6, 6_000).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.wait_committed(&job.input.clone(), 6_000, LIMIT).await;
    assert_eq!(job.lane_map().await.lane_ids(), [0, 1, 2, 3, 4, 5], "a lane per partition");
    job.supervisor.kill("driver");

    // A writer of lane 0 that outlived its task, with a transaction open.
    let zombie: ThreadedProducer<DefaultProducerContext> = kafka::client_config()
        .set("transactional.id", LaneMap::transactional_id(&job.names.job, 0))
        .create()
        .expect("zombie producer");
    zombie.init_transactions(Duration::from_secs(30)).expect("zombie init");
    zombie.begin_transaction().expect("zombie begin");
    let record = BaseRecord::to(&job.output).key("zombie").payload("{}").partition(0);
    zombie.send(record).map_err(|(e, _)| e).expect("zombie send");
    zombie.flush(Duration::from_secs(10)).expect("zombie flush");

    job.write_config_with_sink(&topics(2), &exactly_once_sink(&job), "");
    kafka::produce_range(&job.input, 6, 6_000..12_000).await;
    job.start_driver();
    job.wait_committed(&job.input.clone(), 12_000, LIMIT).await;

    let log = job.supervisor.log("driver");
    assert!(log.contains("Lanes regrouped") && log.contains("retired=6"), "{log}");
    let lanes = job.lane_map().await;
    assert_eq!(lanes.lane_ids(), [6, 7], "two new lanes, numbered past the old ones");
    assert!(
        zombie.commit_transaction(Duration::from_secs(10)).is_err(),
        "the old lane's writer was fenced before its partitions moved"
    );
    let output = kafka::read_committed(&job.output).await;
    assert!(output.values().flatten().all(|r| r.key.as_deref() != Some(b"zombie".as_slice())));
    assert_once_in_order(&output, 12_000);
}
