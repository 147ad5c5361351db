//! A Weir job under test: its topics, its config file, its driver and executors as real child
//! processes under a [`Supervisor`], and what etcd says about its progress.
//!
//! The parts also stand alone, for `weir-bench`, which runs its jobs from the release binaries:
//! the config file ([`JobConfig`]), the executor's command line ([`executor_command`]) and the
//! etcd progress reader ([`EtcdProgress`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use weir_common::OffsetsCheckpoint;
use weir_common::batch::BatchPlan;
use weir_common::protocol::JobKeys;

use crate::names::TestNames;
use crate::supervisor::Supervisor;
use crate::{binaries, etcd, kafka, services};

pub struct JobFixture {
    pub names: TestNames,
    /// The Kafka cluster of the job's topics and config: the test services' (the default), or a
    /// test's own ([`crate::kafka_broker::PrivateKafka`]).
    pub brokers: String,
    pub input: String,
    pub output: String,
    /// The etcd prefix of this job's keys (`checkpoint.prefix`).
    pub prefix: String,
    pub grpc_port: u16,
    /// `driver.http_listen` in the configs written from now on: `off` (the default) or an
    /// address (for `weirctl`'s views of the executors).
    pub http_listen: String,
    /// The etcd the job uses: the test services' (the default), or a test's own
    /// ([`crate::etcd::PrivateEtcd`]) that it may stop and kill. Set it before writing the config.
    pub etcd_endpoints: Vec<String>,
    /// More `[checkpoint]` lines in the configs written from now on (a user, a password).
    pub checkpoint: String,
    /// How the harness logs in to `etcd_endpoints` when that etcd has TLS and users (a secured
    /// [`crate::etcd::PrivateEtcd`]'s root); `None`: plain.
    pub etcd_login: Option<etcd::Login>,
    pub config_path: PathBuf,
    pub supervisor: Supervisor,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl JobFixture {
    /// Creates the input and output topics (`partitions` each) and writes a config: Kafka sink,
    /// 200 ms batches, 3 s executor timeout, plus `extra` TOML appended (e.g. a `[transform]`).
    pub async fn new(test: &str, partitions: i32, extra: &str) -> Self {
        Self::new_on(&services::ensure().kafka_brokers, test, partitions, extra).await
    }

    /// [`new`](Self::new) on the Kafka cluster at `brokers` (a test's own broker).
    pub async fn new_on(brokers: &str, test: &str, partitions: i32, extra: &str) -> Self {
        let names = TestNames::new(test);
        let input = names.topic("in");
        let output = names.topic("out");
        kafka::create_topic_on(brokers, &input, partitions).await;
        kafka::create_topic_on(brokers, &output, partitions).await;
        let supervisor = Supervisor::new(test);
        let config_path = supervisor.log_dir().join("job.toml");
        let fixture = JobFixture {
            brokers: brokers.to_owned(),
            prefix: format!("/weir-test/{}", names.job),
            names,
            input,
            output,
            grpc_port: free_port(),
            http_listen: "off".to_owned(),
            etcd_endpoints: services::ensure().etcd_endpoints.clone(),
            checkpoint: String::new(),
            etcd_login: None,
            config_path,
            supervisor,
        };
        fixture.write_config(&format!("topics = [\"{}\"]", fixture.input), extra);
        fixture
    }

    /// Rewrites the config with `source_topics` (a TOML line such as `topics = ["a", "b"]`).
    pub fn write_config(&self, source_topics: &str, extra: &str) {
        let sink = format!("type = \"kafka\"\ntopic = \"{}\"", self.output);
        self.write_config_with_sink(source_topics, &sink, extra);
    }

    /// Like [`write_config`](Self::write_config) with the `[sink]` section's body given.
    pub fn write_config_with_sink(&self, source_topics: &str, sink: &str, extra: &str) {
        let config = JobConfig {
            job: &self.names.job,
            prefix: &self.prefix,
            batch_interval: "200ms",
            brokers: &self.brokers,
            source: source_topics,
            sink,
            grpc_port: self.grpc_port,
            http_listen: &self.http_listen,
            etcd: &self.etcd_endpoints,
            checkpoint: &self.checkpoint,
            driver: "executor_timeout = \"3s\"\nheartbeat_interval = \"500ms\"",
            extra,
        };
        std::fs::write(&self.config_path, config.text()).expect("write job config");
    }

    pub fn driver_command(&self) -> Command {
        let mut command = Command::new(binaries::path("weir-driver"));
        command.arg("--config").arg(&self.config_path).env("WEIR_LOG", "info,weir_driver=debug");
        command
    }

    pub fn start_driver(&mut self) -> u32 {
        let command = self.driver_command();
        self.supervisor.spawn("driver", command)
    }

    /// Starts the driver with config overrides (`--set key=value`).
    pub fn start_driver_with(&mut self, overrides: &[&str]) -> u32 {
        let mut command = self.driver_command();
        for o in overrides {
            command.arg("--set").arg(o);
        }
        self.supervisor.spawn("driver", command)
    }

    pub fn start_executor(&mut self, name: &str) -> u32 {
        let command = executor_command_at(
            &binaries::path("weir-executor"),
            &self.etcd_endpoints,
            &self.names.job,
            &self.prefix,
            name,
        );
        self.supervisor.spawn(name, command)
    }

    fn keys(&self) -> JobKeys {
        JobKeys::new(&self.prefix, &self.names.job)
    }

    /// Every key of the job in etcd with its value, for comparing the state before and after.
    pub async fn etcd_keys(&self) -> BTreeMap<String, Vec<u8>> {
        let mut client = etcd::client_with(&self.etcd_endpoints, self.etcd_login.as_ref()).await;
        let options = etcd_client::GetOptions::new().with_prefix();
        let resp =
            client.get(self.keys().job_prefix(), Some(options)).await.expect("etcd get job keys");
        resp.kvs()
            .iter()
            .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.value().to_vec()))
            .collect()
    }

    /// `weirctl --config {this job's config} ARGS`, run to its end (at most three minutes).
    pub async fn weirctl(&self, args: &[&str]) -> CtlRun {
        let mut command = tokio::process::Command::new(binaries::path("weirctl"));
        command.arg("--config").arg(&self.config_path).args(args).kill_on_drop(true);
        let run = tokio::time::timeout(Duration::from_secs(180), command.output());
        let output = run
            .await
            .unwrap_or_else(|_| panic!("weirctl {args:?} ran for three minutes"))
            .expect("weirctl runs");
        CtlRun {
            args: args.iter().map(|a| a.to_string()).collect(),
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// This job's progress in etcd, over a connection of its own.
    pub async fn progress(&self) -> EtcdProgress {
        let (endpoints, login) = (&self.etcd_endpoints, self.etcd_login.as_ref());
        EtcdProgress::connect_with(endpoints, login, &self.prefix, &self.names.job).await
    }

    /// The committed progress in etcd, if any.
    pub async fn committed(&self) -> Option<OffsetsCheckpoint> {
        self.progress().await.committed().await
    }

    /// Every batch record in etcd, committed or not, by id.
    pub async fn batch_records(&self) -> BTreeMap<u64, BatchPlan> {
        let mut client = etcd::client_with(&self.etcd_endpoints, self.etcd_login.as_ref()).await;
        let options = etcd_client::GetOptions::new().with_prefix();
        let resp = client
            .get(self.keys().batches_prefix(), Some(options))
            .await
            .expect("etcd get batches");
        resp.kvs()
            .iter()
            .map(|kv| {
                let plan = BatchPlan::decode(kv.value()).expect("batch decode");
                (plan.id, plan)
            })
            .collect()
    }

    /// The job's lane map in etcd (empty before the driver wrote one).
    pub async fn lane_map(&self) -> weir_common::lanes::LaneMap {
        match self.etcd_keys().await.get(&self.keys().lanes()) {
            Some(bytes) => weir_common::lanes::LaneMap::decode(bytes).expect("lane map decode"),
            None => weir_common::lanes::LaneMap::default(),
        }
    }

    /// Recorded batches newer than the last committed one.
    pub async fn uncommitted_batches(&self) -> Vec<u64> {
        let last = self.committed().await.and_then(|c| c.last_committed_batch);
        self.batch_records().await.into_keys().filter(|id| last.is_none_or(|l| *id > l)).collect()
    }

    /// Committed next offsets summed over `topic`'s partitions.
    pub async fn committed_records(&self, topic: &str) -> i64 {
        self.progress().await.committed_records(topic).await
    }

    /// Waits until the committed offsets of `topic` sum to `total` (its end, for a topic written
    /// from offset 0 without transactions).
    pub async fn wait_committed(&self, topic: &str, total: i64, limit: Duration) {
        self.progress().await.wait_committed(topic, total, limit, None).await;
    }
}

/// How a `weirctl` run ended.
#[derive(Debug)]
pub struct CtlRun {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CtlRun {
    /// Asserts it succeeded (exit 0), showing its output otherwise.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "weirctl {:?} failed:\n{}\n{}",
            self.args, self.stdout, self.stderr
        );
        self
    }

    /// stdout as the JSON document `--output json` prints.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("weirctl {:?} printed no JSON ({e}):\n{}", self.args, self.stdout)
        })
    }
}

