//! TLS with mutual authentication between the driver and its executors (`[driver.tls]`, the
//! executor's `--tls-*` flags): an executor with a certificate the job's CA signed runs the job
//! exactly once; a client without a certificate, one whose certificate another CA signed, and a
//! plaintext executor never attach.

use std::time::Duration;

use weir_proto::v1 as pb;
use weir_proto::v1::driver_client::DriverClient;
use weir_tests::certs::{CertFiles, TestCa};
use weir_tests::job::{JobFixture, executor_command_at};
use weir_tests::oracle::judge;
use weir_tests::scenario::read_kafka;
use weir_tests::{binaries, kafka};

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn only_executors_with_a_certificate_of_the_jobs_ca_attach() {
    let mut job = JobFixture::new("tls-mutual", 2, "").await;
    let dir = job.supervisor.log_dir().join("certs");
    let ca = TestCa::new(&dir, "job-ca");
    let driver = ca.server("driver");
    let stranger_ca = TestCa::new(&dir, "other-ca");
    let tls = format!(
        "[driver.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
        driver.cert.display(),
        driver.key.display(),
        ca.cert.display()
    );
    let sink = format!(
        "type = \"kafka\"\ntopic = \"{}\"\npartitioning = \"same-as-input\"\nguarantee = \"exactly-once\"",
        job.output
    );
    job.write_config_with_sink(&format!("topics = [\"{}\"]", job.input), &sink, &tls);
    let produced = kafka::produce_ids(&job.input, 2, 2_000).await;
    job.start_driver();
    job.supervisor.wait_for_log("driver", "Leading the job", LIMIT).await;
    let url = format!("https://127.0.0.1:{}", job.grpc_port);

    // Refused before they can say anything: no client certificate, or one of another CA.
    let no_cert = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(read(&ca.cert)));
    assert_refused(&url, no_cert, "a client without a certificate").await;
    let foreign = stranger_ca.client("intruder");
    assert_refused(&url, client_tls(&ca, &foreign), "a certificate of another CA").await;

    // A plaintext executor is told what it needs; the one with a good certificate runs the job.
    job.start_executor("ex-plain");
    let executor = ca.client("ex-1");
    let mut command = executor_command_at(
        &binaries::path("weir-executor"),
        &job.etcd_endpoints,
        &job.names.job,
        &job.prefix,
        "ex-1",
    );
    command.args(["--tls-ca", &path(&ca.cert), "--tls-cert", &path(&executor.cert)]);
    command.args(["--tls-key", &path(&executor.key)]);
    job.supervisor.spawn("ex-1", command);
    job.wait_committed(&job.input.clone(), 2_000, LIMIT).await;

    let verdict = judge(&produced, &read_kafka(&job.output).await);
    assert!(verdict.is_exactly_once(), "{verdict:?}");
    let plain = job.supervisor.log("ex-plain");
    assert!(
        plain.contains("the driver speaks TLS: start this executor with --tls-ca"),
        "the plaintext executor says what it needs: {plain}"
    );
    let driver_log = job.supervisor.log("driver");
    assert!(driver_log.contains("executor=ex-1"), "ex-1 attached: {driver_log}");
    for stranger in ["ex-plain", "intruder", "weir-test-no-cert"] {
        assert!(!driver_log.contains(&format!("executor={stranger} ")), "{stranger} attached");
    }
}

/// A TLS client that trusts the job's CA and shows `client`.
fn client_tls(ca: &TestCa, client: &CertFiles) -> tonic::transport::ClientTlsConfig {
    tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(read(&ca.cert)))
        .identity(tonic::transport::Identity::from_pem(read(&client.cert), read(&client.key)))
}

/// Connecting with `tls` and sending a hello must fail: the handshake (or the first request on
/// it) is refused, so the driver never sees the hello.
async fn assert_refused(url: &str, tls: tonic::transport::ClientTlsConfig, who: &str) {
    let attempt = async {
        let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
            .map_err(|e| e.to_string())?
            .tls_config(tls)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let hello = pb::ExecutorMessage {
            kind: Some(pb::executor_message::Kind::Hello(pb::Hello {
                protocol_version: weir_common::protocol::PROTOCOL_VERSION,
                executor_id: "weir-test-no-cert".into(),
                slots: 1,
                ..pb::Hello::default()
            })),
        };
        let stream = futures::stream::iter([hello]);
        let mut inbound = DriverClient::new(channel)
            .attach(stream)
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        inbound.message().await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(Duration::from_secs(20), attempt).await {
        Ok(Err(refused)) => println!("{who}: refused: {refused}"),
        Ok(Ok(answer)) => panic!("{who} was answered: {answer:?}"),
        Err(_) => panic!("{who}: no answer and no refusal in 20 s"),
    }
}

fn read(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}
