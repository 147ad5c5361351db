//! `weirctl` as an operator uses it: the real binary against a running job (the real driver and
//! executors on the real Kafka and etcd), judged by what etcd and the group `weir.{job}` hold and
//! by an independent `read_committed` reader of the output.

mod executors;
mod lifecycle;
mod offsets;

use std::collections::BTreeMap;

use weir_tests::job::JobFixture;
use weir_tests::{group, kafka};

/// A Kafka sink that keeps each record in its input partition, so order can be judged per
/// partition.
pub fn sink(job: &JobFixture, guarantee: &str) -> String {
    format!(
        "type = \"kafka\"\ntopic = \"{}\"\npartitioning = \"same-as-input\"\nguarantee = \"{guarantee}\"",
        job.output
    )
}

pub fn topics(job: &JobFixture) -> String {
    format!("topics = [\"{}\"]", job.input)
}

/// The committed offsets etcd holds for the job's input, by partition.
pub async fn committed(job: &JobFixture) -> BTreeMap<i32, i64> {
    let checkpoint = job.committed().await.expect("the job has committed offsets");
    checkpoint
        .next_offsets
        .iter()
        .filter(|(tp, _)| tp.topic == job.input)
        .map(|(tp, &at)| (tp.partition, at))
        .collect()
}

/// The group `weir.{job}`'s offsets for the job's input, by partition.
pub fn group_offsets(job: &JobFixture, partitions: i32) -> BTreeMap<i32, i64> {
    group::committed(&format!("weir.{}", job.names.job), &job.input, partitions)
}

/// Produces `ids` to the job's input (id to partition `id % partitions`).
pub async fn produce(
    job: &JobFixture,
    partitions: i32,
    ids: std::ops::Range<u64>,
) -> Vec<kafka::Produced> {
    kafka::produce_range(&job.input, partitions, ids).await
}

/// Produces `chunks` chunks of 500 records to the job's input (4 partitions), 100 ms apart, in
/// the background: records keep arriving while a test steers the job. Returns what was produced.
pub fn produce_while_running(
    job: &JobFixture,
    chunks: u64,
) -> tokio::task::JoinHandle<Vec<kafka::Produced>> {
    let (input, every) = (job.input.clone(), std::time::Duration::from_millis(100));
    tokio::spawn(async move {
        kafka::produce_paced(input, 4, chunks * 500, every * chunks as u32, every).await.0
    })
}
