//! `identity`: the same records copied by Weir, at-least-once then exactly-once, and by a plain
//! librdkafka consumer and producer (the floor), in one table.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::ensure;
use weir_tests::kafka;

use crate::PARTITIONS;
use crate::plain_copy::plain_copy;
use crate::shared::{Bench, BenchJob, http_status};

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
}

/// Produces `records` demo events, copies them through Weir under each guarantee and with plain
/// librdkafka, and prints the table. Returns the at-least-once run.
pub async fn run(bench: &Bench, records: u64) -> anyhow::Result<IdentityRun> {
    let input = bench.names.topic("in");
    let (weir_out, plain_out) = (bench.names.topic("out"), bench.names.topic("plain-out"));
    for topic in [&input, &weir_out, &plain_out] {
        kafka::create_topic(topic, PARTITIONS).await;
    }
    let produced = bench.run_tool(&["produce", &input, &records.to_string(), "--events"])?;
    println!("{}", produced.trim());

    // a. identity through Weir, at-least-once then exactly-once, each into its own topic.
    let mut runs = Vec::new();
    for guarantee in ["at-least-once", "exactly-once"] {
        runs.push(identity(bench, &input, records, guarantee).await?);
    }
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
    Ok(runs.swap_remove(0))
}

/// Copies `input` to a new topic through one driver and two executors under `guarantee`; timed
/// from starting the processes until etcd holds every offset as committed. The driver and
/// executors are stopped (SIGTERM) before it returns.
async fn identity(
    bench: &Bench,
    input: &str,
    records: u64,
    guarantee: &'static str,
) -> anyhow::Result<IdentityRun> {
    let output = format!("{input}-{guarantee}-out");
    kafka::create_topic(&output, PARTITIONS).await;
    let name = format!("{}-{guarantee}", bench.names.job);
    let mut job = BenchJob::new(bench, guarantee, name, input, &output, guarantee)?;
    let started = Instant::now();
    job.start_driver("1s");
    for id in ["ex-1", "ex-2"] {
        job.start_executor(id);
    }
    let mut progress = job.progress().await;
    let mut first_batch: Option<Duration> = None;
    let mut status = serde_json::Value::Null;
    loop {
        ensure!(started.elapsed() < Duration::from_secs(600), "not committed after 10 minutes");
        job.check_running()?;
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
    job.stop().await;
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
    })
}
