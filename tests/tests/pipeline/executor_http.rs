//! The executor's `--http-listen` endpoints as an orchestrator and Prometheus see them: alive but
//! not ready before any driver exists, ready once attached, and metrics that count what the
//! executor did; and `weir-executor health`, the check a container runs, agreeing with them.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use weir_common::health::get;
use weir_tests::binaries;
use weir_tests::job::{JobFixture, executor_command, free_port};
use weir_tests::kafka;
use weir_tests::metrics::sample;

/// How long one HTTP request may take.
const ANSWER: Duration = Duration::from_secs(5);

#[tokio::test]
async fn an_executor_is_live_before_a_driver_exists_and_ready_and_counting_once_attached() {
    let mut job = JobFixture::new("pipeline-executor-http", 2, "").await;
    let http = format!("127.0.0.1:{}", free_port());
    let mut executor =
        executor_command(&binaries::path("weir-executor"), &job.names.job, &job.prefix, "ex-1");
    executor.args(["--http-listen", &http]);
    job.supervisor.spawn("ex-1", executor);

    // No driver yet: the process answers, alive and not ready.
    let (code, body) = first_answer(&mut job, &http, "/healthz").await;
    assert_eq!((code, body.trim()), (200, "ok"));
    let (code, body) = get(&http, "/readyz", ANSWER).await.expect("/readyz answers");
    assert_eq!(code, 503, "{body}");
    assert!(body.starts_with("not attached: "), "{body}");
    assert_eq!(body.trim().lines().count(), 1, "one line: {body}");
    let not_ready = health(&mut job, "health-1", &["--http", &http], None).await;
    assert!(!not_ready.success(), "health exits non-zero before a driver exists");
    let live = health(&mut job, "health-2", &["--http", &http, "--live"], None).await;
    assert!(live.success(), "health --live only asks whether the process runs");

    job.start_driver();
    kafka::produce_ids(&job.input, 2, 2_000).await;
    job.wait_committed(&job.input.clone(), 2_000, Duration::from_secs(60)).await;

    let (code, body) = get(&http, "/readyz", ANSWER).await.expect("/readyz answers");
    let driver = format!("attached to driver http://127.0.0.1:{} (generation ", job.grpc_port);
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with(&driver), "{body}");
    // The address from the environment, as a container's check would take it.
    let ready = health(&mut job, "health-3", &[], Some(&http)).await;
    assert!(ready.success(), "health exits 0 once attached:\n{}", job.supervisor.log("health-3"));

    let (code, metrics) = get(&http, "/metrics", ANSWER).await.expect("/metrics answers");
    assert_eq!(code, 200, "{metrics}");
    let value = |series: &str| {
        sample(&metrics, series).unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
    };
    assert_eq!(value("weir_executor_records_read_total"), 2_000.0, "the one executor read all");
    assert_eq!(value("weir_executor_records_written_total"), 2_000.0, "no transform drops any");
    assert!(value("weir_executor_tasks_total{outcome=\"succeeded\"}") > 0.0, "{metrics}");
    assert!(value("weir_executor_task_duration_seconds_count") > 0.0, "{metrics}");
    assert_eq!(value("weir_executor_attached"), 1.0);
    assert_eq!(value("weir_executor_slots"), 2.0);
}

/// The first answer of `path`, waiting for the executor to start listening; panics if it exits
/// or has not answered within 30 s.
async fn first_answer(job: &mut JobFixture, http: &str, path: &str) -> (u16, String) {
    let started = Instant::now();
    loop {
        match get(http, path, ANSWER).await {
            Ok(answer) => return answer,
            Err(e) if started.elapsed() > Duration::from_secs(30) => {
                panic!("{path} never answered ({e}); the log:\n{}", job.supervisor.log("ex-1"))
            }
            Err(_) => {}
        }
        assert!(
            job.supervisor.is_running("ex-1"),
            "the executor exited:\n{}",
            job.supervisor.log("ex-1")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `weir-executor health ARGS` (with `WEIR_EXECUTOR_HTTP_LISTEN` set to `env` when given)
/// to its end under the job's supervisor.
async fn health(job: &mut JobFixture, name: &str, args: &[&str], env: Option<&str>) -> ExitStatus {
    let mut command = std::process::Command::new(binaries::path("weir-executor"));
    command.arg("health").args(args).env_remove("WEIR_EXECUTOR_HTTP_LISTEN");
    if let Some(http) = env {
        command.env("WEIR_EXECUTOR_HTTP_LISTEN", http);
    }
    job.supervisor.spawn(name, command);
    job.supervisor
        .wait_exit(name, Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("weir-executor health ran for 20 s"))
}
