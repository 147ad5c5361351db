//! A Kafka password given as a reference (`${env:NAME}`) is read by each process from its own
//! environment: the job runs, and the password appears in no log, no status page, no metrics and
//! not in the welcome the driver sends executors (which carries the reference). A driver that
//! cannot resolve a reference stops at start, naming the key and the variable.

use std::time::Duration;

use weir_common::health;
use weir_proto::v1 as pb;
use weir_proto::v1::driver_client::DriverClient;
use weir_tests::job::{JobFixture, executor_command_at, free_port, id_counts};
use weir_tests::{binaries, kafka};

const LIMIT: Duration = Duration::from_secs(60);
const VARIABLE: &str = "WEIR_TEST_KAFKA_PASSWORD";
const PASSWORD: &str = "s3cr3t-never-logged-7f2c";

#[tokio::test]
async fn a_password_given_by_reference_never_leaves_the_process_that_reads_it() {
    let mut job = JobFixture::new("secrets-by-reference", 2, "").await;
    job.http_listen = format!("127.0.0.1:{}", free_port());
    // The broker listens in plaintext, so librdkafka reads the password and leaves it unused:
    // what this test follows is where the value travels.
    let extra = format!("[source.kafka]\n\"sasl.password\" = \"${{env:{VARIABLE}}}\"\n");
    job.write_config(&format!("topics = [\"{}\"]", job.input), &extra);
    kafka::produce_ids(&job.input, 2, 1_000).await;

    // Without the variable the driver does not start, and says what is missing.
    let mut bare = job.driver_command();
    bare.env_remove(VARIABLE);
    job.supervisor.spawn("driver-unset", bare);
    let status = job.supervisor.wait_exit("driver-unset", LIMIT).await;
    assert!(status.is_some_and(|s| !s.success()), "the driver without the variable stopped");
    let log = job.supervisor.log("driver-unset");
    assert!(log.contains("source.kafka.\"sasl.password\""), "{log}");
    assert!(log.contains(&format!("environment variable {VARIABLE} is not set")), "{log}");

    let mut driver = job.driver_command();
    driver.env(VARIABLE, PASSWORD);
    job.supervisor.spawn("driver", driver);
    let mut executor = executor_command_at(
        &binaries::path("weir-executor"),
        &job.etcd_endpoints,
        &job.names.job,
        &job.prefix,
        "ex-1",
    );
    executor.env(VARIABLE, PASSWORD);
    job.supervisor.spawn("ex-1", executor);
    job.wait_committed(&job.input.clone(), 1_000, LIMIT).await;
    assert_eq!(id_counts(&kafka::read_committed(&job.output).await).len(), 1_000);

    // What an executor is sent: the reference, not the value.
    let welcome = welcome(job.grpc_port).await;
    assert!(welcome.contains(&format!("${{env:{VARIABLE}}}")), "{welcome}");
    let base = format!("http://{}", job.http_listen);
    let (_, status) = health::get(&base, "/api/status", LIMIT).await.unwrap();
    let (_, page) = health::get(&base, "/", LIMIT).await.unwrap();
    let (_, metrics) = health::get(&base, "/metrics", LIMIT).await.unwrap();
    for (what, text) in [
        ("the welcome", welcome),
        ("the driver's log", job.supervisor.log("driver")),
        ("the executor's log", job.supervisor.log("ex-1")),
        ("/api/status", status),
        ("the status page", page),
        ("/metrics", metrics),
    ] {
        assert!(!text.contains(PASSWORD), "{what} holds the password:\n{text}");
    }
}

/// The config an executor is welcomed with, as a client that says hello sees it.
async fn welcome(grpc_port: u16) -> String {
    let url = format!("http://127.0.0.1:{grpc_port}");
    let hello = pb::ExecutorMessage {
        kind: Some(pb::executor_message::Kind::Hello(pb::Hello {
            protocol_version: weir_common::protocol::PROTOCOL_VERSION,
            executor_id: "weir-test-listener".into(),
            slots: 1,
            ..pb::Hello::default()
        })),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(hello).await.unwrap();
    let mut client = DriverClient::connect(url).await.expect("connect to the driver");
    let mut inbound = client
        .attach(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("attach")
        .into_inner();
    match inbound.message().await {
        Ok(Some(pb::DriverMessage {
            kind: Some(pb::driver_message::Kind::Welcome(w)), ..
        })) => w.config_toml,
        other => panic!("no welcome: {other:?}"),
    }
}

/// With `driver.http_token`, the status page, `/api/*` and `/metrics` answer only a request that
/// carries the token; health stays open for the container checks; `weirctl` sends the token it
/// reads from the same config.
#[tokio::test]
async fn the_status_api_and_metrics_need_the_http_token_when_one_is_set() {
    let mut job = JobFixture::new("http-token", 1, "").await;
    job.http_listen = format!("127.0.0.1:{}", free_port());
    job.write_config(&format!("topics = [\"{}\"]", job.input), "");
    let token_file = job.supervisor.log_dir().join("http-token");
    std::fs::write(&token_file, "t0ken-4b9e\n").unwrap();
    let setting = format!("driver.http_token=${{file:{}}}", token_file.display());
    job.start_driver_with(&[&setting]);
    job.start_executor("ex-1");
    job.supervisor.wait_for_log("driver", "Executor attached", LIMIT).await;

    let base = format!("http://{}", job.http_listen);
    let get = |path: &'static str, token: Option<&'static str>| {
        let base = base.clone();
        async move { health::get_with_token(&base, path, LIMIT, token).await.unwrap().0 }
    };
    for path in ["/", "/api/status", "/metrics"] {
        assert_eq!(get(path, None).await, 401, "{path} without the token");
        assert_eq!(get(path, Some("guess")).await, 401, "{path} with a wrong token");
        assert_eq!(get(path, Some("t0ken-4b9e")).await, 200, "{path} with the token");
    }
    assert_eq!(get("/healthz", None).await, 200);
    assert_eq!(get("/readyz", None).await, 200);

    let listed = job.weirctl(&["--set", &setting, "executors"]).await.ok();
    assert!(listed.stdout.contains("ex-1"), "{}", listed.stdout);
    let refused = job.weirctl(&["executors"]).await;
    assert_ne!(refused.code, 0, "without the token: {refused:?}");
    assert!(refused.stderr.contains("http_token"), "{}", refused.stderr);
    assert!(!job.supervisor.log("driver").contains("t0ken-4b9e"), "the token in the log");
}