/// A job's progress in etcd, read over one connection (for callers that poll often).
#[derive(Clone)]
pub struct EtcdProgress {
    client: etcd_client::Client,
    keys: JobKeys,
}

impl EtcdProgress {
    /// How often [`wait_committed`](Self::wait_committed) reads etcd.
    const POLL: Duration = Duration::from_millis(50);

    /// The progress of `job` under the etcd prefix `prefix` (`checkpoint.prefix`).
    pub async fn connect(prefix: &str, job: &str) -> Self {
        Self::connect_to(&services::ensure().etcd_endpoints, prefix, job).await
    }

    /// The same, on the etcd at `endpoints`.
    pub async fn connect_to(endpoints: &[String], prefix: &str, job: &str) -> Self {
        Self::connect_with(endpoints, None, prefix, job).await
    }

    /// The same, logged in with `login` (an etcd with TLS and users).
    pub async fn connect_with(
        endpoints: &[String],
        login: Option<&etcd::Login>,
        prefix: &str,
        job: &str,
    ) -> Self {
        let client = etcd::client_with(endpoints, login).await;
        Self { client, keys: JobKeys::new(prefix, job) }
    }

    /// The committed progress, if any.
    pub async fn committed(&mut self) -> Option<OffsetsCheckpoint> {
        let resp = self.client.get(self.keys.offsets(), None).await.expect("etcd get offsets");
        resp.kvs().first().map(|kv| OffsetsCheckpoint::decode(kv.value()).expect("offsets decode"))
    }

