//! Loading, overrides, validation and the TOML round trip, judged by the values and error texts a
//! user would see.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::transform::{OnRecordError, StepConfig};

const MINIMAL: &str = r#"
[job]
name = "j"
[source]
brokers = "127.0.0.1:9092"
topics = ["raw"]
[sink]
type = "stdout"
"#;

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/clean-events.toml")
}

fn error(text: &str) -> String {
    JobConfig::from_toml_str(text).expect_err("the config should be refused").to_string()
}

fn with(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}

/// Writes `text` to a fresh file for `JobConfig::load`.
fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_example_loads_and_validates() {
    let config = JobConfig::load(Some(&example_path()), Vec::new(), &[]).unwrap();
    assert_eq!(config.job.name, "clean-events");
    assert_eq!(config.source.topics, ["raw-events"]);
    assert_eq!(config.transform.steps.len(), 5);
    assert_eq!(
        config.transform.steps[1],
        StepConfig::Filter {
            field: "type".into(),
            equals: None,
            not_equals: Some("heartbeat".into()),
            exists: None
        }
    );
    assert_eq!(config.transform.on_record_error, OnRecordError::DeadLetter);
    assert_eq!(config.sink.kind, SinkKind::Kafka);
    assert_eq!(config.sink.topic.as_deref(), Some("clean-events"));
    assert_eq!(config.sink.brokers.as_deref(), Some("127.0.0.1:9092"), "filled from source");
    assert_eq!(config.checkpoint, CheckpointConfig::default());
    assert_eq!(config.driver, DriverSection::default());
}

#[test]
fn the_hardened_example_loads_and_validates_with_every_security_setting_on() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/hardened.toml");
    let config = JobConfig::load(Some(&path), Vec::new(), &[]).unwrap();
    assert!(config.driver.tls.is_some(), "mutual TLS to executors");
    assert_eq!(config.driver.advertise_url(), "https://driver-1:7070");
    assert!(config.driver.http_token.as_deref().is_some_and(|t| t.starts_with("${file:")));
    assert!(config.checkpoint.tls.is_some() && config.checkpoint.user.is_some());
    for kafka in [&config.source.kafka, &config.sink.kafka] {
        assert_eq!(kafka["security.protocol"], "SASL_SSL");
        assert_eq!(kafka["sasl.password"], "${env:WEIR_KAFKA_PASSWORD}", "by reference");
    }
    assert_eq!(
        config.checkpoint.password.as_deref(),
        Some("${file:/run/secrets/etcd-driver-password}")
    );
}

#[test]
fn a_minimal_config_gets_the_defaults() {
    let config = JobConfig::from_toml_str(MINIMAL).unwrap();
    assert_eq!(config.job.batch_interval, Duration::from_secs(1));
    assert_eq!(config.source.starting_offsets, StartingOffsets::Earliest);
    assert!(config.source.kafka.is_empty());
    assert_eq!(config.transform, Default::default());
    assert_eq!(config.sink.guarantee, Guarantee::AtLeastOnce);
    assert_eq!(config.sink.partitioning, Partitioning::Key);
    assert_eq!(config.sink.brokers, None, "only a kafka sink gets the source's brokers");
    assert_eq!(config.checkpoint.etcd, ["http://127.0.0.1:2379"]);
    assert_eq!(config.checkpoint.prefix, "/weir");
    let driver = &config.driver;
    assert_eq!(driver.grpc_listen.to_string(), "127.0.0.1:7070");
    assert_eq!(driver.advertise_url(), "http://127.0.0.1:7070");
    assert_eq!(driver.http_listen.unwrap().to_string(), "127.0.0.1:7071");
    assert_eq!(driver.executor_timeout, Duration::from_secs(5));
    assert_eq!(driver.heartbeat_interval, Duration::from_secs(1));
    assert_eq!(driver.max_task_attempts, 4);
    assert_eq!(driver.task_retry_backoff, Duration::from_millis(500));
    assert_eq!(config.source_topics(), ["raw"]);
}

