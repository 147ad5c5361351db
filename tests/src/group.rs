//! The Kafka consumer group a job publishes its progress to (`weir.{job}`), seen the way an
//! operator sees it: its committed offsets, and the output of Kafka's own
//! `kafka-consumer-groups` tool. Also lets a test tamper with the group, as a careless operator
//! might.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::client_config;
use crate::services;

fn group_client(group: &str) -> BaseConsumer {
    client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("group client")
}

/// The group's committed offset per partition of `topic` (partitions without one left out).
pub fn committed(group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer = group_client(group);
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("committed offsets of group {group}: {e}"));
    committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(at) => Some((e.partition(), at)),
            _ => None,
        })
        .collect()
}

/// Commits `offsets` for `topic` to the group, from outside the job.
pub fn commit(group: &str, topic: &str, offsets: &BTreeMap<i32, i64>) {
    let consumer = group_client(group);
    let mut list = TopicPartitionList::new();
    for (&p, &at) in offsets {
        list.add_partition_offset(topic, p, Offset::Offset(at)).expect("offset");
    }
    consumer.commit(&list, CommitMode::Sync).unwrap_or_else(|e| panic!("commit to {group}: {e}"));
}

/// `kafka-consumer-groups --describe --group {group}`, Kafka's own tool, as text.
pub fn describe_with_kafka_tool(group: &str) -> String {
    let output = std::process::Command::new("bash")
        .arg(services::script())
        .args([
            "kafka-tool",
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            "--bootstrap-server",
            &services::ensure().kafka_brokers,
            "--describe",
            "--group",
            group,
        ])
        .output()
        .expect("run kafka-consumer-groups");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "kafka-consumer-groups failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

/// One row of the tool's table: `(current offset, log end offset, lag)` of `topic`-`partition`.
pub fn tool_row(table: &str, topic: &str, partition: i32) -> Option<(i64, i64, i64)> {
    table.lines().find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
        if cols.len() >= 6 && cols[1] == topic && cols[2] == partition.to_string() {
            Some((cols[3].parse().ok()?, cols[4].parse().ok()?, cols[5].parse().ok()?))
        } else {
            None
        }
    })
}
