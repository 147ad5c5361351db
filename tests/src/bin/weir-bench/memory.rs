//! `weir-bench memory [RECORDS]`: one driver and one executor drain backlogs of RECORDS / 10 and
//! RECORDS (default 5,000,000) demo events over 8 partitions, exactly-once to Kafka; prints each
//! process's peak resident memory (`VmHWM`), so a growing backlog shows whether it grows too.

use std::time::{Duration, Instant};

use anyhow::Context;
use weir_tests::{kafka, services};

use crate::PARTITIONS;
use crate::shared::{Bench, BenchJob};

pub async fn run(records: u64) -> anyhow::Result<()> {
    services::ensure();
    let bench = Bench::new("bench-memory")?;
    println!("weir-bench memory: logs in {}", bench.logs.display());
    println!();
    println!("| backlog | MB (key + payload) | drained in | executor peak RSS | driver peak RSS |");
    println!("|---:|---:|---:|---:|---:|");
    for backlog in [records / 10, records] {
        let name = format!("{}-{backlog}", bench.names.job);
        let (input, output) = (format!("{name}.in"), format!("{name}.out"));
        kafka::create_topic(&input, PARTITIONS).await;
        kafka::create_topic(&output, PARTITIONS).await;
        bench.run_tool(&["produce", &input, &backlog.to_string(), "--events"])?;
        let run = backlog.to_string();
        let mut job = BenchJob::new(&bench, &run, name, &input, &output, "exactly-once")?;
        let started = Instant::now();
        let driver = job.start_driver("1s");
        let executor = job.start_executor("ex-1");
        job.wait_committed(backlog, Duration::from_secs(1200)).await;
        let took = started.elapsed();
        let (executor_peak, driver_peak) = (peak_rss_mib(executor)?, peak_rss_mib(driver)?);
        job.stop().await;
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
