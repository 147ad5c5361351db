//! A small Kafka tool for the demo and the benchmarks, on the harness's helpers:
//!
//! ```text
//! weir-kafka create-topic NAME PARTITIONS
//! weir-kafka produce TOPIC COUNT [--events] [--malformed-every N]
//! weir-kafka count TOPIC            # records a read_committed reader sees
//! ```
//! `produce` writes record `i` with key `id-{i}`, payload `{"id":i}` (or, with `--events`, a demo
//! event `{"id":i,"user":"u3","type":"click","debug":"…","ts":…}`), and every Nth record's
//! payload as text that is not JSON.
//!
//! With `WEIR_KAFKA_BROKERS` set it talks to those brokers only (etcd is not needed), with the
//! client properties of the file `WEIR_KAFKA_CLIENT_PROPERTIES` (SASL_SSL in the compose
//! deployment); without it, to the test services, started if they are not running.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use weir_tests::kafka;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg =
        |i: usize, what: &str| args.get(i).cloned().with_context(|| format!("missing {what}"));
    match args.first().map(String::as_str) {
        Some("create-topic") => {
            let name = arg(1, "topic name")?;
            let partitions: i32 = arg(2, "partition count")?.parse().context("partition count")?;
            kafka::create_topic_on(&brokers(), &name, partitions).await;
            println!("created {name} with {partitions} partitions");
        }
        Some("produce") => {
            let topic = arg(1, "topic")?;
            let count: u64 = arg(2, "count")?.parse().context("count")?;
            let events = args.iter().any(|a| a == "--events");
            let malformed_every = match args.iter().position(|a| a == "--malformed-every") {
                Some(i) => arg(i + 1, "--malformed-every N")?.parse::<u64>().context("N")?,
                None => 0,
            };
            let started = Instant::now();
            produce(&topic, count, events, malformed_every)?;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "produced {count} records to {topic} in {secs:.2}s ({:.0}/s)",
                count as f64 / secs
            );
        }
        Some("count") => {
            let topic = arg(1, "topic")?;
            let records =
                kafka::read_topic_on(&brokers(), &topic, kafka::Isolation::ReadCommitted).await;
            println!("{}", records.values().map(Vec::len).sum::<usize>());
        }
        _ => bail!(
            "usage: weir-kafka create-topic NAME PARTITIONS | produce TOPIC COUNT [--events] [--malformed-every N] | count TOPIC"
        ),
    }
    Ok(())
}

/// `WEIR_KAFKA_BROKERS`, or the test services' broker.
fn brokers() -> String {
    std::env::var("WEIR_KAFKA_BROKERS")
        .unwrap_or_else(|_| weir_tests::services::ensure().kafka_brokers.clone())
}

fn produce(topic: &str, count: u64, events: bool, malformed_every: u64) -> anyhow::Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = kafka::client_config_on(&brokers())
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .create()
        .context("producer")?;
    let kinds = ["click", "view", "heartbeat", "purchase"];
    for i in 0..count {
        let key = kafka::record_key(i);
        let payload = if malformed_every > 0 && i % malformed_every == malformed_every - 1 {
            format!("not json #{i}")
        } else if events {
            format!(
                r#"{{"id":{i},"user":"u{}","type":"{}","debug":"trace-{i}","ts":{}}}"#,
                i % 7,
                kinds[(i % 4) as usize],
                1_700_000_000_000u64 + i
            )
        } else {
            kafka::record_payload(i)
        };
        let record = BaseRecord::to(topic).key(&key).payload(&payload);
        kafka::send_when_room(&producer, record)
            .with_context(|| format!("producing record {i}"))?;
    }
    producer.flush(Duration::from_secs(120)).context("flushing")?;
    Ok(())
}
