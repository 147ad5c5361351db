//! Kafka over SSL and SASL_SSL, on the shared broker's secure listeners that
//! `deploy/local/services.sh` sets up (a CA of its own, the SCRAM user `weir`): an exactly-once
//! job whose source and sink both go over SASL_SSL with SCRAM-SHA-512 writes every record once;
//! a job over SSL alone, and one with SCRAM-SHA-256 and its password by reference, deliver every
//! record; a wrong password, on the source or on the sink only, and a CA that did not sign the
//! broker's certificate stop the job with a config error naming the reason, instead of being
//! waited out as an outage. The harness's own clients produce and judge over PLAINTEXT.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use weir_tests::certs::TestCa;
use weir_tests::job::{JobFixture, id_counts};
use weir_tests::services::{self, SecureKafka};
use weir_tests::{group, kafka};

const LIMIT: Duration = Duration::from_secs(90);

/// A `[section]` of librdkafka properties, values quoted for TOML.
fn kafka_section(section: &str, properties: &BTreeMap<&str, String>) -> String {
    let mut text = format!("[{section}]\n");
    for (key, value) in properties {
        let quoted = serde_json::to_string(value).expect("a string quotes");
        text.push_str(&format!("\"{key}\" = {quoted}\n"));
    }
    text
}

fn topics(job: &JobFixture) -> String {
    format!("topics = [\"{}\"]", job.input)
}

fn sink(job: &JobFixture, guarantee: &str) -> String {
    format!(
        "type = \"kafka\"\ntopic = \"{}\"\npartitioning = \"same-as-input\"\nguarantee = \"{guarantee}\"",
        job.output
    )
}

/// Points the job at the secure listener `brokers`, with `source` and `sink` properties.
fn secure_config(
    job: &mut JobFixture,
    brokers: &str,
    guarantee: &str,
    source: &BTreeMap<&str, String>,
    sink_properties: &BTreeMap<&str, String>,
) {
    job.brokers = brokers.to_owned();
    let extra =
        kafka_section("source.kafka", source) + &kafka_section("sink.kafka", sink_properties);
    job.write_config_with_sink(&topics(job), &sink(job, guarantee), &extra);
}

/// Every process log of the job, for what must or must not be in them.
fn logs(job: &mut JobFixture, names: &[&str]) -> String {
    names.iter().map(|name| job.supervisor.log(name)).collect::<Vec<_>>().join("\n")
}

/// The acceptance test: exactly-once with the source, the sink, the group and every client of
/// the driver and the executors on SASL_SSL with SCRAM-SHA-512. Every record arrives once, the
/// group holds the input's end, and the password is in no log.
#[tokio::test]
async fn exactly_once_over_sasl_ssl_with_scram_sha_512_writes_every_record_once() {
    let secure: &SecureKafka = services::secure_kafka();
    let mut job = JobFixture::new("kafka-scram-512-eo", 4, "").await;
    kafka::produce_ids(&job.input, 4, 20_000).await;
    let properties = secure.sasl_properties("SCRAM-SHA-512");
    secure_config(&mut job, &secure.sasl_ssl_brokers, "exactly-once", &properties, &properties);
    job.start_driver();
    job.start_executor("ex-1");
    job.start_executor("ex-2");
    job.wait_committed(&job.input.clone(), 20_000, LIMIT).await;

    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 20_000, "every record arrived");
    assert!(counts.values().all(|&n| n == 1), "no record twice");
    let committed = group::committed(&format!("weir.{}", job.names.job), &job.input, 4);
    for p in 0..4 {
        let (_, end) = kafka::watermarks(&job.input, p);
        assert_eq!(committed.get(&p), Some(&end), "the group holds the end of partition {p}");
    }
    let log = logs(&mut job, &["driver", "ex-1", "ex-2"]);
    assert!(log.contains("Lane producer initialised"), "transactional lane producers: {log}");
    assert!(!log.contains(&secure.scram_password), "the SCRAM password is in a log");
}

/// SSL alone: the broker's certificate checked against the local CA, no client certificate, no
/// SASL. At-least-once, so the shared producer and the driver's group publishing go over it.
#[tokio::test]
async fn a_job_over_ssl_alone_delivers_every_record() {
    let secure = services::secure_kafka();
    let mut job = JobFixture::new("kafka-ssl", 2, "").await;
    kafka::produce_ids(&job.input, 2, 5_000).await;
    let properties = secure.ssl_properties();
    secure_config(&mut job, &secure.ssl_brokers, "at-least-once", &properties, &properties);
    job.start_driver();
    job.start_executor("ex-1");
    job.wait_committed(&job.input.clone(), 5_000, LIMIT).await;
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 5_000, "every record arrived");
}

