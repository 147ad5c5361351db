//! A Weir job under test: its topics, its config file, its driver and executors as real child
//! processes under a [`Supervisor`], and what etcd says about its progress.

use std::collections::BTreeMap;
use std::path::PathBuf;
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
    pub input: String,
    pub output: String,
    /// The etcd prefix of this job's keys (`checkpoint.prefix`).
    pub prefix: String,
    pub grpc_port: u16,
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
        let names = TestNames::new(test);
        let input = names.topic("in");
        let output = names.topic("out");
        kafka::create_topic(&input, partitions).await;
        kafka::create_topic(&output, partitions).await;
        let supervisor = Supervisor::new(test);
        let config_path = supervisor.log_dir().join("job.toml");
        let fixture = JobFixture {
            prefix: format!("/weir-test/{}", names.job),
            names,
            input,
            output,
            grpc_port: free_port(),
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
        let s = services::ensure();
        let etcd: Vec<String> = s.etcd_endpoints.iter().map(|e| format!("\"{e}\"")).collect();
        let text = format!(
            r#"[job]
name = "{job}"
batch_interval = "200ms"

[source]
brokers = "{brokers}"
{source_topics}

[sink]
{sink}

[checkpoint]
etcd = [{etcd}]
prefix = "{prefix}"

[driver]
grpc_listen = "127.0.0.1:{port}"
http_listen = "off"
executor_timeout = "3s"
heartbeat_interval = "500ms"

{extra}
"#,
            job = self.names.job,
            brokers = s.kafka_brokers,
            etcd = etcd.join(", "),
            prefix = self.prefix,
            port = self.grpc_port,
        );
        std::fs::write(&self.config_path, text).expect("write job config");
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
        let mut command = Command::new(binaries::path("weir-executor"));
        command.args([
            "--job",
            &self.names.job,
            "--prefix",
            &self.prefix,
            "--etcd",
            &services::ensure().etcd_endpoints.join(","),
            "--id",
            name,
            "--slots",
            "2",
        ]);
        self.supervisor.spawn(name, command)
    }

    fn keys(&self) -> JobKeys {
        JobKeys::new(&self.prefix, &self.names.job)
    }

    /// The committed progress in etcd, if any.
    pub async fn committed(&self) -> Option<OffsetsCheckpoint> {
        let mut client = etcd::client().await;
        let resp = client.get(self.keys().offsets(), None).await.expect("etcd get offsets");
        resp.kvs().first().map(|kv| OffsetsCheckpoint::decode(kv.value()).expect("offsets decode"))
    }

    /// Every batch record in etcd, committed or not, by id.
    pub async fn batch_records(&self) -> BTreeMap<u64, BatchPlan> {
        let mut client = etcd::client().await;
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

    /// Recorded batches newer than the last committed one.
    pub async fn uncommitted_batches(&self) -> Vec<u64> {
        let last = self.committed().await.and_then(|c| c.last_committed_batch);
        self.batch_records().await.into_keys().filter(|id| last.is_none_or(|l| *id > l)).collect()
    }

    /// Committed next offsets summed over `topic`'s partitions.
    pub async fn committed_records(&self, topic: &str) -> i64 {
        self.committed()
            .await
            .map(|c| {
                c.next_offsets.iter().filter(|(tp, _)| tp.topic == topic).map(|(_, o)| o).sum()
            })
            .unwrap_or(0)
    }

    /// Waits until the committed offsets of `topic` sum to `total` (its end, for a topic written
    /// from offset 0 without transactions).
    pub async fn wait_committed(&self, topic: &str, total: i64, limit: Duration) {
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
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
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
