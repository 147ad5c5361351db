//! Weir's benchmarks: prints tables, asserts nothing about speed. See docs/benchmarks.md.
//!
//! ```text
//! cargo build --release -p weir-tests --bins && cargo build --release --bins
//! target/release/weir-bench [RECORDS]      # default 1,000,000
//! target/release/weir-bench memory [RECORDS]   # executor peak memory; default 5,000,000
//! ```
//!
//! - `identity`: RECORDS demo events (`weir-kafka produce --events`) over 8 partitions, then one
//!   driver and two executors (the release binaries next to this one) copy them to an output
//!   topic; timed from starting the processes until etcd holds every offset as committed. Run
//!   twice: at-least-once (idempotent producer), then exactly-once (a transaction per task).
//! - `plain librdkafka`: the same records copied by one consumer and one idempotent producer, the
//!   floor Weir's overhead is measured against.
//! - `small batches`: a steady trickle of 2,000 records/s at 200 ms batches, at-least-once then
//!   exactly-once: the processing time of each batch, from the driver's log.
//! - `empty batches`: the idle job with `batch_interval = "100ms"`: what a planning round that
//!   finds nothing costs (the driver's `last_empty_round_us`) and the driver's CPU per round.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use weir_common::OffsetsCheckpoint;
use weir_common::protocol::JobKeys;
use weir_tests::job::free_port;
use weir_tests::names::TestNames;
use weir_tests::{etcd, kafka, services};

