//! `driver.executor_token`: a shared token every executor presents when it attaches, for
//! deployments that terminate TLS in front of the driver (or want both). An executor without it,
//! or with another, is refused before its hello is read, and says why; one with it runs the job,
//! and the token is in no log.

use std::time::Duration;

use weir_tests::job::{JobFixture, executor_command_at, id_counts};
use weir_tests::{binaries, kafka};

const LIMIT: Duration = Duration::from_secs(60);
const VARIABLE: &str = "WEIR_TEST_EXECUTOR_TOKEN";
const TOKEN: &str = "tok-9d41e7-never-logged";

#[tokio::test]
async fn only_an_executor_with_the_token_attaches() {
    let mut job = JobFixture::new("executor-token", 2, "").await;
    kafka::produce_ids(&job.input, 2, 1_000).await;
    let mut driver = job.driver_command();
    driver.args(["--set", &format!("driver.executor_token=${{env:{VARIABLE}}}")]);
    driver.env(VARIABLE, TOKEN);
    job.supervisor.spawn("driver", driver);

    let executor = |job: &JobFixture, id: &str| {
        executor_command_at(
            &binaries::path("weir-executor"),
            &job.etcd_endpoints,
            &job.names.job,
            &job.prefix,
            id,
        )
    };
    // Without a token, and with another one: refused, and told what is missing.
    let bare = executor(&job, "ex-bare");
    job.supervisor.spawn("ex-bare", bare);
    let mut wrong = executor(&job, "ex-wrong");
    wrong.env("WEIR_EXECUTOR_TOKEN", "not-the-token");
    job.supervisor.spawn("ex-wrong", wrong);
    for refused in ["ex-bare", "ex-wrong"] {
        job.supervisor.wait_for_log(refused, "driver.executor_token", LIMIT).await;
    }
    job.supervisor
        .wait_for_log("driver", "Refused an attach without the executors' token", LIMIT)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(job.committed_records(&job.input).await, 0, "no refused executor ran a task");
    for refused in ["ex-bare", "ex-wrong"] {
        job.supervisor.kill(refused);
    }

    // With the token, from a file: the job runs.
    let file = job.supervisor.log_dir().join("executor-token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let mut good = executor(&job, "ex-good");
    good.arg("--token-file").arg(&file);
    job.supervisor.spawn("ex-good", good);
    job.wait_committed(&job.input.clone(), 1_000, LIMIT).await;
    assert_eq!(id_counts(&kafka::read_committed(&job.output).await).len(), 1_000);
    for process in ["driver", "ex-bare", "ex-wrong", "ex-good"] {
        let log = job.supervisor.log(process);
        assert!(!log.contains(TOKEN), "{process} logged the token:\n{log}");
    }
}
