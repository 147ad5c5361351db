//! Each fault alone, under exactly-once to the Kafka sink: the output holds every input record
//! once, in input order per partition, whatever the fault.

use std::time::Duration;

use weir_tests::scenario::{Fault, Guarantee, Outcome, Scenario, Schedule, SinkUnderTest};

use crate::assert_exactly_once;

async fn alone(name: &str, fault: Fault) -> Outcome {
    let outcome = Scenario {
        name: name.to_owned(),
        records: 30_000,
        partitions: 4,
        executors: 2,
        guarantee: Guarantee::ExactlyOnce,
        sink: SinkUnderTest::Kafka,
        schedule: Schedule::Faults(vec![fault]),
        produce_over: Duration::from_secs(7),
    }
    .run()
    .await;
    assert_eq!(outcome.recoveries.len(), 1, "{outcome}");
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_an_executor_is_exactly_once() {
    assert_exactly_once(&alone("faults-kill-executor", Fault::KillExecutor).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_paused_past_its_timeout_is_exactly_once() {
    assert_exactly_once(&alone("faults-pause-executor", Fault::PauseExecutor).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_driver_is_exactly_once() {
    assert_exactly_once(&alone("faults-kill-driver", Fault::KillDriver).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_everything_is_exactly_once() {
    assert_exactly_once(&alone("faults-restart-all", Fault::RestartAll).await);
}