#[test]
fn each_starting_offsets_form_parses() {
    let starting = |value: &str| {
        JobConfig::from_toml_str(&MINIMAL.replace(
            "topics = [\"raw\"]",
            &format!("topics = [\"raw\"]\nstarting_offsets = {value}"),
        ))
        .map(|config| config.source.starting_offsets)
    };
    assert_eq!(starting("\"earliest\"").unwrap(), StartingOffsets::Earliest);
    assert_eq!(starting("\"latest\"").unwrap(), StartingOffsets::Latest);
    assert_eq!(
        starting("{ timestamp_ms = 1700000000000 }").unwrap(),
        StartingOffsets::Timestamp { timestamp_ms: 1_700_000_000_000 }
    );
    let offsets = BTreeMap::from([("raw".to_owned(), BTreeMap::from([(0, 42), (1, 7)]))]);
    assert_eq!(
        starting("{ offsets = { raw = { 0 = 42, 1 = 7 } } }").unwrap(),
        StartingOffsets::Offsets { offsets }
    );

    let refused = |value: &str| starting(value).unwrap_err().to_string();
    assert!(refused("\"newest\"").starts_with("source.starting_offsets: \"newest\" is not a"));
    assert!(
        refused("{ offsets = { raw = { x = 1 } } }")
            .starts_with("source.starting_offsets.offsets.raw.x: \"x\" is not a partition number"),
    );
    assert_eq!(
        refused("{ offsets = { raw = { 0 = -1 } } }"),
        "source.starting_offsets.offsets.raw.0: got -1, expected an offset >= 0"
    );
    assert_eq!(
        refused("{ offsets = { other = { 0 = 1 } } }"),
        "source.starting_offsets.offsets.other: \"other\" is not in source.topics"
    );
    assert!(refused("{ at = 1 }").starts_with("source.starting_offsets.at: unknown key"));
}

#[test]
fn env_beats_the_file_and_set_beats_env() {
    let path = temp_file("precedence.toml", &with("[driver]\nexecutor_timeout = \"10s\"\n"));
    let config = JobConfig::load(
        Some(&path),
        env(&[
            ("WEIR__DRIVER__EXECUTOR_TIMEOUT", "20s"),
            ("WEIR__JOB__BATCH_INTERVAL", "2s"),
            ("WEIR__SOURCE__KAFKA__FETCH_MAX_BYTES", "1048576"),
            ("WEIR_LOG", "debug"),
            ("PATH", "/usr/bin"),
        ]),
        &strings(&[
            "job.batch_interval=3s",
            "source.topics=[\"a\",\"b\"]",
            "source.kafka.enable.auto.commit=false",
        ]),
    )
    .unwrap();
    assert_eq!(config.driver.executor_timeout, Duration::from_secs(20), "env over file");
    assert_eq!(config.job.batch_interval, Duration::from_secs(3), "--set over env");
    assert_eq!(config.source.topics, ["a", "b"]);
    let kafka = &config.source.kafka;
    assert_eq!(kafka.get("fetch.max.bytes").map(String::as_str), Some("1048576"));
    assert_eq!(kafka.get("enable.auto.commit").map(String::as_str), Some("false"));
}

#[test]
fn overrides_alone_make_a_config_and_bad_ones_are_named() {
    let sets = strings(&[
        "job.name=j",
        "source.brokers=127.0.0.1:9092",
        "source.pattern=raw-.*",
        "sink.type=stdout",
        "driver.http_listen=off",
    ]);
    let config = JobConfig::load(None, Vec::new(), &sets).unwrap();
    assert_eq!(config.driver.http_listen, None);
    let matcher = config.source.topic_matcher().unwrap();
    assert!(matcher.is_match("raw-1") && !matcher.is_match("x-raw-1"));
    assert!(config.source_topics().is_empty());

    let refused = |set: &str| JobConfig::load(None, Vec::new(), &strings(&[set])).unwrap_err();
    assert_eq!(
        refused("job.name").to_string(),
        "--set job.name: expected key=value, like --set job.batch_interval=2s"
    );
    let path = temp_file("not-a-table.toml", MINIMAL);
    let error = JobConfig::load(Some(&path), Vec::new(), &strings(&["job.name.x=1"])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "job.name: is not a table but a value of type string, so --set job.name.x=1 cannot set a key in it"
    );
}

#[test]
fn unknown_keys_missing_keys_and_syntax_are_named() {
    assert!(error(&with("topik = \"x\"")).starts_with("sink.topik: unknown key; expected"));
    assert_eq!(error("[job]\nname = \"j\""), "source: missing");
    assert_eq!(error(&MINIMAL.replace("name = \"j\"", "")), "job.name: missing");
    assert_eq!(error(&MINIMAL.replace("type = \"stdout\"", "")), "sink.type: missing");
    let syntax = error("[job\n");
    assert!(syntax.starts_with("config: TOML parse error at line 1"), "{syntax}");
    let missing = JobConfig::load(Some(Path::new("/nonexistent/job.toml")), Vec::new(), &[]);
    assert_eq!(
        missing.unwrap_err().to_string(),
        "config file /nonexistent/job.toml: No such file or directory (os error 2)"
    );
}

