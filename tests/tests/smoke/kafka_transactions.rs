use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use weir_tests::kafka::{self, Isolation};
use weir_tests::names::TestNames;
use weir_tests::services;

const TIMEOUT: Duration = Duration::from_secs(30);

type TxProducer = ThreadedProducer<DefaultProducerContext>;

fn transactional_producer(transactional_id: &str) -> TxProducer {
    kafka::client_config()
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", "30000")
        .create()
        .expect("transactional producer")
}

fn send_all(producer: &TxProducer, topic: &str, keys: impl IntoIterator<Item = String>) {
    for key in keys {
        let record = BaseRecord::to(topic).key(&key).payload(&key).partition(0);
        producer.send(record).map_err(|(e, _)| e).expect("enqueue");
    }
}

fn keys(read: &std::collections::BTreeMap<i32, Vec<kafka::Consumed>>) -> Vec<String> {
    read.values()
        .flatten()
        .map(|r| String::from_utf8(r.key.clone().unwrap_or_default()).unwrap())
        .collect()
}

/// Committed transactions are visible to `read_committed`, aborted ones are not, though the
/// aborted records did reach the log (a `read_uncommitted` reader sees them).
#[tokio::test]
async fn read_committed_sees_committed_and_not_aborted_records() {
    services::ensure();
    let names = TestNames::new("smoke-tx");
    let topic = names.topic("out");
    kafka::create_topic(&topic, 1).await;

    let t = topic.clone();
    let txn_id = format!("{}.lane.0", names.job);
    tokio::task::spawn_blocking(move || {
        let producer = transactional_producer(&txn_id);
        producer.init_transactions(TIMEOUT).expect("init_transactions");
        producer.begin_transaction().unwrap();
        send_all(&producer, &t, (0..100).map(|i| format!("committed-{i}")));
        producer.commit_transaction(TIMEOUT).expect("commit");
        producer.begin_transaction().unwrap();
        send_all(&producer, &t, (0..50).map(|i| format!("aborted-{i}")));
        producer.flush(TIMEOUT).expect("aborted records reach the broker before the abort");
        producer.abort_transaction(TIMEOUT).expect("abort");
        producer.begin_transaction().unwrap();
        send_all(&producer, &t, (100..110).map(|i| format!("committed-{i}")));
        producer.commit_transaction(TIMEOUT).expect("commit");
    })
    .await
    .unwrap();

    let committed = keys(&kafka::read_committed(&topic).await);
    let expected: Vec<String> = (0..110).map(|i| format!("committed-{i}")).collect();
    assert_eq!(committed, expected, "exactly the committed records, in order");

    let everything = keys(&kafka::read_topic(&topic, Isolation::ReadUncommitted).await);
    assert_eq!(everything.iter().filter(|k| k.starts_with("aborted-")).count(), 50);
}

/// A second producer with the same transactional id fences the first: the zombie's commit
/// fails, and nothing it wrote in that transaction becomes visible.
#[tokio::test]
async fn a_new_producer_with_the_same_id_fences_the_old_one() {
    services::ensure();
    let names = TestNames::new("smoke-fence");
    let topic = names.topic("out");
    kafka::create_topic(&topic, 1).await;

    let t = topic.clone();
    let txn_id = format!("{}.lane.0", names.job);
    let zombie_commit = tokio::task::spawn_blocking(move || {
        let zombie = transactional_producer(&txn_id);
        zombie.init_transactions(TIMEOUT).unwrap();
        zombie.begin_transaction().unwrap();
        send_all(&zombie, &t, (0..20).map(|i| format!("zombie-{i}")));
        zombie.flush(TIMEOUT).unwrap();

        let successor = transactional_producer(&txn_id);
        successor.init_transactions(TIMEOUT).expect("the successor's init fences the zombie");
        successor.begin_transaction().unwrap();
        send_all(&successor, &t, (0..5).map(|i| format!("successor-{i}")));
        successor.commit_transaction(TIMEOUT).unwrap();

        zombie.commit_transaction(TIMEOUT)
    })
    .await
    .unwrap();

    match zombie_commit {
        Err(KafkaError::Transaction(e)) => assert!(e.is_fatal() || e.txn_requires_abort(), "{e}"),
        other => panic!("the fenced producer's commit must fail, got {other:?}"),
    }
    let committed = keys(&kafka::read_committed(&topic).await);
    let expected: Vec<String> = (0..5).map(|i| format!("successor-{i}")).collect();
    assert_eq!(committed, expected, "only the successor's records are visible");
}
