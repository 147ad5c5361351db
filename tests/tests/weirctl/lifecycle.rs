//! `weirctl job stop|resume|delete` with records flowing: a stop lets the batches in flight
//! commit and plans nothing more, a driver restarted meanwhile stays stopped, and a resume goes
//! on with nothing lost or duplicated (exactly-once, judged by the oracle).

use std::time::Duration;

use weir_tests::job::JobFixture;
use weir_tests::oracle::judge;
use weir_tests::scenario::read_kafka;

use crate::{produce, produce_while_running, sink, topics};

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_stopped_job_commits_what_is_in_flight_stays_stopped_across_a_restart_and_resumes() {
    let mut job = JobFixture::new("ctl-stop-resume", 4, "").await;
    job.write_config_with_sink(&topics(&job), &sink(&job, "exactly-once"), "");
    job.start_driver();
    job.start_executor("ex-1");
    job.start_executor("ex-2");
    // Records keep arriving while the job is stopped, restarted and resumed.
    let producer = produce_while_running(&job, 40);
    job.supervisor.wait_for_log("driver", "Batch committed", MINUTE).await;

    let stop = job.weirctl(&["job", "stop"]).await.ok();
    assert!(stop.stdout.contains("stopped: every batch is committed"), "{}", stop.stdout);
    assert_eq!(job.uncommitted_batches().await, Vec::<u64>::new(), "in-flight batches committed");
    let batches = job.batch_records().await;
    let offsets = job.committed().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(job.batch_records().await, batches, "no batch planned while stopped");
    assert_eq!(job.committed().await, offsets, "nothing committed while stopped");

    let status = job.supervisor.terminate("driver", MINUTE).await;
    assert!(status.success(), "the stopped driver exits cleanly: {status}");
    job.start_driver();
    job.supervisor.wait_for_log("driver", "The job is stopped", MINUTE).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        job.batch_records().await,
        batches,
        "a driver started on a stopped job plans nothing"
    );
    let status = job.weirctl(&["--output", "json", "status"]).await.ok().json();
    assert_eq!(status["state"], "stopped");
    assert!(status["leader"]["driver_id"].is_string(), "the restarted driver leads: {status}");

    job.weirctl(&["job", "resume"]).await.ok();
    let produced = producer.await.expect("the producer task");
    job.wait_committed(&job.input.clone(), produced.len() as i64, MINUTE).await;
    let verdict = judge(&produced, &read_kafka(&job.output).await);
    assert!(verdict.is_exactly_once(), "{verdict:?}");
}

#[tokio::test]
async fn delete_refuses_a_led_job_and_removes_every_key_of_a_stopped_one() {
    let mut job = JobFixture::new("ctl-delete", 1, "").await;
    produce(&job, 1, 0..100).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.wait_committed(&job.input.clone(), 100, MINUTE).await;

    let refused = job.weirctl(&["job", "delete", "--confirm", &job.names.job.clone()]).await;
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(refused.stderr.contains("leads job"), "{}", refused.stderr);
    job.supervisor.terminate("driver", MINUTE).await;

    let unconfirmed = job.weirctl(&["job", "delete"]).await;
    assert_eq!(unconfirmed.code, 2, "asks for the confirmation: {unconfirmed:?}");
    assert!(!job.etcd_keys().await.is_empty());
    let name = job.names.job.clone();
    job.weirctl(&["job", "delete", "--confirm", &name, "--group"]).await.ok();
    assert!(job.etcd_keys().await.is_empty(), "no key of the job is left");
    assert!(crate::group_offsets(&job, 1).is_empty(), "the group is gone");
}
