use std::time::Duration;

use weir_tests::job::{JobFixture, id_counts};
use weir_tests::kafka;

/// `kill -9` of an executor while it runs tasks: its tasks run again on another executor and
/// nothing is lost (at-least-once: a record may arrive twice).
#[tokio::test]
async fn kill_9_of_an_executor_loses_nothing() {
    let mut job = JobFixture::new("pipeline-kill-executor", 8, "").await;
    kafka::produce_ids(&job.input, 8, 200_000).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.supervisor.wait_for_log("driver", "Assigning task", Duration::from_secs(30)).await;
    job.supervisor.kill("ex-1");
    job.start_executor("ex-2");
    job.wait_committed(&job.input.clone(), 200_000, Duration::from_secs(90)).await;

    let driver_log = job.supervisor.log("driver");
    assert!(driver_log.contains("Executor lost; its tasks run again elsewhere"), "{driver_log}");
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 200_000, "every record arrived");
}

/// `kill -9` of the driver after it recorded a batch: the restarted driver replays the batch
/// exactly as recorded, then goes on planning from etcd's offsets; nothing is lost.
#[tokio::test]
async fn kill_9_of_the_driver_then_restart_replays_the_recorded_batch() {
    let mut job = JobFixture::new("pipeline-kill-driver", 4, "").await;
    kafka::produce_ids(&job.input, 4, 20_000).await;
    // No executor yet: the batch is recorded and cannot finish before the kill.
    job.start_driver();
    job.supervisor.wait_for_log("driver", "Batch recorded", Duration::from_secs(30)).await;
    job.supervisor.kill("driver");
    let recorded = job.batch_records().await;
    assert_eq!(recorded.keys().copied().collect::<Vec<_>>(), [1], "batch 1 recorded");
    assert_eq!(job.uncommitted_batches().await, [1]);
    let batch_1: Vec<String> = recorded[&1].ranges().map(|r| r.to_string()).collect();

    kafka::produce_range(&job.input, 4, 20_000..30_000).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.start_executor("ex-2");
    job.wait_committed(&job.input.clone(), 30_000, Duration::from_secs(90)).await;

    let log = job.supervisor.log("driver");
    assert!(log.contains("Replaying a recorded batch batch=1"), "{log}");
    let replayed: Vec<String> =
        job.batch_records().await[&1].ranges().map(|r| r.to_string()).collect();
    assert_eq!(replayed, batch_1, "batch 1 ran exactly as recorded");
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 30_000, "every record arrived");
    assert!(counts.values().all(|&n| n == 1), "no fault hit a running task, so nothing twice");
}

/// A restart whose config adds a topic: the new topic starts at `starting_offsets` (here
/// `latest`), the old one resumes where it stopped (its records written while the job was down
/// are not skipped).
#[tokio::test]
async fn a_restart_that_adds_a_topic_reads_it_from_starting_offsets() {
    let mut job = JobFixture::new("pipeline-add-topic", 2, "").await;
    let old = job.input.clone();
    let new = job.names.topic("in2");
    kafka::create_topic(&new, 2).await;
    let latest = r#"starting_offsets = "latest""#;
    job.write_config(&format!("topics = [\"{old}\"]\n{latest}"), "");
    kafka::produce_range(&old, 2, 0..1_000).await; // before the first start: skipped (latest)
    job.start_driver();
    job.start_executor("ex-1");
    job.supervisor
        .wait_for_log("driver", "New partition; reading from here", Duration::from_secs(30))
        .await;
    let start = job.committed_records(&old).await;
    assert_eq!(start, 1_000, "latest resolved and written to etcd at once");
    kafka::produce_range(&old, 2, 1_000..2_000).await;
    job.wait_committed(&old, 2_000, Duration::from_secs(60)).await;
    let status = job.supervisor.terminate("driver", Duration::from_secs(30)).await;
    assert!(status.success());

    kafka::produce_range(&old, 2, 2_000..2_500).await; // while down: must not be skipped
    kafka::produce_range(&new, 2, 10_000..10_300).await; // before the new topic is known: skipped
    job.write_config(&format!("topics = [\"{old}\", \"{new}\"]\n{latest}"), "");
    job.start_driver();
    job.supervisor
        .wait_for_log("driver", "New partition; reading from here", Duration::from_secs(30))
        .await;
    kafka::produce_range(&new, 2, 10_300..10_500).await;
    job.wait_committed(&old, 2_500, Duration::from_secs(60)).await;
    job.wait_committed(&new, 500, Duration::from_secs(60)).await;

    let ids: Vec<u64> = id_counts(&kafka::read_committed(&job.output).await).into_keys().collect();
    let expected: Vec<u64> = (1_000..2_500).chain(10_300..10_500).collect();
    assert_eq!(ids, expected);
}

