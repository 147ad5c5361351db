//! Random fault schedules (at least ten faults each) under every guarantee: exactly-once keeps
//! every record once and in order, at-least-once loses nothing, at-most-once writes nothing
//! twice. What a guarantee allows (duplicates, losses) is printed, not asserted.

use std::time::Duration;

use weir_tests::scenario::{Guarantee, Outcome, Scenario, Schedule, SinkUnderTest};

use crate::assert_exactly_once;

const FAULTS: usize = 10;

async fn chaos(name: &str, guarantee: Guarantee, sink: SinkUnderTest, records: u64) -> Outcome {
    let outcome = Scenario {
        name: name.to_owned(),
        records,
        partitions: 8,
        executors: 3,
        guarantee,
        sink,
        schedule: Schedule::Random { count: FAULTS, seed: None },
        // Ten faults take about 50 s (a driver restart waits out the 3 s leader lease, a pause
        // lasts 4.5 s, plus the gaps): the input keeps flowing for as long, so the faults hit a
        // job at work rather than one that has finished.
        produce_over: Duration::from_secs(50),
    }
    .run()
    .await;
    assert!(outcome.recoveries.len() >= FAULTS, "fewer faults than planned:\n{outcome}");
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_under_exactly_once_to_kafka() {
    let outcome =
        chaos("faults-chaos-exactly-once", Guarantee::ExactlyOnce, SinkUnderTest::Kafka, 200_000)
            .await;
    assert_exactly_once(&outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_under_at_least_once_loses_nothing() {
    let outcome =
        chaos("faults-chaos-at-least-once", Guarantee::AtLeastOnce, SinkUnderTest::Kafka, 200_000)
            .await;
    let v = &outcome.verdict;
    assert_eq!(v.lost(), 0, "records lost:\n{outcome}");
    assert_eq!(v.unexpected(), 0, "records never produced:\n{outcome}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_under_at_most_once_duplicates_nothing() {
    let outcome =
        chaos("faults-chaos-at-most-once", Guarantee::AtMostOnce, SinkUnderTest::Kafka, 200_000)
            .await;
    let v = &outcome.verdict;
    assert_eq!(v.duplicated(), 0, "records duplicated:\n{outcome}");
    assert_eq!(v.unexpected(), 0, "records never produced:\n{outcome}");
    assert!(v.delivered() > 0, "nothing delivered at all:\n{outcome}");
}

/// The file sink replaces a range's file whole on a re-run, so exactly-once holds there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_under_exactly_once_to_files() {
    let outcome =
        chaos("faults-chaos-files", Guarantee::ExactlyOnce, SinkUnderTest::File, 100_000).await;
    let v = &outcome.verdict;
    assert_eq!(v.lost(), 0, "records lost:\n{outcome}");
    assert_eq!(v.duplicated(), 0, "records duplicated:\n{outcome}");
    assert_eq!(v.unexpected(), 0, "records never produced:\n{outcome}");
}
