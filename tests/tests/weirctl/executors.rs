//! `weirctl executors drain`: scale down without a kill. The drained executor finishes its
//! tasks, its lanes move to the others, it exits 0, and nothing is lost or duplicated.

use std::time::Duration;

use weir_tests::job::{JobFixture, free_port};
use weir_tests::oracle::judge;
use weir_tests::scenario::read_kafka;

use crate::{produce_while_running, sink, topics};

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_drained_executor_hands_its_lanes_back_and_exits_0() {
    let mut job = JobFixture::new("ctl-drain", 4, "").await;
    job.http_listen = format!("127.0.0.1:{}", free_port());
    job.write_config_with_sink(&topics(&job), &sink(&job, "exactly-once"), "");
    job.start_driver();
    job.start_executor("ex-1");
    job.start_executor("ex-2");
    let producer = produce_while_running(&job, 20);
    // Both executors own lanes before the drain.
    let started = std::time::Instant::now();
    loop {
        // Until the driver leads, weirctl says no driver does (exit 3).
        let run = job.weirctl(&["--output", "json", "executors"]).await;
        let list = if run.code == 0 { run.json() } else { serde_json::Value::Null };
        let executors = list["executors"].as_array().cloned().unwrap_or_default();
        if executors.len() == 2 && executors.iter().all(|e| e["lanes"].as_u64() > Some(0)) {
            break;
        }
        assert!(started.elapsed() < MINUTE, "two executors with lanes: {run:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let drained = job.weirctl(&["executors", "drain", "ex-2"]).await.ok();
    assert!(drained.stdout.contains("Executor ex-2 has left"), "{}", drained.stdout);
    let exit = job.supervisor.wait_exit("ex-2", MINUTE).await.expect("ex-2 exits");
    assert!(exit.success(), "a drained executor exits 0: {exit}");
    // A lane gets its new owner when its next task is dispatched: within a few batches.
    let moved = std::time::Instant::now();
    loop {
        let list = job.weirctl(&["--output", "json", "executors"]).await.ok().json();
        let executors = list["executors"].as_array().cloned().unwrap_or_default();
        assert_eq!(executors.len(), 1, "only ex-1 is attached: {list}");
        assert_eq!(executors[0]["id"], "ex-1");
        if executors[0]["lanes"].as_u64() == Some(4) {
            break;
        }
        assert!(moved.elapsed() < MINUTE, "ex-1 never took all 4 lanes: {list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let unknown = job.weirctl(&["executors", "drain", "ex-9"]).await;
    assert_eq!(unknown.code, 3, "{unknown:?}");
    assert!(unknown.stderr.contains("attached: ex-1"), "{}", unknown.stderr);

    let produced = producer.await.expect("the producer task");
    job.wait_committed(&job.input.clone(), produced.len() as i64, MINUTE).await;
    let verdict = judge(&produced, &read_kafka(&job.output).await);
    assert!(verdict.is_exactly_once(), "{verdict:?}");
}
