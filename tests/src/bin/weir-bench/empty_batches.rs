//! `empty batches`: the idle job's driver restarted at `batch_interval = "100ms"`: what a
//! planning round that finds nothing costs (the driver's `last_empty_round_us`) and the
//! driver's CPU per round.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use rdkafka::consumer::{BaseConsumer, Consumer};
use weir_tests::kafka;
use weir_tests::supervisor::{Supervisor, stat_fields};

use crate::shared::{Bench, check_running, driver_command, http_status};

/// Restarts the driver of the job whose config is `config` (idle by now, its status page on
/// `http_port`) at 100 ms batches; samples its rounds for 5 s, then its CPU for 5 s without
/// polling, and prints the table.
pub async fn run(bench: &Bench, config: &Path, http_port: u16) -> anyhow::Result<()> {
    let mut children = Supervisor::in_dir(bench.logs.clone());
    let driver = children.spawn("driver-idle", driver_command(&bench.bin_dir, config, "100ms"));
    let warmup = Instant::now();
    loop {
        ensure!(warmup.elapsed() < Duration::from_secs(60), "the idle driver never planned");
        check_running(&mut children)?;
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

/// User plus system CPU time of `pid`, in clock ticks (`/proc/PID/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let fields = stat_fields(pid).with_context(|| format!("/proc/{pid}/stat"))?;
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
