//! What the benchmarks share: where the binaries and the logs are ([`Bench`]), a job run from
//! the release binaries with the harness's config writer, supervisor and etcd reader
//! ([`BenchJob`]), the driver's status page and the `weir-kafka` tool.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use weir_tests::job::{EtcdProgress, JobConfig, executor_command, free_port};
use weir_tests::kafka;
use weir_tests::names::TestNames;
use weir_tests::supervisor::Supervisor;

/// How long a driver or an executor may take to exit after SIGTERM. Long: at 1,000 partitions
/// an executor took over 30 s (closing a consumer per partition it read); the bench reports it.
const GRACE: Duration = Duration::from_secs(300);

/// One run of the bench: the release binaries next to `weir-bench`, and the directory for this
/// run's logs and job configs.
pub struct Bench {
    pub bin_dir: PathBuf,
    /// `weir-bench-logs/{job}/` next to the binaries.
    pub logs: PathBuf,
    /// A unique job name; the benchmarks' jobs and topics start with it.
    pub names: TestNames,
}

impl Bench {
    /// Finds the binaries next to `weir-bench` and creates the log directory of a job named
    /// after `prefix`.
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("weir-bench's path")?;
        let bin_dir = exe.parent().context("weir-bench's directory")?.to_owned();
        let names = TestNames::new(prefix);
        let logs = bin_dir.join("weir-bench-logs").join(&names.job);
        std::fs::create_dir_all(&logs)?;
        Ok(Self { bin_dir, logs, names })
    }

    /// Runs `weir-kafka ARGS` (next to this binary) and returns its stdout.
    pub fn run_tool(&self, args: &[&str]) -> anyhow::Result<String> {
        let tool = self.bin_dir.join("weir-kafka");
        let out =
            Command::new(&tool).args(args).output().with_context(|| tool.display().to_string())?;
        ensure!(
            out.status.success(),
            "weir-kafka {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A job copying one input topic to one output topic through the release binaries: its config
/// and its processes under a [`Supervisor`], which kills them when dropped.
pub struct BenchJob {
    pub name: String,
    pub input: String,
    /// The etcd prefix of the job's keys: `/weir-bench/{job}`.
    pub prefix: String,
    pub config: PathBuf,
    /// The driver's status page.
    pub http_port: u16,
    pub supervisor: Supervisor,
    bin_dir: PathBuf,
    executors: Vec<String>,
}

impl BenchJob {
    /// Writes the job's config to `{logs}/{run}.toml`: JobFixture's shape, with the status page
    /// on, 1 s batches, the Kafka sink under `guarantee` and the driver's other settings at
    /// their defaults. Its processes log to `{logs}/{run}/`.
    pub fn new(
        bench: &Bench,
        run: &str,
        name: String,
        input: &str,
        output: &str,
        guarantee: &str,
    ) -> anyhow::Result<Self> {
        let http_port = free_port();
        let prefix = format!("/weir-bench/{name}");
        let config = bench.logs.join(format!("{run}.toml"));
        let text = JobConfig {
            job: &name,
            prefix: &prefix,
            batch_interval: "1s",
            brokers: &weir_tests::services::ensure().kafka_brokers,
            source: &format!("topics = [\"{input}\"]"),
            sink: &format!("type = \"kafka\"\ntopic = \"{output}\"\nguarantee = \"{guarantee}\""),
            grpc_port: free_port(),
            http_listen: &format!("127.0.0.1:{http_port}"),
            etcd: &weir_tests::services::ensure().etcd_endpoints,
            checkpoint: "",
            driver: "",
            extra: "",
        }
        .text();
        std::fs::write(&config, text)?;
        Ok(Self {
            name,
            input: input.to_owned(),
            prefix,
            config,
            http_port,
            supervisor: Supervisor::in_dir(bench.logs.join(run)),
            bin_dir: bench.bin_dir.clone(),
            executors: Vec::new(),
        })
    }

    /// A job named `{bench}-{run}` over fresh topics `{name}.in` and `{name}.out` (8 partitions
    /// each), its driver at `interval` and two executors started. Returns the job and the
    /// output topic.
    pub async fn start_fresh(
        bench: &Bench,
        run: &str,
        guarantee: &str,
        interval: &str,
    ) -> anyhow::Result<(Self, String)> {
        let name = format!("{}-{run}", bench.names.job);
        let (input, output) = (format!("{name}.in"), format!("{name}.out"));
        kafka::create_topic(&input, crate::PARTITIONS).await;
        kafka::create_topic(&output, crate::PARTITIONS).await;
        let mut job = BenchJob::new(bench, run, name, &input, &output, guarantee)?;
        job.start_driver(interval);
        for id in ["ex-1", "ex-2"] {
            job.start_executor(id);
        }
        Ok((job, output))
    }

    /// Starts the driver with `batch_interval` set to `interval`; returns its pid.
    pub fn start_driver(&mut self, interval: &str) -> u32 {
        self.supervisor.spawn("driver", driver_command(&self.bin_dir, &self.config, interval))
    }

    /// Starts executor `id` (2 slots); returns its pid.
    pub fn start_executor(&mut self, id: &str) -> u32 {
        let binary = self.bin_dir.join("weir-executor");
        let command = executor_command(&binary, &self.name, &self.prefix, id);
        self.executors.push(id.to_owned());
        self.supervisor.spawn(id, command)
    }

    /// The job's progress in etcd, over a connection of its own.
    pub async fn progress(&self) -> EtcdProgress {
        EtcdProgress::connect(&self.prefix, &self.name).await
    }

    /// Waits until etcd holds `records` offsets of the input as committed; panics when a process
    /// exits first, or after `limit`.
    pub async fn wait_committed(&mut self, records: u64, limit: Duration) {
        let mut progress = self.progress().await;
        let input = self.input.clone();
        progress.wait_committed(&input, records as i64, limit, Some(&mut self.supervisor)).await;
    }

    /// Fails when one of the job's processes has exited: the bench would otherwise wait for
    /// nothing.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        check_running(&mut self.supervisor)
    }

    /// SIGTERM to the driver, then to each executor, waiting for each to exit. Returns the
    /// longest an executor took to exit.
    pub async fn stop(&mut self) -> Duration {
        self.supervisor.terminate("driver", GRACE).await;
        let mut longest = Duration::ZERO;
        for id in &self.executors {
            let asked = std::time::Instant::now();
            self.supervisor.terminate(id, GRACE).await;
            longest = longest.max(asked.elapsed());
        }
        longest
    }
}

/// Fails when one of `supervisor`'s processes has exited, naming where its log is.
pub fn check_running(supervisor: &mut Supervisor) -> anyhow::Result<()> {
    if let Some((name, status)) = supervisor.exited() {
        bail!("{name} exited ({status}); see its log in {}", supervisor.log_dir().display());
    }
    Ok(())
}

/// `weir-driver --config CONFIG --set job.batch_interval=INTERVAL`, from `bin_dir`.
pub fn driver_command(bin_dir: &Path, config: &Path, interval: &str) -> Command {
    let mut command = Command::new(bin_dir.join("weir-driver"));
    command.arg("--config").arg(config).arg("--set").arg(format!("job.batch_interval={interval}"));
    command
}

/// The most a process held at once, sampled: threads, open files, resident memory (the
/// kernel's own peak, `VmHWM`). Of several processes sampled into one, the largest of each.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peaks {
    pub threads: u64,
    pub open_files: u64,
    pub rss_mib: f64,
}

impl Peaks {
    /// Reads `/proc/PID/status` and counts `/proc/PID/fd`; a process that has exited adds
    /// nothing.
    pub fn sample(&mut self, pid: u32) {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<u64>().ok())
            };
            self.threads = self.threads.max(field("Threads:").unwrap_or(0));
            self.rss_mib = self.rss_mib.max(field("VmHWM:").unwrap_or(0) as f64 / 1024.0);
        }
        if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            self.open_files = self.open_files.max(fds.count() as u64);
        }
    }
}

/// `GET /api/status` on the driver, over a plain HTTP/1.0 connection.
pub fn http_status(port: u16) -> anyhow::Result<serde_json::Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /api/status HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").context("HTTP response without a body")?;
    ensure!(head.starts_with("HTTP/1.") && head.contains(" 200 "), "status page: {head}");
    Ok(serde_json::from_str(body)?)
}