/// SCRAM-SHA-256, the password read by each process from the file `services.sh` keeps it in
/// (`${file:...}`).
#[tokio::test]
async fn a_job_with_scram_sha_256_and_its_password_by_reference_delivers_every_record() {
    let secure = services::secure_kafka();
    let mut job = JobFixture::new("kafka-scram-256", 2, "").await;
    kafka::produce_ids(&job.input, 2, 5_000).await;
    let mut properties = secure.sasl_properties("SCRAM-SHA-256");
    let reference = format!("${{file:{}}}", secure.scram_password_file.display());
    properties.insert("sasl.password", reference);
    secure_config(&mut job, &secure.sasl_ssl_brokers, "exactly-once", &properties, &properties);
    job.start_driver();
    job.start_executor("ex-1");
    job.wait_committed(&job.input.clone(), 5_000, LIMIT).await;
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 5_000, "every record arrived");
    assert!(counts.values().all(|&n| n == 1), "no record twice");
}

/// OAUTHBEARER with librdkafka's unsecured test tokens, which the local broker's default
/// validator accepts: the mechanism is built in and every client of the job uses it. A client
/// asking librdkafka to fetch tokens by OIDC is refused at start (this build has no libcurl),
/// naming the property but not its value.
#[tokio::test]
async fn a_job_with_oauthbearer_delivers_every_record_and_oidc_is_refused_at_start() {
    let secure = services::secure_kafka();
    let mut job = JobFixture::new("kafka-oauthbearer", 2, "").await;
    kafka::produce_ids(&job.input, 2, 2_000).await;
    let properties = BTreeMap::from([
        ("security.protocol", "SASL_SSL".to_owned()),
        ("sasl.mechanism", "OAUTHBEARER".to_owned()),
        ("enable.sasl.oauthbearer.unsecure.jwt", "true".to_owned()),
        ("sasl.oauthbearer.config", "principal=weir".to_owned()),
        ("ssl.ca.location", secure.ca_file.display().to_string()),
    ]);
    secure_config(&mut job, &secure.sasl_ssl_brokers, "exactly-once", &properties, &properties);
    job.start_driver();
    job.start_executor("ex-1");
    job.wait_committed(&job.input.clone(), 2_000, LIMIT).await;
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 2_000, "every record arrived");
    assert!(counts.values().all(|&n| n == 1), "no record twice");
    job.supervisor.terminate("driver", Duration::from_secs(30)).await;

    let mut oidc = properties.clone();
    oidc.remove("enable.sasl.oauthbearer.unsecure.jwt");
    oidc.remove("sasl.oauthbearer.config");
    let secret = "oidc-client-secret-9b27e1";
    oidc.insert("sasl.oauthbearer.method", "oidc".to_owned());
    oidc.insert("sasl.oauthbearer.client.secret", secret.to_owned());
    oidc.insert("sasl.oauthbearer.token.endpoint.url", "https://127.0.0.1:1/token".to_owned());
    secure_config(&mut job, &secure.sasl_ssl_brokers, "exactly-once", &oidc, &oidc);
    job.start_driver();
    let status = job.supervisor.wait_exit("driver", LIMIT).await;
    let log = job.supervisor.log("driver");
    assert!(status.is_some_and(|s| !s.success()), "the driver stops: {log}");
    assert!(log.contains("not supported in this build"), "{log}");
    assert!(log.contains("(property sasl.oauthbearer."), "the error names the property: {log}");
    assert!(log.contains("(config)"), "{log}");
    assert!(!log.contains(secret), "the client secret is in the log: {log}");
}

/// A file sink has no `[sink.kafka]`: its dead letters go to the source's cluster with the
/// source's security settings, over SASL_SSL like everything else.
#[tokio::test]
async fn dead_letters_of_a_file_sink_go_over_the_sources_sasl_ssl() {
    let secure = services::secure_kafka();
    let mut job = JobFixture::new("kafka-scram-file-dead-letters", 2, "").await;
    let dead = job.names.topic("dead");
    kafka::create_topic(&dead, 1).await;
    kafka::produce_ids(&job.input, 2, 1_000).await;
    let producer: FutureProducer = kafka::client_config().create().expect("producer");
    for i in 0..20 {
        let record = FutureRecord::to(&job.input).key("bad").payload("not json").partition(i % 2);
        producer.send(record, Duration::from_secs(10)).await.expect("produce a malformed record");
    }
    job.brokers = secure.sasl_ssl_brokers.clone();
    let dir = job.supervisor.log_dir().join("out");
    let sink = format!("type = \"file\"\npath = \"{}\"", dir.display());
    let extra = format!(
        "[transform]\nsteps = [{{ type = \"parse_json\" }}]\non_record_error = \"dead-letter\"\n\
         dead_letter_topic = \"{dead}\"\n\n{}",
        kafka_section("source.kafka", &secure.sasl_properties("SCRAM-SHA-512"))
    );
    job.write_config_with_sink(&topics(&job), &sink, &extra);
    job.start_driver();
    job.start_executor("ex-1");
    job.wait_committed(&job.input.clone(), 1_020, LIMIT).await;

    let mut lines = 0;
    for entry in std::fs::read_dir(&dir).expect("the file sink's directory") {
        lines +=
            std::fs::read_to_string(entry.expect("a file").path()).expect("read").lines().count();
    }
    assert_eq!(lines, 1_000, "every JSON record in the files");
    let dead_letters: Vec<_> = kafka::read_committed(&dead).await.into_values().flatten().collect();
    assert_eq!(dead_letters.len(), 20, "every malformed record a dead letter");
}

