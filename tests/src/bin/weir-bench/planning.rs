//! `weir-bench planning`: the driver's pure planning step and the size of the etcd values a job
//! writes, against the partition count. No Kafka or etcd: it calls the planner the driver calls
//! (`weir_driver::planner`) on a lane map (the default `source.lanes`) and a lag per partition, and encodes the values the
//! driver writes (`lanes`, `offsets`, a `batches/{id}` record) as it writes them.
//!
//! What it leaves out, and the job's round includes: the ListOffsets request to Kafka for every
//! partition, and the etcd round trips (the batch record is one put; a commit is one etcd
//! transaction whatever the partition count).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use weir_common::TopicPartition;
use weir_common::checkpoint::OffsetsCheckpoint;
use weir_common::config::DEFAULT_LANES;
use weir_common::lanes::LaneMap;
use weir_driver::planner::{Budget, PartitionState, plan_batch};

/// etcd's default limit on one request (`--max-request-bytes`, 1.5 MiB).
const ETCD_REQUEST_LIMIT: usize = 1_572_864;

pub fn run() -> anyhow::Result<()> {
    println!("## planning and etcd values against the partition count");
    println!();
    println!(
        "| partitions | topics | plan a batch (median of 21) | max | tasks | `batches/{{id}}` | `offsets` | `lanes` | largest / etcd's 1.5 MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for partitions in [8, 1_000, 10_000, 50_000] {
        row(partitions)?;
    }
    Ok(())
}

fn row(partitions: usize) -> anyhow::Result<()> {
    // Topics of at most 100 partitions, named as a user's might be.
    let per_topic = partitions.min(100);
    let topics = partitions.div_ceil(per_topic);
    let all: Vec<TopicPartition> = (0..partitions)
        .map(|i| {
            TopicPartition::new(
                format!("events.region-{:03}.v1", i / per_topic),
                (i % per_topic) as i32,
            )
        })
        .collect();
    let mut lanes = LaneMap::default();
    lanes.extend(all.iter(), DEFAULT_LANES);
    // Every partition lags by a different amount, 100 to 1,099 records, far into its log.
    let states: BTreeMap<TopicPartition, PartitionState> = all
        .iter()
        .enumerate()
        .map(|(i, tp)| {
            let next = 1_000_000_000 + i as i64 * 7;
            (tp.clone(), PartitionState { next, latest: next + 100 + (i as i64 * 37) % 1_000 })
        })
        .collect();
    let budget = Budget { per_partition: Some(10_000), total: Some(50_000_000) };
    let mut times: Vec<Duration> = Vec::new();
    let mut plan = None;
    for id in 0..21 {
        let started = Instant::now();
        plan = plan_batch(id + 1, &states, &lanes, budget, 1_780_000_000_000);
        times.push(started.elapsed());
    }
    times.sort();
    let plan = plan.expect("every partition lags");
    let batch_bytes = plan.encode().len();
    let offsets = OffsetsCheckpoint {
        next_offsets: plan.ends().map(|(tp, until)| (tp.clone(), until)).collect(),
        last_committed_batch: Some(plan.id),
    };
    let offsets_bytes = offsets.encode().len();
    let lanes_bytes = lanes.encode().len();
    let largest = batch_bytes.max(offsets_bytes).max(lanes_bytes);
    println!(
        "| {partitions} | {topics} | {:.3} ms | {:.3} ms | {} | {} | {} | {} | {:.1} % |",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        plan.tasks.len(),
        kib(batch_bytes),
        kib(offsets_bytes),
        kib(lanes_bytes),
        largest as f64 * 100.0 / ETCD_REQUEST_LIMIT as f64,
    );
    Ok(())
}

fn kib(bytes: usize) -> String {
    if bytes < 10_000 { format!("{bytes} B") } else { format!("{:.0} KiB", bytes as f64 / 1024.0) }
}