#[test]
fn bad_durations_name_the_key() {
    let five = JobConfig::load(None, env(&[("WEIR__JOB__BATCH_INTERVAL", "5")]), &[]);
    assert!(five.is_err());
    assert_eq!(
        error(&MINIMAL.replace("name = \"j\"", "name = \"j\"\nbatch_interval = \"5\"")),
        r#"job.batch_interval: "5" is not a duration; write it like "500ms", "5s" or "2m""#
    );
    assert_eq!(
        error(&with("[driver]\nexecutor_timeout = 5")),
        r#"driver.executor_timeout: 5 is not a duration; write it like "500ms", "5s" or "2m""#
    );
}

#[test]
fn heartbeat_must_be_at_most_half_the_executor_timeout() {
    assert_eq!(
        error(&with("[driver]\nheartbeat_interval = \"3s\"")),
        "driver.heartbeat_interval: \"3s\" is more than half of driver.executor_timeout (\"5s\"); \
         an executor must be able to miss a heartbeat before it is declared lost"
    );
    assert!(JobConfig::from_toml_str(&with("[driver]\nheartbeat_interval = \"2500ms\"")).is_ok());
}

/// `MINIMAL` with a Kafka sink whose `[sink]` section ends with `extra`.
fn kafka_sink(extra: &str) -> String {
    MINIMAL.replace("type = \"stdout\"", &format!("type = \"kafka\"\ntopic = \"out\"\n{extra}"))
}

#[test]
fn every_guarantee_is_accepted_with_a_sink_that_can_keep_it() {
    for guarantee in ["exactly-once", "at-least-once", "at-most-once"] {
        let config = JobConfig::from_toml_str(&kafka_sink(&format!("guarantee = \"{guarantee}\"")));
        assert_eq!(config.expect(guarantee).sink.guarantee.to_string(), guarantee);
    }
    assert!(JobConfig::from_toml_str(&with("guarantee = \"at-most-once\"")).is_ok());
    assert_eq!(
        error(&with("guarantee = \"exactly-once\"")),
        "sink.guarantee: \"exactly-once\" needs the kafka sink (transactions) or the file sink \
         (idempotent overwrite); stdout cannot take back what a failed task printed"
    );
}

#[test]
fn exactly_once_needs_the_sink_on_the_source_cluster() {
    let message = error(&kafka_sink("guarantee = \"exactly-once\"\nbrokers = \"other:9092\""));
    assert!(
        message.starts_with("sink.brokers: \"other:9092\" differs from source.brokers"),
        "{message}"
    );
    assert!(message.contains("a transaction spans one cluster"), "{message}");
    let at_least_once = kafka_sink("brokers = \"other:9092\"");
    assert!(JobConfig::from_toml_str(&at_least_once).is_ok(), "fine at-least-once");
}

#[test]
fn the_transaction_timeout_must_outlast_two_batch_intervals() {
    let slow = |sink: &str| {
        kafka_sink(sink).replace("name = \"j\"", "name = \"j\"\nbatch_interval = \"45s\"")
    };
    assert_eq!(
        error(&slow("guarantee = \"exactly-once\"")),
        "sink.transaction_timeout: \"1m\" is less than \"90s\": a task's transaction must \
         outlast at least two batch intervals (job.batch_interval = \"45s\"), and librdkafka \
         needs 1s or more"
    );
    let longer = slow("guarantee = \"exactly-once\"\ntransaction_timeout = \"2m\"");
    assert!(JobConfig::from_toml_str(&longer).is_ok());
    let own = kafka_sink(
        "guarantee = \"exactly-once\"\n[sink.kafka]\n\"transaction.timeout.ms\" = \"5000\"",
    );
    let message = error(&own);
    assert!(message.starts_with("sink.kafka: set the transaction timeout with"), "{message}");
}

#[test]
fn exactly_once_files_refuse_dead_letters_in_kafka() {
    let files = MINIMAL.replace(
        "type = \"stdout\"",
        "type = \"file\"\npath = \"/tmp/x\"\nguarantee = \"exactly-once\"",
    );
    assert!(JobConfig::from_toml_str(&files).is_ok());
    let dead = format!(
        "{files}[transform]\non_record_error = \"dead-letter\"\ndead_letter_topic = \"dead\"\n"
    );
    let message = error(&dead);
    assert!(
        message.starts_with("transform.on_record_error: \"dead-letter\" with the file sink"),
        "{message}"
    );
}