const PARTITIONS: i32 = 8;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("memory") {
        return memory(std::env::args().nth(2)).await;
    }
    let records: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse().context("RECORDS must be a number")?,
        None => 1_000_000,
    };
    services::ensure();
    let exe = std::env::current_exe().context("weir-bench's path")?;
    let bin_dir = exe.parent().context("weir-bench's directory")?.to_owned();
    let names = TestNames::new("bench");
    let logs = bin_dir.join("weir-bench-logs").join(&names.job);
    std::fs::create_dir_all(&logs)?;
    println!(
        "weir-bench: {records} records over {PARTITIONS} partitions; logs in {}",
        logs.display()
    );

    let input = names.topic("in");
    let (weir_out, plain_out) = (names.topic("out"), names.topic("plain-out"));
    for topic in [&input, &weir_out, &plain_out] {
        kafka::create_topic(topic, PARTITIONS).await;
    }
    let produced = run_tool(&bin_dir, &["produce", &input, &records.to_string(), "--events"])?;
    println!("{}", produced.trim());

    // a. identity through Weir, at-least-once then exactly-once, each into its own topic.
    let mut runs = Vec::new();
    for guarantee in ["at-least-once", "exactly-once"] {
        let run = identity(&bin_dir, &logs, &names.job, &input, records, guarantee).await?;
        runs.push(run);
    }
    let (config, http_port) = (runs[0].config.clone(), runs[0].http_port);
    let bytes = runs[0].bytes;
    // b. plain librdkafka copy of the same records.
    let plain = tokio::task::spawn_blocking({
        let (input, plain_out) = (input.clone(), plain_out.clone());
        move || plain_copy(&input, &plain_out, records)
    })
    .await??;
    let plain_count: i64 =
        (0..PARTITIONS).map(|p| kafka::watermarks(&plain_out, p)).map(|(lo, hi)| hi - lo).sum();

    let mb = bytes as f64 / 1e6;
    println!();
    println!("## identity: {records} records, {mb:.1} MB (key + payload), {PARTITIONS} partitions");
    println!();
    println!("| run | wall time | records/s | MB/s | output records (read_committed) |");
    println!("|---|---:|---:|---:|---:|");
    let row = |name: &str, t: Duration, out: String| {
        let s = t.as_secs_f64();
        println!("| {name} | {s:.2} s | {:.0} | {:.1} | {out} |", records as f64 / s, mb / s);
    };
    for run in &runs {
        let g = run.guarantee;
        row(
            &format!("weir {g}: start of processes → all offsets committed"),
            run.wall,
            run.output.to_string(),
        );
        if let Some(first) = run.first_batch {
            row(
                &format!("weir {g}: first batch seen in /api/status → all committed"),
                run.wall.saturating_sub(first),
                "same".into(),
            );
        }
    }
    row("plain librdkafka consume → produce", plain, format!("{plain_count} (watermarks)"));
    println!();
    for run in &runs {
        println!(
            "driver status at the end ({}): batches_committed={} records_in={} last_processing_ms={} \
             first batch seen at {:.2} s",
            run.guarantee,
            run.status["batches_committed"],
            run.status["records_in"],
            run.status["last_processing_ms"],
            run.first_batch.map_or(f64::NAN, |f| f.as_secs_f64())
        );
        if run.output as u64 != records {
            println!(
                "WARNING: {} output holds {} records, expected {records}",
                run.guarantee, run.output
            );
        }
    }

    // c. small batches: a steady trickle at 200 ms batches, per guarantee.
    println!();
    println!(
        "## small batches: {TRICKLE_RATE} records/s over {PARTITIONS} partitions for \
         {TRICKLE_SECONDS} s, batch_interval 200ms, 1 driver + 2 executors"
    );
    println!();
    println!(
        "| guarantee | batches | records/batch (median) | processing ms: median | p90 | max |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for guarantee in ["at-least-once", "exactly-once"] {
        let b = small_batches(&bin_dir, &logs, &names.job, guarantee).await?;
        println!(
            "| {guarantee} | {} | {} | {} | {} | {} |",
            b.processing_ms.len(),
            b.median_records,
            percentile(&b.processing_ms, 0.5),
            percentile(&b.processing_ms, 0.9),
            percentile(&b.processing_ms, 1.0)
        );
    }

    // d. empty batches: restart the driver at 100 ms; the job is idle.
    let mut children = Children::new(&logs);
    let driver = children.spawn("driver-idle", driver_command(&bin_dir, &config, "100ms"))?;
    let warmup = Instant::now();
    loop {
        ensure!(warmup.elapsed() < Duration::from_secs(60), "the idle driver never planned");
        children.check_running()?;
        if http_status(http_port).is_ok_and(|s| s["empty_rounds"].as_u64().unwrap_or(0) >= 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Latency: sample each round's cost from the status page.
    let window = Instant::now();
    let mut samples = Vec::new();
    let mut seen_round = http_status(http_port)?["empty_rounds"].as_u64().unwrap_or(0);
    while window.elapsed() < Duration::from_secs(5) {
        let status = http_status(http_port)?;
        let round = status["empty_rounds"].as_u64().unwrap_or(0);
        if round != seen_round {
            seen_round = round;
            samples.push(status["last_empty_round_us"].as_u64().unwrap_or(0));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // CPU: a second window without polling, so the status requests do not count.
    let rounds_0 = http_status(http_port)?["empty_rounds"].as_u64().unwrap_or(0);
    let (cpu_0, window) = (cpu_ticks(driver)?, Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (elapsed, cpu_1) = (window.elapsed(), cpu_ticks(driver)?);
    let rounds = http_status(http_port)?["empty_rounds"].as_u64().unwrap_or(0) - rounds_0;
    let cpu_ms = (cpu_1 - cpu_0) as f64 * 1000.0 / clock_ticks_per_second();
    samples.sort_unstable();
    ensure!(!samples.is_empty(), "no empty round sampled");
    let topics = topic_count()?;
    println!();
    println!(
        "## empty batches: idle job, batch_interval 100ms, 5 s sampling + {:.1} s CPU window, \
         {topics} topics on the broker",
        elapsed.as_secs_f64()
    );
    println!();
    println!(
        "| sampled rounds | last_empty_round_us min | median | max | rounds (CPU window) | driver CPU | CPU per round |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let pick =
        |q: f64| samples.get(((samples.len() - 1) as f64 * q) as usize).copied().unwrap_or(0);
    println!(
        "| {} | {} | {} | {} | {rounds} | {cpu_ms:.0} ms | {:.2} ms |",
        samples.len(),
        pick(0.0),
        pick(0.5),
        pick(1.0),
        cpu_ms / rounds.max(1) as f64
    );
    Ok(())
}

/// `weir-bench memory [RECORDS]`: one executor drains backlogs of RECORDS / 10 and RECORDS
/// (default 5,000,000) demo events over 8 partitions, exactly-once to Kafka; prints each
/// process's peak resident memory (`VmHWM`), so a growing backlog shows whether it grows too.
async fn memory(records: Option<String>) -> anyhow::Result<()> {
    let records: u64 = match records {
        Some(n) => n.parse().context("RECORDS must be a number")?,
        None => 5_000_000,
    };
    let services = services::ensure();
    let exe = std::env::current_exe().context("weir-bench's path")?;
    let bin_dir = exe.parent().context("weir-bench's directory")?.to_owned();
    let names = TestNames::new("bench-memory");
    let logs = bin_dir.join("weir-bench-logs").join(&names.job);
    std::fs::create_dir_all(&logs)?;
    println!("weir-bench memory: logs in {}", logs.display());
    println!();
    println!("| backlog | MB (key + payload) | drained in | executor peak RSS | driver peak RSS |");
    println!("|---:|---:|---:|---:|---:|");
    for backlog in [records / 10, records] {
        let job = format!("{}-{backlog}", names.job);
        let (input, output) = (format!("{job}.in"), format!("{job}.out"));
        kafka::create_topic(&input, PARTITIONS).await;
        kafka::create_topic(&output, PARTITIONS).await;
        run_tool(&bin_dir, &["produce", &input, &backlog.to_string(), "--events"])?;
        let config = logs.join(format!("{backlog}.toml"));
        let text = job_config(&job, services, &input, &output, free_port(), "exactly-once");
        std::fs::write(&config, text)?;
        let prefix = format!("/weir-bench/{job}");
        let run_logs = logs.join(backlog.to_string());
        std::fs::create_dir_all(&run_logs)?;
        let mut children = Children::new(&run_logs);
        let started = Instant::now();
        let driver = children.spawn("driver", driver_command(&bin_dir, &config, "1s"))?;
        let executor =
            children.spawn("ex-1", executor_command(&bin_dir, &job, &prefix, services, "ex-1"))?;
        let limit = Duration::from_secs(1200);
        wait_committed(&mut children, &prefix, &job, &input, backlog, limit).await?;
        let took = started.elapsed();
        let (executor_peak, driver_peak) = (peak_rss_mib(executor)?, peak_rss_mib(driver)?);
        children.terminate("driver", driver, Duration::from_secs(30))?;
        children.terminate("ex-1", executor, Duration::from_secs(30))?;
        let bytes: i64 = (0..PARTITIONS).map(|p| kafka::watermarks(&input, p).1).sum::<i64>() * 92;
        println!(
            "| {backlog} | ~{} | {:.1} s | {executor_peak:.0} MiB | {driver_peak:.0} MiB |",
            bytes / 1_000_000,
            took.as_secs_f64()
        );
    }
    Ok(())
}

/// The peak resident set of `pid` so far (`VmHWM` in `/proc/PID/status`), in MiB.
fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).context("no VmHWM")?;
    let kib: f64 = line.split_whitespace().nth(1).context("VmHWM value")?.parse()?;
    Ok(kib / 1024.0)
}

const TRICKLE_RATE: u64 = 2_000;
const TRICKLE_SECONDS: u64 = 10;

struct SmallBatches {
    /// `processing_ms` of every committed batch that read records.
    processing_ms: Vec<u64>,
    median_records: u64,
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    sorted.get(((sorted.len().saturating_sub(1)) as f64 * q) as usize).copied().unwrap_or(0)
}

/// A job fed a steady trickle (TRICKLE_RATE records/s in 10 slices a second) for
/// TRICKLE_SECONDS: what a small batch costs from first dispatch to commit, read from the
/// driver's `Batch committed` lines.
async fn small_batches(
    bin_dir: &Path,
    logs: &Path,
    base_job: &str,
    guarantee: &'static str,
) -> anyhow::Result<SmallBatches> {
    let services = services::ensure();
    let job = format!("{base_job}-small-{guarantee}");
    let (input, output) = (format!("{job}.in"), format!("{job}.out"));
    kafka::create_topic(&input, PARTITIONS).await;
    kafka::create_topic(&output, PARTITIONS).await;
    let config = logs.join(format!("small-{guarantee}.toml"));
    std::fs::write(&config, job_config(&job, services, &input, &output, free_port(), guarantee))?;
    let prefix = format!("/weir-bench/{job}");
    let run_logs = logs.join(format!("small-{guarantee}"));
    std::fs::create_dir_all(&run_logs)?;
    let mut children = Children::new(&run_logs);
    let driver = children.spawn("driver", driver_command(bin_dir, &config, "200ms"))?;
    let mut executors = Vec::new();
    for id in ["ex-1", "ex-2"] {
        let command = executor_command(bin_dir, &job, &prefix, services, id);
        executors.push((id, children.spawn(id, command)?));
    }
    let slice = TRICKLE_RATE / 10;
    let total = slice * 10 * TRICKLE_SECONDS;
    let started = Instant::now();
    for n in 0..10 * TRICKLE_SECONDS {
        kafka::produce_range(&input, PARTITIONS, n * slice..(n + 1) * slice).await;
        let next = Duration::from_millis(100 * (n + 1));
        tokio::time::sleep(next.saturating_sub(started.elapsed())).await;
        children.check_running()?;
    }
    wait_committed(&mut children, &prefix, &job, &input, total, Duration::from_secs(120)).await?;
    children.terminate("driver", driver, Duration::from_secs(30))?;
    for (id, pid) in executors {
        children.terminate(id, pid, Duration::from_secs(30))?;
    }
    let log = std::fs::read_to_string(run_logs.join("driver.log"))?;
    let field = |line: &str, key: &str| -> Option<u64> {
        let start = line.find(&format!(" {key}="))? + key.len() + 2;
        line[start..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    let mut processing_ms = Vec::new();
    let mut records = Vec::new();
    for line in log.lines().filter(|l| l.contains("Batch committed")) {
        let (Some(ms), Some(n)) = (field(line, "processing_ms"), field(line, "records_in")) else {
            continue;
        };
        if n > 0 {
            processing_ms.push(ms);
            records.push(n);
        }
    }
    processing_ms.sort_unstable();
    records.sort_unstable();
    Ok(SmallBatches { processing_ms, median_records: percentile(&records, 0.5) })
}

struct IdentityRun {
    guarantee: &'static str,
    config: PathBuf,
    http_port: u16,
    wall: Duration,
    first_batch: Option<Duration>,
    output: usize,
    bytes: usize,
    status: serde_json::Value,
}

/// Copies `input` to a new topic through one driver and two executors under `guarantee`; timed
/// from starting the processes until etcd holds every offset as committed. The driver and
/// executors are stopped (SIGTERM) before it returns.
async fn identity(
    bin_dir: &Path,
    logs: &Path,
    base_job: &str,
    input: &str,
    records: u64,
    guarantee: &'static str,
) -> anyhow::Result<IdentityRun> {
    let services = services::ensure();
    let job = format!("{base_job}-{guarantee}");
    let output = format!("{input}-{guarantee}-out");
    kafka::create_topic(&output, PARTITIONS).await;
    let http_port = free_port();
    let config = logs.join(format!("{guarantee}.toml"));
    let text = job_config(&job, services, input, &output, http_port, guarantee);
    std::fs::write(&config, text)?;
    let prefix = format!("/weir-bench/{job}");
    let run_logs = logs.join(guarantee);
    std::fs::create_dir_all(&run_logs)?;
    let mut children = Children::new(&run_logs);
    let started = Instant::now();
    let driver = children.spawn("driver", driver_command(bin_dir, &config, "1s"))?;
    let mut executors = Vec::new();
    for id in ["ex-1", "ex-2"] {
        executors.push((
            id,
            children.spawn(id, executor_command(bin_dir, &job, &prefix, services, id))?,
        ));
    }
    let keys = JobKeys::new(&prefix, &job);
    let mut etcd = etcd::client().await;
    let mut first_batch: Option<Duration> = None;
    let mut status = serde_json::Value::Null;
    loop {
        ensure!(started.elapsed() < Duration::from_secs(600), "not committed after 10 minutes");
        children.check_running()?;
        if let Ok(now) = http_status(http_port) {
            let busy = now["batches_in_flight"].as_u64().unwrap_or(0) > 0
                || now["batches_committed"].as_u64().unwrap_or(0) > 0;
            if busy && first_batch.is_none() {
                first_batch = Some(started.elapsed());
            }
            status = now;
        }
        if committed_records(&mut etcd, &keys, input).await? == records as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wall = started.elapsed();
    if let Ok(now) = http_status(http_port) {
        status = now;
    }
    children.terminate("driver", driver, Duration::from_secs(30))?;
    for (id, pid) in executors {
        children.terminate(id, pid, Duration::from_secs(30))?;
    }
    let read = kafka::read_committed(&output).await;
    let output_count: usize = read.values().map(Vec::len).sum();
    let bytes: usize = read
        .values()
        .flatten()
        .map(|r| r.key.as_ref().map_or(0, Vec::len) + r.payload.as_ref().map_or(0, Vec::len))
        .sum();
    Ok(IdentityRun {
        guarantee,
        config,
        http_port,
        wall,
        first_batch,
        output: output_count,
        bytes,
        status,
    })
}

/// The job config: JobFixture's shape, with the status page on and 1 s batches.
fn job_config(
    job: &str,
    s: &services::Services,
    input: &str,
    output: &str,
    http_port: u16,
    guarantee: &str,
) -> String {
    let etcd: Vec<String> = s.etcd_endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        r#"[job]
name = "{job}"
batch_interval = "1s"

[source]
brokers = "{brokers}"
topics = ["{input}"]

[sink]
type = "kafka"
topic = "{output}"
guarantee = "{guarantee}"

[checkpoint]
etcd = [{etcd}]
prefix = "/weir-bench/{job}"

[driver]
grpc_listen = "127.0.0.1:{grpc}"
http_listen = "127.0.0.1:{http_port}"
"#,
        brokers = s.kafka_brokers,
        etcd = etcd.join(", "),
        grpc = free_port(),
    )
}

fn driver_command(bin_dir: &Path, config: &Path, interval: &str) -> Command {
    let mut command = Command::new(bin_dir.join("weir-driver"));
    command.arg("--config").arg(config).arg("--set").arg(format!("job.batch_interval={interval}"));
    command
}

fn executor_command(
    bin_dir: &Path,
    job: &str,
    prefix: &str,
    s: &services::Services,
    id: &str,
) -> Command {
    let mut command = Command::new(bin_dir.join("weir-executor"));
    let etcd = s.etcd_endpoints.join(",");
    command.args(["--job", job, "--prefix", prefix, "--etcd", &etcd, "--id", id, "--slots", "2"]);
    command
}

/// Runs `weir-kafka ARGS` (next to this binary) and returns its stdout.
fn run_tool(bin_dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let tool = bin_dir.join("weir-kafka");
    let out =
        Command::new(&tool).args(args).output().with_context(|| tool.display().to_string())?;
    ensure!(out.status.success(), "weir-kafka {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits until etcd holds `records` offsets of `input` as committed for `job`; fails when a
/// child exits or after `limit`.
async fn wait_committed(
    children: &mut Children,
    prefix: &str,
    job: &str,
    input: &str,
    records: u64,
    limit: Duration,
) -> anyhow::Result<()> {
    let keys = JobKeys::new(prefix, job);
    let mut etcd = etcd::client().await;
    let started = Instant::now();
    while committed_records(&mut etcd, &keys, input).await? < records as i64 {
        ensure!(started.elapsed() < limit, "{input}: not all committed within {limit:?}");
        children.check_running()?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Committed next offsets of `topic` in etcd, summed over its partitions.
async fn committed_records(
    client: &mut etcd_client::Client,
    keys: &JobKeys,
    topic: &str,
) -> anyhow::Result<i64> {
    let resp = client.get(keys.offsets(), None).await?;
    let Some(kv) = resp.kvs().first() else { return Ok(0) };
    let offsets = OffsetsCheckpoint::decode(kv.value())?;
    Ok(offsets.next_offsets.iter().filter(|(tp, _)| tp.topic == topic).map(|(_, o)| o).sum())
}

/// `GET /api/status` on the driver, over a plain HTTP/1.0 connection.
fn http_status(port: u16) -> anyhow::Result<serde_json::Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /api/status HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").context("HTTP response without a body")?;
    ensure!(head.starts_with("HTTP/1.") && head.contains(" 200 "), "status page: {head}");
    Ok(serde_json::from_str(body)?)
}

/// User plus system CPU time of `pid`, in clock ticks (`/proc/PID/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat.rsplit_once(')').context("stat")?.1.split_whitespace().collect();
    // After the command name: field 3 (state) is fields[0], so utime (14) is fields[11].
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

fn topic_count() -> anyhow::Result<usize> {
    let consumer: BaseConsumer = kafka::client_config().create()?;
    Ok(consumer.fetch_metadata(None, Duration::from_secs(10))?.topics().len())
}

/// The floor: one consumer assigned to every partition from the beginning, one idempotent
/// producer, each record copied (key and payload) to `output`; flushed at the end.
fn plain_copy(input: &str, output: &str, records: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let consumer: BaseConsumer = kafka::client_config()
        .set("group.id", weir_tests::names::unique("bench-plain"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()?;
    let producer: ThreadedProducer<DefaultProducerContext> =
        kafka::client_config().set("enable.idempotence", "true").set("linger.ms", "5").create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment.add_partition_offset(input, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let (mut copied, mut ended) = (0u64, 0);
    while copied < records || ended < PARTITIONS {
        ensure!(started.elapsed() < Duration::from_secs(600), "plain copy: {copied} after 10 min");
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                let mut record = BaseRecord::<[u8], [u8]>::to(output);
                if let Some(key) = m.key() {
                    record = record.key(key);
                }
                if let Some(payload) = m.payload() {
                    record = record.payload(payload);
                }
                kafka::send_when_room(&producer, record)
                    .map_err(|e| anyhow::anyhow!("plain copy: producing: {e}"))?;
                copied += 1;
            }
            Some(Err(KafkaError::PartitionEOF(_))) => ended += 1,
            Some(Err(e)) => bail!("plain copy: consuming: {e}"),
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(started.elapsed())
}

/// The bench's child processes, logged to files and killed when dropped (weir_tests'
/// `Supervisor` puts its logs under `target/` only for test executables in `deps/`).
struct Children {
    dir: PathBuf,
    children: Vec<(String, Child)>,
}

impl Children {
    fn new(dir: &Path) -> Self {
        Children { dir: dir.to_owned(), children: Vec::new() }
    }

    fn spawn(&mut self, name: &str, mut command: Command) -> anyhow::Result<u32> {
        let log = File::create(self.dir.join(format!("{name}.log")))?;
        command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let child = command.spawn().with_context(|| format!("starting {name}"))?;
        let pid = child.id();
        self.children.push((name.to_owned(), child));
        Ok(pid)
    }

    /// Fails when a child exited: the bench would otherwise wait for nothing.
    fn check_running(&mut self) -> anyhow::Result<()> {
        for (name, child) in &mut self.children {
            if let Some(status) = child.try_wait()? {
                bail!("{name} exited ({status}); see {}/{name}.log", self.dir.display());
            }
        }
        Ok(())
    }

    /// SIGTERM, then wait for the exit; the child is forgotten.
    fn terminate(&mut self, name: &str, pid: u32, grace: Duration) -> anyhow::Result<()> {
        // SAFETY: a plain kill(2) of our own child.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let i = self.children.iter().position(|(n, _)| n == name).context("no such child")?;
        let (_, mut child) = self.children.remove(i);
        let started = Instant::now();
        while child.try_wait()?.is_none() {
            if started.elapsed() > grace {
                child.kill()?;
                bail!("{name} did not exit within {grace:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
