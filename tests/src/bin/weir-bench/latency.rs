//! `latency`: end to end, from a record's produce to the moment a `read_committed` reader of the
//! output sees it, at a steady 2,000 records/s over 8 partitions, for `batch_interval` 100 ms and
//! 1 s, at-least-once and exactly-once. A record's latency is the reader's clock minus the
//! record's timestamp (set by the producer when it sends; the job copies it to the output). The
//! first seconds (the processes starting, lane producers initialising) are left out.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use weir_tests::kafka;

use crate::PARTITIONS;
use crate::shared::{Bench, BenchJob};

const RATE: u64 = 2_000;
/// Produce slices per second.
const SLICES: u64 = 20;
const WARM_UP: Duration = Duration::from_secs(3);
const MEASURED: Duration = Duration::from_secs(12);

/// Runs the four cases and prints the table.
pub async fn run(bench: &Bench) -> anyhow::Result<()> {
    println!();
    println!(
        "## end-to-end latency: {RATE} records/s over {PARTITIONS} partitions, produce → visible \
         to a read_committed reader of the output; {} s measured after {} s of warm-up",
        MEASURED.as_secs(),
        WARM_UP.as_secs()
    );
    println!();
    println!("| batch_interval | guarantee | records | p50 | p90 | p99 | max |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for interval in ["100ms", "1s"] {
        for guarantee in ["at-least-once", "exactly-once"] {
            let mut latencies = latencies(bench, interval, guarantee).await?;
            latencies.sort_unstable();
            let p = |q: f64| {
                let at = ((latencies.len().saturating_sub(1)) as f64 * q).round() as usize;
                latencies.get(at).map_or("-".to_owned(), |ms| format!("{ms} ms"))
            };
            println!(
                "| {interval} | {guarantee} | {} | {} | {} | {} | {} |",
                latencies.len(),
                p(0.5),
                p(0.9),
                p(0.99),
                p(1.0)
            );
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// The latency (ms) of each record produced after the warm-up.
async fn latencies(bench: &Bench, interval: &str, guarantee: &str) -> anyhow::Result<Vec<i64>> {
    let run = format!("latency-{interval}-{guarantee}");
    let (mut job, output) = BenchJob::start_fresh(bench, &run, guarantee, interval).await?;
    let input = job.input.clone();
    let total = RATE * (WARM_UP + MEASURED).as_secs();
    let measured_from = now_ms() + WARM_UP.as_millis() as i64;
    let reader = tokio::task::spawn_blocking(move || read_latencies(&output, total, measured_from));
    let slice = RATE / SLICES;
    let producer = kafka::test_producer();
    let started = Instant::now();
    for n in 0..total / slice {
        kafka::produce_with(&producer, &input, PARTITIONS, n * slice..(n + 1) * slice).await;
        let next = Duration::from_millis(1_000 / SLICES * (n + 1));
        tokio::time::sleep(next.saturating_sub(started.elapsed())).await;
        job.check_running()?;
    }
    let latencies = reader.await??;
    job.stop().await;
    Ok(latencies)
}

/// Reads the output from its start until `total` records arrived (or a minute passes); returns
/// the latencies of those with a timestamp past `measured_from`.
fn read_latencies(output: &str, total: u64, measured_from: i64) -> anyhow::Result<Vec<i64>> {
    let consumer: BaseConsumer = kafka::client_config()
        .set("group.id", weir_tests::names::unique("weir-bench-latency"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment.add_partition_offset(output, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut seen: BTreeSet<(i32, i64)> = BTreeSet::new();
    let mut latencies = Vec::new();
    let deadline = Instant::now() + WARM_UP + MEASURED + Duration::from_secs(60);
    while (seen.len() as u64) < total && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(50)) else { continue };
        let m = message?;
        let arrived = now_ms();
        if !seen.insert((m.partition(), m.offset())) {
            continue;
        }
        if let Some(sent) = m.timestamp().to_millis().filter(|&t| t >= measured_from) {
            latencies.push(arrived - sent);
        }
    }
    Ok(latencies)
}