/// Runs `job` with `source` and `sink` properties on `brokers` until the driver exits (it
/// must, within `LIMIT`), and returns its log and how long it ran.
async fn run_until_stopped(
    job: &mut JobFixture,
    brokers: &str,
    source: &BTreeMap<&str, String>,
    sink_properties: &BTreeMap<&str, String>,
) -> (String, Duration) {
    kafka::produce_ids(&job.input, 1, 100).await;
    secure_config(job, brokers, "exactly-once", source, sink_properties);
    let started = Instant::now();
    job.start_driver();
    job.start_executor("ex-1");
    let status = job.supervisor.wait_exit("driver", LIMIT).await;
    let ran = started.elapsed();
    let log = job.supervisor.log("driver");
    assert!(
        status.is_some_and(|s| !s.success()),
        "the driver stops with an error (not waiting for ever) within {LIMIT:?}: {log}"
    );
    assert_eq!(job.committed_records(&job.input).await, 0, "nothing committed");
    (log, ran)
}

/// A wrong SCRAM password looks to librdkafka like a broker that never answers; the job stops
/// at once with a config error naming the refusal, on the driver's first call. The wrong
/// password is masked like the right one.
#[tokio::test]
async fn a_wrong_scram_password_stops_the_job_with_a_named_config_error() {
    let secure = services::secure_kafka();
    let wrong = "wrong-password-5d1c9a";
    let mut properties = secure.sasl_properties("SCRAM-SHA-512");
    properties.insert("sasl.password", wrong.to_owned());
    let mut job = JobFixture::new("kafka-scram-wrong", 1, "").await;
    let (log, ran) =
        run_until_stopped(&mut job, &secure.sasl_ssl_brokers, &properties, &properties).await;
    assert!(log.contains("refuses the job's client"), "{log}");
    assert!(log.contains("SASL authentication error"), "{log}");
    assert!(log.contains("invalid credentials with SASL mechanism SCRAM-SHA-512"), "{log}");
    assert!(log.contains("(config)"), "{log}");
    assert!(!logs(&mut job, &["driver", "ex-1"]).contains(wrong), "the password is in a log");
    eprintln!("the driver stopped {ran:?} after its start");
}

/// A wrong password on the sink alone: the driver's clients get in, the executors' producers
/// do not. The task's failure is told apart from an outage (`unavailable`, waited out) by the
/// executor's probe, so it fails as `config` on its first attempt and the job stops.
#[tokio::test]
async fn a_wrong_password_on_the_sink_alone_fails_its_task_as_config_and_stops_the_job() {
    let secure = services::secure_kafka();
    let source = secure.sasl_properties("SCRAM-SHA-512");
    let mut sink = source.clone();
    sink.insert("sasl.password", "wrong-sink-password-3e8b".to_owned());
    let mut job = JobFixture::new("kafka-scram-wrong-sink", 1, "").await;
    let (log, _) = run_until_stopped(&mut job, &secure.sasl_ssl_brokers, &source, &sink).await;
    assert!(log.contains("failed after 1 attempt(s) (config)"), "{log}");
    assert!(log.contains("refuses the job's client"), "{log}");
    assert!(log.contains("SASL authentication error"), "{log}");
}

/// A CA that did not sign the broker's certificate (one of the test's own): the TLS handshake
/// fails the same way every time, and the job stops naming the certificate.
#[tokio::test]
async fn an_untrusted_broker_certificate_stops_the_job_with_a_named_config_error() {
    let secure = services::secure_kafka();
    let mut job = JobFixture::new("kafka-ssl-untrusted", 1, "").await;
    let other_ca = TestCa::new(job.supervisor.log_dir(), "other-ca");
    let mut properties = secure.ssl_properties();
    properties.insert("ssl.ca.location", other_ca.cert.display().to_string());
    let (log, _) = run_until_stopped(&mut job, &secure.ssl_brokers, &properties, &properties).await;
    assert!(log.contains("refuses the job's client"), "{log}");
    assert!(log.contains("certificate verify failed"), "{log}");
    assert!(log.contains("(config)"), "{log}");
}
