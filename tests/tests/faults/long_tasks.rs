//! Exactly-once tasks too long for one transaction: a backlog taken by one task commits in steps
//! (each with the offsets where the task stood), so the broker never aborts it at
//! `transaction_timeout`; and when the executor dies between steps, the task's retry resumes from
//! the last step. Every record arrives once, in order.

use std::time::Duration;

use weir_tests::job::JobFixture;
use weir_tests::kafka;
use weir_tests::oracle::judge;
use weir_tests::scenario::{one_at_a_time, read_kafka};

const RECORDS: u64 = 400_000;

#[tokio::test]
async fn a_task_longer_than_the_transaction_timeout_commits_in_steps_and_resumes_after_a_kill() {
    let _alone = one_at_a_time().await;
    let mut job = JobFixture::new("faults-long-task", 1, "").await;
    let sink = format!(
        "type = \"kafka\"\ntopic = \"{}\"\npartitioning = \"same-as-input\"\nguarantee = \"exactly-once\"\ntransaction_timeout = \"2s\"",
        job.output
    );
    job.write_config_with_sink(&format!("topics = [\"{}\"]", job.input), &sink, "");
    // The whole backlog is there before the start, and nothing bounds the first batch (no
    // backpressure, so no default initial rate): the first batch takes it all, in one task.
    let produced = kafka::produce_ids(&job.input, 1, RECORDS).await;
    job.start_driver_with(&["source.backpressure=false"]);
    job.start_executor("ex-1");
    job.supervisor
        .wait_for_log("ex-1", "Committed a step of a task too long", Duration::from_secs(120))
        .await;
    job.supervisor.kill("ex-1");
    job.start_executor("ex-2");
    job.wait_committed(&job.input.clone(), RECORDS as i64, Duration::from_secs(180)).await;

    let resumed = job.supervisor.log("ex-2");
    assert!(resumed.contains("Part of this task is committed"), "the retry resumed: {resumed}");
    let batches = job.batch_records().await;
    assert_eq!(batches[&1].max_records(), RECORDS, "one batch took the whole backlog");
    let verdict = judge(&produced, &read_kafka(&job.output).await);
    assert!(verdict.is_exactly_once(), "{verdict:?}");
}
