//! `small batches`: a steady trickle at 200 ms batches, per guarantee: the processing time of
//! each batch, from first dispatch to commit, read from the driver's `Batch committed` lines.

use std::time::{Duration, Instant};

use weir_tests::kafka;

use crate::PARTITIONS;
use crate::shared::{Bench, BenchJob};

const TRICKLE_RATE: u64 = 2_000;
const TRICKLE_SECONDS: u64 = 10;

struct SmallBatches {
    /// `processing_ms` of every committed batch that read records.
    processing_ms: Vec<u64>,
    median_records: u64,
}

/// Runs the trickle at-least-once, then exactly-once, and prints the table.
pub async fn run(bench: &Bench) -> anyhow::Result<()> {
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
        let b = small_batches(bench, guarantee).await?;
        println!(
            "| {guarantee} | {} | {} | {} | {} | {} |",
            b.processing_ms.len(),
            b.median_records,
            percentile(&b.processing_ms, 0.5),
            percentile(&b.processing_ms, 0.9),
            percentile(&b.processing_ms, 1.0)
        );
    }
    Ok(())
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    sorted.get(((sorted.len().saturating_sub(1)) as f64 * q) as usize).copied().unwrap_or(0)
}

/// A job fed a steady trickle (TRICKLE_RATE records/s in 10 slices a second) for
/// TRICKLE_SECONDS: what a small batch costs from first dispatch to commit, read from the
/// driver's `Batch committed` lines.
async fn small_batches(bench: &Bench, guarantee: &'static str) -> anyhow::Result<SmallBatches> {
    let run = format!("small-{guarantee}");
    let (mut job, _) = BenchJob::start_fresh(bench, &run, guarantee, "200ms").await?;
    let input = job.input.clone();
    let slice = TRICKLE_RATE / 10;
    let total = slice * 10 * TRICKLE_SECONDS;
    let started = Instant::now();
    for n in 0..10 * TRICKLE_SECONDS {
        kafka::produce_range(&input, PARTITIONS, n * slice..(n + 1) * slice).await;
        let next = Duration::from_millis(100 * (n + 1));
        tokio::time::sleep(next.saturating_sub(started.elapsed())).await;
        job.check_running()?;
    }
    job.wait_committed(total, Duration::from_secs(120)).await;
    job.stop().await;
    let log = job.supervisor.log("driver");
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