/// An executor that stops answering (paused past `executor_timeout`) is declared lost: its
/// tasks and lanes move to the other executor and nothing is lost.
#[tokio::test]
async fn a_silent_executor_is_replaced_after_the_timeout() {
    let mut job = JobFixture::new("pipeline-silent-executor", 4, "").await;
    kafka::produce_ids(&job.input, 4, 100_000).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.supervisor.wait_for_log("driver", "Assigning task", Duration::from_secs(30)).await;
    job.supervisor.pause("ex-1");
    job.start_executor("ex-2");
    job.wait_committed(&job.input.clone(), 100_000, Duration::from_secs(90)).await;
    job.supervisor.resume("ex-1");

    let log = job.supervisor.log("driver");
    assert!(log.contains("no heartbeat for 3s"), "{log}");
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 100_000, "every record arrived");
}

/// SIGTERM on an executor: it takes no new task, finishes the ones it runs, reports them and
/// exits 0; another executor carries on.
#[tokio::test]
async fn sigterm_on_an_executor_finishes_its_tasks_and_leaves() {
    let mut job = JobFixture::new("pipeline-sigterm-executor", 4, "").await;
    kafka::produce_ids(&job.input, 4, 100_000).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.supervisor.wait_for_log("driver", "Assigning task", Duration::from_secs(30)).await;
    let status = job.supervisor.terminate("ex-1", Duration::from_secs(60)).await;
    assert!(status.success(), "executor exit: {status}\n{}", job.supervisor.log("ex-1"));
    job.start_executor("ex-2");
    job.wait_committed(&job.input.clone(), 100_000, Duration::from_secs(90)).await;

    let driver_log = job.supervisor.log("driver");
    assert!(driver_log.contains("Executor leaving"), "{driver_log}");
    assert!(
        !driver_log.contains("Executor lost"),
        "its tasks were finished, not lost:\n{driver_log}"
    );
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 100_000, "every record arrived");
    assert!(counts.values().all(|&n| n == 1), "finished tasks are not run again");
}

/// A driver paused past its lease (a zombie) is replaced by a standby; when it resumes it cannot
/// write to etcd any more: it ends its term and stands by, while the new leader's offsets stand
/// and nothing is lost.
#[tokio::test]
async fn a_paused_driver_is_replaced_and_cannot_write_when_it_resumes() {
    let mut job = JobFixture::new("pipeline-zombie-driver", 2, "").await;
    kafka::produce_range(&job.input, 2, 0..5_000).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.wait_committed(&job.input.clone(), 5_000, Duration::from_secs(60)).await;
    job.supervisor.pause("driver");

    // A standby on another port; it waits for the paused leader's lease (3 s) to expire.
    let config = std::fs::read_to_string(&job.config_path).unwrap();
    let standby_port = weir_tests::job::free_port();
    let standby_config = job.supervisor.log_dir().join("standby.toml");
    let port_line = format!("127.0.0.1:{}", job.grpc_port);
    std::fs::write(
        &standby_config,
        config.replace(&port_line, &format!("127.0.0.1:{standby_port}")),
    )
    .unwrap();
    let mut standby = std::process::Command::new(weir_tests::binaries::path("weir-driver"));
    standby.arg("--config").arg(&standby_config);
    job.supervisor.spawn("standby", standby);
    job.supervisor
        .wait_for_log("standby", "Leading the job generation=2", Duration::from_secs(30))
        .await;
    kafka::produce_range(&job.input, 2, 5_000..8_000).await;
    job.wait_committed(&job.input.clone(), 8_000, Duration::from_secs(60)).await;

    job.supervisor.resume("driver");
    // The zombie finds its lease gone, ends its term without writing, and stands by.
    job.supervisor.wait_for_log("driver", "Lost the leadership", Duration::from_secs(30)).await;
    assert!(job.supervisor.is_running("driver"), "a deposed driver stays, as a standby");
    assert_eq!(job.committed_records(&job.input).await, 8_000, "the new leader's offsets stand");
    kafka::produce_range(&job.input, 2, 8_000..9_000).await;
    job.wait_committed(&job.input.clone(), 9_000, Duration::from_secs(60)).await;
    let log = job.supervisor.log("standby");
    assert!(!log.contains("Lost the leadership"), "the new leader keeps leading:\n{log}");
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 9_000, "every record arrived");
}