#[test]
fn dead_letters_need_a_topic_of_their_own() {
    let dead_letter = "[transform]\non_record_error = \"dead-letter\"\n";
    assert_eq!(
        error(&format!("{MINIMAL}{dead_letter}")),
        "transform.dead_letter_topic: on_record_error = \"dead-letter\" needs a dead_letter_topic"
    );
    assert!(
        error(&format!("{MINIMAL}{dead_letter}dead_letter_topic = \"raw\"\n"))
            .starts_with("transform.dead_letter_topic: \"raw\" is also a source topic")
    );
    let text = format!("{MINIMAL}{dead_letter}dead_letter_topic = \"raw-dlq\"\n");
    assert!(JobConfig::from_toml_str(&text).is_ok());
}

#[test]
fn cross_key_rules_name_the_key() {
    let both = MINIMAL.replace("topics = [\"raw\"]", "topics = [\"raw\"]\npattern = \"r.*\"");
    assert_eq!(error(&both), "source: give either topics or pattern, not both");
    let kafka = MINIMAL.replace("type = \"stdout\"", "type = \"kafka\"\ntopic = \"raw\"");
    assert!(error(&kafka).starts_with("sink.topic: \"raw\" is also a source topic"));
    assert_eq!(error(&with("path = \"/tmp/out\"")), "sink.path: only a file sink takes a path");
    assert!(
        error(&MINIMAL.replace("name = \"j\"", "name = \"my job\""))
            .starts_with("job.name: got \"my job\"")
    );
    assert!(
        error(&with("[checkpoint]\nprefix = \"/weir/\""))
            .starts_with("checkpoint.prefix: got \"/weir/\"")
    );
}

#[test]
fn to_toml_string_round_trips() {
    let mut config = JobConfig::load(Some(&example_path()), Vec::new(), &[]).unwrap();
    let text = config.to_toml_string();
    assert_eq!(JobConfig::from_toml_str(&text).unwrap(), config, "{text}");

    config.job.batch_interval = Duration::from_millis(1500);
    config.source.starting_offsets = StartingOffsets::Offsets {
        offsets: BTreeMap::from([("raw-events".to_owned(), BTreeMap::from([(0, 42), (10, 7)]))]),
    };
    config.source.kafka.insert("fetch.max.bytes".into(), "1048576".into());
    config.driver.http_listen = None;
    config.driver.advertise = Some("http://driver:7070".into());
    config.driver.executor_timeout = Duration::from_secs(120);
    config.driver.outage_limit = Some(Duration::from_secs(600));
    let text = config.to_toml_string();
    assert_eq!(JobConfig::from_toml_str(&text).unwrap(), config, "{text}");

    config.source.starting_offsets = StartingOffsets::Timestamp { timestamp_ms: 1_700_000_000_000 };
    let text = config.to_toml_string();
    assert_eq!(JobConfig::from_toml_str(&text).unwrap(), config, "{text}");

    config.source.starting_offsets = StartingOffsets::Latest;
    let text = config.to_toml_string();
    assert_eq!(JobConfig::from_toml_str(&text).unwrap(), config, "{text}");
}

#[test]
fn masked_toml_hides_secrets_only() {
    let mut config = JobConfig::from_toml_str(MINIMAL).unwrap();
    config.source.kafka.insert("sasl.password".into(), "hunter2".into());
    config.source.kafka.insert("sasl.oauthbearer.config".into(), "client_secret=s3".into());
    config.source.kafka.insert("security.protocol".into(), "SASL_SSL".into());
    let masked = config.masked_toml();
    assert!(!masked.contains("hunter2") && !masked.contains("s3"), "{masked}");
    assert!(masked.contains("SASL_SSL"), "{masked}");
    assert!(masked.contains("\"****\""), "{masked}");
    assert!(config.to_toml_string().contains("hunter2"));
}

