//! `identity`: the same records copied by Weir, at-least-once then exactly-once, and by the
//! plain loop (the baseline: idempotent, then with a transaction every 100k records), in one
//! table, with each Weir executor's peak threads, open files and resident memory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::ensure;
use weir_tests::kafka;

use crate::plain_copy::{PlainMode, plain_copy};
use crate::shared::{Bench, BenchJob, Peaks, http_status};

/// One copy through Weir.
pub struct IdentityRun {
    pub guarantee: &'static str,
    /// The job's config, which the empty-batches benchmark runs again.
    pub config: PathBuf,
    pub http_port: u16,
    wall: Duration,
    first_batch: Option<Duration>,
    output: usize,
    bytes: usize,
    status: serde_json::Value,
    /// The longest an executor took to exit after SIGTERM.
    executor_exit: Duration,
    /// The largest of the two executors' peaks.
    executor_peaks: Peaks,
}

/// Produces `records` demo events over `partitions` partitions, copies them through Weir under
/// each guarantee and with the plain loop, and prints the table. Returns the at-least-once run.
pub async fn run(bench: &Bench, records: u64, partitions: i32) -> anyhow::Result<IdentityRun> {
    let input = input_topic(bench, partitions);
    kafka::create_topic(&input, partitions).await;
    let produced = bench.run_tool(&["produce", &input, &records.to_string(), "--events"])?;
    println!("{}", produced.trim());

    // a. identity through Weir, at-least-once then exactly-once, each into its own topic.
    let mut runs = Vec::new();
    for guarantee in GUARANTEES {
        runs.push(identity(bench, &input, partitions, records, guarantee).await?);
    }
    let bytes = runs[0].bytes;
    // b. the plain loop on the same records, without and with transactions.
    let plain = plain_loops(bench, &input, partitions, records).await?;

    let mb = bytes as f64 / 1e6;
    println!();
    println!("## identity: {records} records, {mb:.1} MB (key + payload), {partitions} partitions");
    println!();
    println!(
        "| run | wall time | records/s | MB/s | output records (read_committed) | executor peak threads | open files | RSS |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let row = |name: &str, t: Duration, out: String, peaks: Option<&Peaks>| {
        let s = t.as_secs_f64();
        let peaks = peaks.map_or("| - | - | -".to_owned(), |p| {
            format!("| {} | {} | {:.0} MiB", p.threads, p.open_files, p.rss_mib)
        });
        println!(
            "| {name} | {s:.2} s | {:.0} | {:.1} | {out} {peaks} |",
            records as f64 / s,
            mb / s
        );
    };
    for run in &runs {
        let g = run.guarantee;
        row(
            &format!("weir {g}: start of processes → all offsets committed"),
            run.wall,
            run.output.to_string(),
            Some(&run.executor_peaks),
        );
        if let Some(first) = run.first_batch {
            row(
                &format!("weir {g}: first batch seen in /api/status → all committed"),
                run.wall.saturating_sub(first),
                "same".into(),
                None,
            );
        }
    }
    for (mode, took, count) in &plain {
        match took {
            Ok(took) => row(&mode.label(), *took, count.to_string(), None),
            Err(e) => println!("| {} | failed: {e:#} | | | {count} | - | - | - |", mode.label()),
        }
    }
    let baseline = |i: usize| plain[i].1.as_ref().map(|t| records as f64 / t.as_secs_f64()).ok();
    let weir = |i: usize| records as f64 / runs[i].wall.as_secs_f64();
    let ratio = |i: usize| baseline(i).map_or("-".to_owned(), |b| format!("{:.2}", weir(i) / b));
    println!();
    println!(
        "weir at-least-once / plain idempotent: {}; weir exactly-once / plain transactional: {}",
        ratio(0),
        ratio(1)
    );
    println!();
    for run in &runs {
        println!(
            "driver status at the end ({}): batches_committed={} records_in={} last_processing_ms={} \
             first batch seen at {:.2} s; executors exited {:.1} s after SIGTERM",
            run.guarantee,
            run.status["batches_committed"],
            run.status["records_in"],
            run.status["last_processing_ms"],
            run.first_batch.map_or(f64::NAN, |f| f.as_secs_f64()),
            run.executor_exit.as_secs_f64()
        );
        if run.output as u64 != records {
            println!(
                "WARNING: {} output holds {} records, expected {records}",
                run.guarantee, run.output
            );
        }
    }
    Ok(runs.swap_remove(0))
}

const GUARANTEES: [&str; 2] = ["at-least-once", "exactly-once"];
const PLAIN_MODES: [PlainMode; 2] = [PlainMode::Idempotent, PlainMode::Transactional(100_000)];

/// The topics [`run`] makes: the input, Weir's output per guarantee, the plain loops' outputs.
fn input_topic(bench: &Bench, partitions: i32) -> String {
    bench.names.topic(&format!("in-{partitions}"))
}

fn output_topic(input: &str, guarantee: &str) -> String {
    format!("{input}-{guarantee}-out")
}

/// The output of the plain loop `PLAIN_MODES[index]`.
fn plain_topic(bench: &Bench, index: usize, partitions: i32) -> String {
    bench.names.topic(&format!("plain-{index}-{partitions}"))
}