/// A leader killed and restarted at once (a supervisor's restart policy) does not race the
/// standby that has been waiting: the standby leads, and the restarted driver, like a standby
/// started after the kill, stands by. The job goes on with nothing lost. (Before the standbys
/// took turns by age, a late driver won the race in three runs out of three.)
#[tokio::test]
async fn a_killed_leader_restarted_at_once_leaves_the_lead_to_the_waiting_standby() {
    let mut job = JobFixture::new("pipeline-standby-first", 2, "").await;
    kafka::produce_range(&job.input, 2, 0..2_000).await;
    // A lease longer than a driver takes to start, so the late drivers are campaigning before
    // the killed one's lease ends, as in a container restarted by its policy.
    let driver = |job: &JobFixture, port: Option<u16>| {
        let mut command = job.driver_command();
        command.args(["--set", "driver.executor_timeout=8s"]);
        if let Some(port) = port {
            command.arg("--set").arg(format!("driver.grpc_listen=127.0.0.1:{port}"));
        }
        command
    };
    let first = driver(&job, None);
    job.supervisor.spawn("driver", first);
    job.start_executor("ex-1");
    job.wait_committed(&job.input.clone(), 2_000, Duration::from_secs(60)).await;
    let standby = driver(&job, Some(weir_tests::job::free_port()));
    job.supervisor.spawn("standby", standby);
    job.supervisor
        .wait_for_log("standby", "Another driver leads this job", Duration::from_secs(30))
        .await;
    // The standby has waited a while: its polls are out of step with the late drivers'.
    tokio::time::sleep(Duration::from_millis(1_150)).await;

    // Killed and back at once on its own port; and one more standby arriving late.
    job.supervisor.kill("driver");
    let restarted = driver(&job, None);
    job.supervisor.spawn("restarted", restarted);
    let late = driver(&job, Some(weir_tests::job::free_port()));
    job.supervisor.spawn("late", late);
    job.supervisor
        .wait_for_log("standby", "Leading the job generation=2", Duration::from_secs(30))
        .await;
    for late in ["restarted", "late"] {
        job.supervisor
            .wait_for_log(late, "Another driver leads this job", Duration::from_secs(30))
            .await;
    }
    kafka::produce_range(&job.input, 2, 2_000..3_000).await;
    job.wait_committed(&job.input.clone(), 3_000, Duration::from_secs(60)).await;
    for late in ["restarted", "late"] {
        let log = job.supervisor.log(late);
        assert!(!log.contains("Leading the job"), "{late} stands by:\n{log}");
    }
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 3_000, "every record arrived");
}

/// A "driver" that accepts connections and never answers (a paused driver, a wrong port): the
/// executor gives up on it after its attach deadline and looks again, and SIGTERM ends it at once,
/// also in the middle of the wait.
#[tokio::test]
async fn an_executor_never_hangs_on_a_driver_that_does_not_answer() {
    let mut job = JobFixture::new("pipeline-silent-driver", 1, "").await;
    // Never accepted: the kernel completes the handshake, and nothing ever answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let url = format!("http://{}", silent.local_addr().unwrap());
    let executor = |name: &str| {
        let binary = weir_tests::binaries::path("weir-executor");
        let mut command =
            weir_tests::job::executor_command(&binary, &job.names.job, &job.prefix, name);
        command.args(["--driver", &url]);
        command
    };
    let (first, second) = (executor("ex-1"), executor("ex-2"));
    job.supervisor.spawn("ex-1", first);
    job.supervisor
        .wait_for_log("ex-1", "did not welcome this executor within", Duration::from_secs(30))
        .await;
    let asked = std::time::Instant::now();
    let status = job.supervisor.terminate("ex-1", Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    assert!(asked.elapsed() < Duration::from_secs(3), "SIGTERM took {:?}", asked.elapsed());

    job.supervisor.spawn("ex-2", second);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asked = std::time::Instant::now();
    let status = job.supervisor.terminate("ex-2", Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "SIGTERM mid-wait took {:?}",
        asked.elapsed()
    );
    drop(silent);
}

/// A second executor started with a running one's `--id` is refused and exits non-zero naming
/// the clash, once the driver's `executor_timeout` has passed (so a restart right after a crash
/// is not mistaken for it); the first one keeps its lanes and the job goes on.
#[tokio::test]
async fn a_second_executor_with_a_running_ones_id_exits_naming_the_clash() {
    let mut job = JobFixture::new("pipeline-duplicate-id", 2, "").await;
    let input = job.input.clone();
    kafka::produce_ids(&input, 2, 1_000).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.wait_committed(&input, 1_000, Duration::from_secs(60)).await;

    let binary = weir_tests::binaries::path("weir-executor");
    let twin = weir_tests::job::executor_command(&binary, &job.names.job, &job.prefix, "ex-1");
    job.supervisor.spawn("twin", twin);
    let status = job.supervisor.wait_exit("twin", Duration::from_secs(60)).await.expect("it exits");
    assert!(!status.success(), "{status}");
    let log = job.supervisor.log("twin");
    assert!(
        log.contains("executor id ex-1 is already attached from another running process"),
        "{log}"
    );
    assert!(job.supervisor.is_running("ex-1"), "the first one is untouched");
    kafka::produce_range(&input, 2, 1_000..2_000).await;
    job.wait_committed(&input, 2_000, Duration::from_secs(60)).await;
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 2_000, "every record arrived");
}