#[test]
fn the_http_token_must_be_a_reference_and_a_plain_one_is_not_echoed() {
    let err = error(&with("[driver]\nhttp_token = \"hunter2\""));
    assert!(err.starts_with("driver.http_token: got a plain value, expected a reference"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let config =
        JobConfig::from_toml_str(&with("[driver]\nhttp_token = \"${env:TOKEN}\"")).unwrap();
    assert_eq!(config.driver.http_token.as_deref(), Some("${env:TOKEN}"));
}

#[test]
fn passwords_inside_urls_are_masked_in_logs() {
    use super::mask_url_password;
    assert_eq!(
        mask_url_password("http://weir:hunter2@etcd-1:2379"),
        "http://weir:****@etcd-1:2379"
    );
    assert_eq!(mask_url_password("http://etcd-1:2379"), "http://etcd-1:2379");
    assert_eq!(mask_url_password("http://weir@etcd-1:2379"), "http://weir@etcd-1:2379");
    let config = with("[checkpoint]\netcd = [\"http://weir:hunter2@etcd-1:2379\"]");
    let masked = JobConfig::from_toml_str(&config).unwrap().masked_toml();
    assert!(!masked.contains("hunter2") && masked.contains("weir:****@etcd-1"), "{masked}");
}

#[test]
fn unknown_keys_inside_a_step_are_named() {
    let text = with("[transform]\nsteps = [{ type = \"keep\", fields = [\"a\"], x = 1 }]");
    assert_eq!(error(&text), "transform.steps[0].x: unknown key; expected `fields`");
}

#[test]
fn flow_limits_are_positive_and_the_initial_rate_within_the_maximum() {
    let source = |extra: &str| {
        MINIMAL.replace("topics = [\"raw\"]", &format!("topics = [\"raw\"]\n{extra}"))
    };
    let config = JobConfig::from_toml_str(&source(
        "max_rate_per_partition = 1000\nmax_records_per_batch = 50000\n\
         initial_rate_per_partition = 100\non_data_loss = \"skip\"\nbackpressure = false",
    ))
    .unwrap();
    assert_eq!(config.source.max_rate_per_partition, Some(1000));
    assert_eq!(config.source.max_records_per_batch, Some(50_000));
    assert_eq!(config.source.initial_rate_per_partition, Some(100));
    assert_eq!(config.source.on_data_loss, super::OnDataLoss::Skip);
    assert!(!config.source.backpressure);
    let defaults = JobConfig::from_toml_str(MINIMAL).unwrap();
    assert_eq!(defaults.source.on_data_loss, super::OnDataLoss::Fail);
    assert!(defaults.source.backpressure);
    assert_eq!(defaults.source.lanes, 8);
    assert_eq!(JobConfig::from_toml_str(&source("lanes = 2")).unwrap().source.lanes, 2);
    for lanes in ["0", "1025"] {
        assert_eq!(
            error(&source(&format!("lanes = {lanes}"))),
            format!("source.lanes: got {lanes}, expected a number from 1 to 1024")
        );
    }
    assert_eq!(
        error(&source("max_records_per_batch = 0")),
        "source.max_records_per_batch: got 0, expected a number >= 1 (leave it out for no limit)"
    );
    assert_eq!(
        error(&source("max_rate_per_partition = 10\ninitial_rate_per_partition = 20")),
        "source.initial_rate_per_partition: 20 is above source.max_rate_per_partition (10)"
    );
    assert!(error(&source("on_data_loss = \"ignore\"")).starts_with("source.on_data_loss"));
    // The effective config round-trips.
    let again = JobConfig::from_toml_str(&config.to_toml_string()).unwrap();
    assert_eq!(again, config);
}

#[test]
fn extreme_durations_are_refused_by_name() {
    let err = error(&MINIMAL.replace("name = \"j\"", "name = \"j\"\nbatch_interval = \"100000h\""));
    assert_eq!(err, r#"job.batch_interval: got "100000h", expected between "10ms" and "1h""#);
    let err = error(&with("[driver]\nexecutor_timeout = \"2h\""));
    assert_eq!(err, r#"driver.executor_timeout: got "2h", expected at most "10m""#);
    let err = error(&with("[driver]\ntask_stall_timeout = \"1s\""));
    assert!(
        err.starts_with(r#"driver.task_stall_timeout: got "1s", expected at least three"#),
        "{err}"
    );
    let err = error(&with("[driver]\ntask_retry_backoff = \"1h\""));
    assert_eq!(err, r#"driver.task_retry_backoff: got "1h", expected at most "10m""#);
    let err = error(&with("[driver]\noutage_limit = \"30s\""));
    assert_eq!(err, r#"driver.outage_limit: got "30s", expected at least "1m", or "off""#);
}

#[test]
fn the_outage_limit_is_off_by_default_and_takes_a_duration_or_off() {
    let limit = |extra: &str| JobConfig::from_toml_str(&with(extra)).unwrap().driver.outage_limit;
    assert_eq!(limit(""), None, "waited out for ever by default");
    assert_eq!(limit("[driver]\noutage_limit = \"off\""), None);
    assert_eq!(limit("[driver]\noutage_limit = \"15m\""), Some(Duration::from_secs(900)));
    let err = error(&with("[driver]\noutage_limit = 15"));
    assert!(err.contains("driver.outage_limit") && err.contains("not a duration"), "{err}");
}

#[test]
fn etcd_over_tls_with_a_user_needs_its_settings_together_and_a_password_by_reference() {
    let tls = "[checkpoint.tls]\nca = \"ca.pem\"\n";
    let err = error(&with("[checkpoint]\netcd = [\"https://etcd-1:2379\"]"));
    assert_eq!(
        err,
        r#"checkpoint.etcd: got "https://etcd-1:2379", expected an http:// URL, or set [checkpoint.tls] (ca) for https://"#
    );
    let err = error(&with(&format!("[checkpoint]\netcd = [\"http://etcd-1:2379\"]\n{tls}")));
    assert!(err.contains("expected an https:// URL ([checkpoint.tls] is set)"), "{err}");
    let err = error(&with("[checkpoint]\netcd = [\"etcd-1:2379\"]"));
    assert!(err.contains("expected an http:// or https:// URL"), "{err}");
    let err = error(&with("[checkpoint]\nuser = \"weir-driver\""));
    assert_eq!(err, "checkpoint.password: checkpoint.user needs a password");
    let err = error(&with("[checkpoint]\npassword = \"${env:P}\""));
    assert_eq!(err, "checkpoint.user: checkpoint.password is set without a user");
    let err = error(&with("[checkpoint]\nuser = \"weir-driver\"\npassword = \"hunter2\""));
    assert!(
        err.starts_with("checkpoint.password: got a plain value, expected a reference"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "the refusal does not echo the password: {err}");
    let half = "[checkpoint.tls]\nca = \"ca.pem\"\ncert = \"c.pem\"\n";
    let err = error(&with(&format!("[checkpoint]\netcd = [\"https://etcd-1:2379\"]\n{half}")));
    assert_eq!(err, "checkpoint.tls: cert and key go together: give both or neither");

    let text = with(
        "[checkpoint]\netcd = [\"https://etcd-1:2379\", \"https://etcd-2:2379\"]\n\
         user = \"weir-driver\"\npassword = \"${file:/run/secrets/etcd}\"\n\
         [checkpoint.tls]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"c.key\"\n",
    );
    let config = JobConfig::from_toml_str(&text).unwrap();
    assert_eq!(config.checkpoint.user.as_deref(), Some("weir-driver"));
    let files = config.checkpoint.tls.as_ref().unwrap();
    assert_eq!(files.key.as_deref(), Some(std::path::Path::new("c.key")));
    let again = JobConfig::from_toml_str(&config.to_toml_string()).unwrap();
    assert_eq!(again, config, "round-trips");
    assert!(config.masked_toml().contains("password = \"${file:/run/secrets/etcd}\""));
}

#[test]
fn the_advertised_scheme_follows_the_drivers_tls() {
    let err = error(&with("[driver]\nadvertise = \"https://driver-1:7070\""));
    assert_eq!(
        err,
        r#"driver.advertise: got "https://driver-1:7070", expected an http:// URL, or set [driver.tls] for https://"#
    );
    let tls = "[driver.tls]\ncert = \"d.pem\"\nkey = \"d.key\"\nclient_ca = \"ca.pem\"\n";
    let err = error(&with(&format!("[driver]\nadvertise = \"http://driver-1:7070\"\n{tls}")));
    assert!(err.contains("expected an https:// URL ([driver.tls] is set)"), "{err}");
    let config = JobConfig::from_toml_str(&with(&format!("[driver]\n{tls}"))).unwrap();
    assert_eq!(config.driver.advertise_url(), "https://127.0.0.1:7070", "https by default");
    let files = config.driver.tls.as_ref().unwrap();
    assert_eq!(files.client_ca, std::path::Path::new("ca.pem"));
    let again = JobConfig::from_toml_str(&config.to_toml_string()).unwrap();
    assert_eq!(again, config, "round-trips");
}
