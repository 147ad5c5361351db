//! Weir's benchmarks: prints tables, asserts nothing about speed. See docs/benchmarks.md.
//!
//! ```text
//! cargo build --release -p weir-tests --bins && cargo build --release --bins
//! target/release/weir-bench [RECORDS]      # default 1,000,000
//! target/release/weir-bench partitions N [RECORDS]   # identity alone over N partitions
//! target/release/weir-bench planning           # planning and etcd value sizes; no services
//! target/release/weir-bench latency            # end-to-end latency alone
//! target/release/weir-bench plain [N] [RECORDS]   # the plain loops alone (tuning the baseline)
//! target/release/weir-bench memory [RECORDS]   # executor peak memory; default 5,000,000
//! ```
//!
//! - `identity`: RECORDS demo events (`weir-kafka produce --events`) over 8 partitions, then one
//!   driver and two executors (the release binaries next to this one) copy them to an output
//!   topic; timed from starting the processes until etcd holds every offset as committed. Run
//!   twice: at-least-once (idempotent producer), then exactly-once (a transaction per task),
//!   with the executors' peak threads, open files and resident memory. Then again with 200,000
//!   records over 1,000 partitions (its topics deleted afterwards).
//! - `plain loop`: the same records copied by one consumer and one producer tuned as Weir's,
//!   idempotent, then with a transaction every 100k records: the baseline Weir's overhead is
//!   measured against.
//! - `small batches`: a steady trickle of 2,000 records/s at 200 ms batches, at-least-once then
//!   exactly-once: the processing time of each batch, from the driver's log.
//! - `latency`: 2,000 records/s at 100 ms and 1 s batches, under both guarantees: produce to
//!   visible for a `read_committed` reader of the output, p50/p90/p99/max.
//! - `empty batches`: the idle job with `batch_interval = "100ms"`: what a planning round that
//!   finds nothing costs (the driver's `last_empty_round_us`) and the driver's CPU per round.
//!
//! Each benchmark is a module in `weir-bench/`; `shared` holds what they share. Jobs are run with
//! the harness's pieces (`weir_tests::job`'s config writer, executor command and etcd reader,
//! `weir_tests::supervisor` for the processes), pointed at the release binaries.

#[path = "weir-bench/empty_batches.rs"]
mod empty_batches;
#[path = "weir-bench/identity.rs"]
mod identity;
#[path = "weir-bench/latency.rs"]
mod latency;
#[path = "weir-bench/memory.rs"]
mod memory;
#[path = "weir-bench/plain_copy.rs"]
mod plain_copy;
#[path = "weir-bench/planning.rs"]
mod planning;
#[path = "weir-bench/shared.rs"]
mod shared;
#[path = "weir-bench/small_batches.rs"]
mod small_batches;

use anyhow::Context;
use weir_tests::services;

use shared::Bench;

const PARTITIONS: i32 = 8;
/// The second identity run: what the partition count costs.
const MANY_PARTITIONS: i32 = 1_000;
const MANY_RECORDS: u64 = 200_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("memory") => return memory::run(records(args.get(1), 5_000_000)?).await,
        Some("planning") => return planning::run(),
        Some("latency") => {
            services::ensure();
            return latency::run(&Bench::new("bench-latency")?).await;
        }
        Some("plain") => {
            let partitions: i32 = args.get(1).map_or(Ok(PARTITIONS), |p| p.parse())?;
            let records = records(args.get(2), 1_000_000)?;
            services::ensure();
            let bench = Bench::new("bench-plain")?;
            return identity::plain_only(&bench, records, partitions).await;
        }
        Some("partitions") => {
            let partitions: i32 = args.get(1).context("partitions N [RECORDS]")?.parse()?;
            let records = records(args.get(2), 200_000)?;
            services::ensure();
            let bench = Bench::new("bench-partitions")?;
            println!("weir-bench: logs in {}", bench.logs.display());
            identity::run(&bench, records, partitions).await?;
            identity::delete_topics(&bench, partitions).await;
            return Ok(());
        }
        _ => {}
    }
    let records = records(args.first(), 1_000_000)?;
    services::ensure();
    let bench = Bench::new("bench")?;
    println!(
        "weir-bench: {records} records over {PARTITIONS} partitions; logs in {}",
        bench.logs.display()
    );
    let identity = identity::run(&bench, records, PARTITIONS).await?;
    println!();
    identity::run(&bench, MANY_RECORDS, MANY_PARTITIONS).await?;
    identity::delete_topics(&bench, MANY_PARTITIONS).await;
    small_batches::run(&bench).await?;
    latency::run(&bench).await?;
    empty_batches::run(&bench, &identity.config, identity.http_port).await?;
    println!();
    planning::run()
}

/// The RECORDS argument, or `default`.
fn records(arg: Option<&String>, default: u64) -> anyhow::Result<u64> {
    match arg {
        Some(n) => n.parse().context("RECORDS must be a number"),
        None => Ok(default),
    }
}