/// Deletes the topics [`run`] made for `partitions` partitions: a broker with a small heap does
/// not keep many topics of a thousand partitions (the local one ran out of its 512 MiB after
/// three such runs).
pub async fn delete_topics(bench: &Bench, partitions: i32) {
    let input = input_topic(bench, partitions);
    let mut topics: Vec<String> = GUARANTEES.iter().map(|g| output_topic(&input, g)).collect();
    topics.extend((0..PLAIN_MODES.len()).map(|index| plain_topic(bench, index, partitions)));
    topics.push(input);
    for topic in &topics {
        kafka::delete_topic(topic).await;
    }
}

/// The plain loop over `input`, idempotent then transactional, each into a topic of its own:
/// how long each took and what a `read_committed` reader finds in its output.
async fn plain_loops(
    bench: &Bench,
    input: &str,
    partitions: i32,
    records: u64,
) -> anyhow::Result<Vec<(PlainMode, anyhow::Result<Duration>, usize)>> {
    let mut plain = Vec::new();
    for (index, mode) in PLAIN_MODES.into_iter().enumerate() {
        let output = plain_topic(bench, index, partitions);
        kafka::create_topic(&output, partitions).await;
        // A loop that fails is a row of the table (saying why), not the end of the run.
        let took = tokio::task::spawn_blocking({
            let (input, output) = (input.to_owned(), output.clone());
            move || plain_copy(&input, &output, partitions, records, mode)
        })
        .await?;
        let count = kafka::read_committed(&output).await.values().map(Vec::len).sum::<usize>();
        plain.push((mode, took, count));
    }
    Ok(plain)
}

/// `weir-bench plain`: the plain loops alone over `records` fresh demo events.
pub async fn plain_only(bench: &Bench, records: u64, partitions: i32) -> anyhow::Result<()> {
    let input = input_topic(bench, partitions);
    kafka::create_topic(&input, partitions).await;
    bench.run_tool(&["produce", &input, &records.to_string(), "--events"])?;
    println!(
        "| plain loop ({records} records, {partitions} partitions) | wall time | records/s | output |"
    );
    println!("|---|---:|---:|---:|");
    for (mode, took, count) in plain_loops(bench, &input, partitions, records).await? {
        match took {
            Ok(took) => {
                let s = took.as_secs_f64();
                println!("| {} | {s:.2} s | {:.0} | {count} |", mode.label(), records as f64 / s);
            }
            Err(e) => println!("| {} | failed: {e:#} | | {count} |", mode.label()),
        }
    }
    Ok(())
}

/// Copies `input` to a new topic through one driver and two executors under `guarantee`; timed
/// from starting the processes until etcd holds every offset as committed. The driver and
/// executors are stopped (SIGTERM) before it returns.
async fn identity(
    bench: &Bench,
    input: &str,
    partitions: i32,
    records: u64,
    guarantee: &'static str,
) -> anyhow::Result<IdentityRun> {
    let output = output_topic(input, guarantee);
    kafka::create_topic(&output, partitions).await;
    // Each run a job, a config and a log directory of its own: the bench runs identity over 8
    // and over 1,000 partitions, and the idle-job step restarts the 8-partition one.
    let name = format!("{}-{partitions}p-{guarantee}", bench.names.job);
    let run = format!("{partitions}p-{guarantee}");
    let mut job = BenchJob::new(bench, &run, name, input, &output, guarantee)?;
    let started = Instant::now();
    job.start_driver("1s");
    let executors: Vec<u32> = ["ex-1", "ex-2"].map(|id| job.start_executor(id)).into();
    let mut executor_peaks = Peaks::default();
    let mut progress = job.progress().await;
    let mut first_batch: Option<Duration> = None;
    let mut status = serde_json::Value::Null;
    loop {
        ensure!(started.elapsed() < Duration::from_secs(600), "not committed after 10 minutes");
        job.check_running()?;
        for &pid in &executors {
            executor_peaks.sample(pid);
        }
        if let Ok(now) = http_status(job.http_port) {
            let busy = now["batches_in_flight"].as_u64().unwrap_or(0) > 0
                || now["batches_committed"].as_u64().unwrap_or(0) > 0;
            if busy && first_batch.is_none() {
                first_batch = Some(started.elapsed());
            }
            status = now;
        }
        if progress.committed_records(input).await == records as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wall = started.elapsed();
    if let Ok(now) = http_status(job.http_port) {
        status = now;
    }
    let executor_exit = job.stop().await;
    let read = kafka::read_committed(&output).await;
    let output_count: usize = read.values().map(Vec::len).sum();
    let bytes: usize = read
        .values()
        .flatten()
        .map(|r| r.key.as_ref().map_or(0, Vec::len) + r.payload.as_ref().map_or(0, Vec::len))
        .sum();
    Ok(IdentityRun {
        guarantee,
        config: job.config.clone(),
        http_port: job.http_port,
        wall,
        first_batch,
        output: output_count,
        bytes,
        status,
        executor_exit,
        executor_peaks,
    })
}
