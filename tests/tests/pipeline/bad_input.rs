use std::time::Duration;

use weir_tests::job::{JobFixture, free_port};
use weir_tests::supervisor::Supervisor;
use weir_tests::{binaries, names};

fn driver_with(config: &str) -> std::process::Output {
    let dir = std::env::temp_dir().join(names::unique("weir-bad-config"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("job.toml");
    std::fs::write(&path, config).unwrap();
    std::process::Command::new(binaries::path("weir-driver"))
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run weir-driver")
}

const VALID: &str = r#"
[job]
name = "bad-input"
[source]
brokers = "127.0.0.1:9092"
topics = ["raw"]
[sink]
type = "stdout"
"#;

/// A malformed config stops the driver at once with exit code 2 and an error naming the key.
#[test]
fn a_malformed_config_is_refused_naming_the_key() {
    let cases = [
        (VALID.replace("type = \"stdout\"", "type = \"stdout\"\ntopik = \"x\""), "sink.topik"),
        (VALID.replace("[job]", "[job]\nbatch_interval = \"5\""), "job.batch_interval"),
        (VALID.replace("type = \"stdout\"", "type = \"kafka\""), "sink.topic"),
        (VALID.replace("[sink]", "[sink]\nguarantee = \"exactly-twice\""), "sink.guarantee"),
    ];
    for (config, key) in cases {
        let out = driver_with(&config);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {stderr}");
        assert!(stderr.contains(key), "the error names {key}: {stderr}");
    }
}

/// etcd unreachable at start: the driver says so and keeps retrying (no crash loop); SIGTERM
/// still stops it cleanly.
#[tokio::test]
async fn unreachable_etcd_at_start_is_retried_with_a_clear_message() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let config = format!(
        "{VALID}\n[checkpoint]\netcd = [\"{dead}\"]\n[driver]\nhttp_listen = \"off\"\ngrpc_listen = \"127.0.0.1:{}\"\n",
        free_port()
    );
    let mut supervisor = Supervisor::new("bad-etcd");
    let path = supervisor.log_dir().join("job.toml");
    std::fs::write(&path, config).unwrap();
    let mut command = std::process::Command::new(binaries::path("weir-driver"));
    command.arg("--config").arg(&path);
    supervisor.spawn("driver", command);
    supervisor
        .wait_for_log("driver", "connecting to etcd failed; retrying", Duration::from_secs(15))
        .await;
    supervisor.wait_for_log("driver", "attempt=2", Duration::from_secs(15)).await;
    assert!(supervisor.log("driver").contains(&dead), "the message names the endpoint");
    assert!(supervisor.is_running("driver"), "still running, not crashed");
    let status = supervisor.terminate("driver", Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
}

/// Kafka unreachable at start: the driver leads, says it cannot read the source topics, keeps
/// retrying, and stops cleanly on SIGTERM.
#[tokio::test]
async fn unreachable_kafka_at_start_is_retried_with_a_clear_message() {
    let mut job = JobFixture::new("bad-kafka", 1, "").await;
    let dead = format!("127.0.0.1:{}", free_port());
    let config = std::fs::read_to_string(&job.config_path).unwrap();
    let config = config.replacen(
        &format!("brokers = \"{}\"", weir_tests::services::ensure().kafka_brokers),
        &format!("brokers = \"{dead}\""),
        1,
    );
    std::fs::write(&job.config_path, config).unwrap();
    job.start_driver();
    job.supervisor
        .wait_for_log(
            "driver",
            "reading the source topics failed; retrying",
            Duration::from_secs(60),
        )
        .await;
    assert!(job.supervisor.log("driver").contains(&dead), "the message names the brokers");
    assert!(job.supervisor.is_running("driver"));
    let status = job.supervisor.terminate("driver", Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
}

/// `on_record_error = "fail"`: a malformed record stops the job with an error naming the record.
#[tokio::test]
async fn a_malformed_record_stops_the_job_when_errors_fail() {
    let mut job =
        JobFixture::new("bad-record", 1, "[transform]\nsteps = [{ type = \"parse_json\" }]").await;
    let out = std::process::Command::new(binaries::path("weir-kafka"))
        .args(["produce", &job.input, "20", "--malformed-every", "10"])
        .output()
        .unwrap();
    assert!(out.status.success());
    job.start_driver();
    job.start_executor("ex-1");
    let status =
        job.supervisor.wait_exit("driver", Duration::from_secs(60)).await.expect("driver stops");
    assert!(!status.success());
    let log = job.supervisor.log("driver");
    assert!(log.contains(&format!("record {}-0@9 rejected", job.input)), "{log}");
    assert_eq!(job.committed_records(&job.input).await, 0, "nothing past the bad record committed");
}