    /// Committed next offsets summed over `topic`'s partitions; 0 before the first commit.
    pub async fn committed_records(&mut self, topic: &str) -> i64 {
        self.committed().await.map_or(0, |c| topic_records(&c, topic))
    }

    /// Ids of the batch records (committed ones are kept for a while too), ascending; reads the
    /// keys only.
    pub async fn recorded_batches(&mut self) -> Vec<u64> {
        let prefix = self.keys.batches_prefix();
        let options = etcd_client::GetOptions::new().with_prefix().with_keys_only();
        let resp = self.client.get(prefix.as_str(), Some(options)).await.expect("etcd get batches");
        let mut ids: Vec<u64> = resp
            .kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key());
                let id = key.strip_prefix(&prefix).unwrap_or(&key);
                id.parse().unwrap_or_else(|e| panic!("batch key {key:?}: {e}"))
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Waits until the committed offsets of `topic` sum to `total` (its end, for a topic written
    /// from offset 0 without transactions). Panics past `limit`, when more than `total` is
    /// committed, or, given the job's `supervisor`, as soon as one of its processes has exited
    /// (the wait would be for nothing).
    pub async fn wait_committed(
        &mut self,
        topic: &str,
        total: i64,
        limit: Duration,
        mut supervisor: Option<&mut Supervisor>,
    ) {
        let started = Instant::now();
        loop {
            let now = self.committed_records(topic).await;
            if now == total {
                return;
            }
            assert!(
                now < total,
                "committed {now} offsets of {topic}, more than the {total} written"
            );
            assert!(
                started.elapsed() < limit,
                "only {now} of {total} offsets of {topic} committed after {limit:?}"
            );
            if let Some((name, status)) = supervisor.as_deref_mut().and_then(Supervisor::exited) {
                panic!(
                    "{name} exited ({status}) with {now} of {total} offsets of {topic} committed"
                );
            }
            tokio::time::sleep(Self::POLL).await;
        }
    }
}

/// Committed next offsets of `topic` in `checkpoint`, summed over its partitions: how many of
/// its records are done.
pub fn topic_records(checkpoint: &OffsetsCheckpoint, topic: &str) -> i64 {
    checkpoint.next_offsets.iter().filter(|(tp, _)| tp.topic == topic).map(|(_, o)| o).sum()
}

/// A job's config file: what [`JobFixture`] writes, and the benchmark too.
pub struct JobConfig<'a> {
    /// `job.name`.
    pub job: &'a str,
    /// `checkpoint.prefix`.
    pub prefix: &'a str,
    pub batch_interval: &'a str,
    /// `source.brokers`.
    pub brokers: &'a str,
    /// `[source]` lines besides the brokers, such as `topics = ["a", "b"]`.
    pub source: &'a str,
    /// The `[sink]` section's body.
    pub sink: &'a str,
    pub grpc_port: u16,
    /// `driver.http_listen`: `off` or an address.
    pub http_listen: &'a str,
    /// `checkpoint.etcd`.
    pub etcd: &'a [String],
    /// More `[checkpoint]` lines.
    pub checkpoint: &'a str,
    /// More `[driver]` lines.
    pub driver: &'a str,
    /// TOML appended at the end (e.g. a `[transform]`).
    pub extra: &'a str,
}

impl JobConfig<'_> {
    /// The TOML, with the services' addresses.
    pub fn text(&self) -> String {
        let etcd: Vec<String> = self.etcd.iter().map(|e| format!("\"{e}\"")).collect();
        format!(
            r#"[job]
name = "{job}"
batch_interval = "{batch_interval}"

[source]
brokers = "{brokers}"
{source}

[sink]
{sink}

[checkpoint]
etcd = [{etcd}]
prefix = "{prefix}"
{checkpoint}

[driver]
grpc_listen = "127.0.0.1:{port}"
http_listen = "{http_listen}"
{driver}

{extra}
"#,
            job = self.job,
            batch_interval = self.batch_interval,
            brokers = self.brokers,
            source = self.source,
            sink = self.sink,
            etcd = etcd.join(", "),
            prefix = self.prefix,
            checkpoint = self.checkpoint,
            port = self.grpc_port,
            http_listen = self.http_listen,
            driver = self.driver,
            extra = self.extra,
        )
    }
}

/// `weir-executor` (at `binary`) for `job` under the etcd prefix `prefix`, as executor `id` with
/// two slots.
pub fn executor_command(binary: &Path, job: &str, prefix: &str, id: &str) -> Command {
    executor_command_at(binary, &services::ensure().etcd_endpoints, job, prefix, id)
}

/// [`executor_command`] for the etcd at `etcd`.
pub fn executor_command_at(
    binary: &Path,
    etcd: &[String],
    job: &str,
    prefix: &str,
    id: &str,
) -> Command {
    let mut command = Command::new(binary);
    let etcd = etcd.join(",");
    command.args(["--job", job, "--prefix", prefix, "--etcd", &etcd, "--id", id, "--slots", "2"]);
    command
}

/// Ids of records as the judge read them, sorted, with their count per id.
pub fn id_counts(records: &BTreeMap<i32, Vec<kafka::Consumed>>) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for r in records.values().flatten() {
        let id = r.id().unwrap_or_else(|| panic!("output record without an id key: {r:?}"));
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}
