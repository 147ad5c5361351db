//! The Kafka cluster going away under a running exactly-once job: its only broker killed, and
//! started again three minutes later, while records flow. The job runs against a broker of its
//! own, so the outage touches no other test. No Weir process may exit (the tasks that fail
//! meanwhile, again and again, must not use up `driver.max_task_attempts`), the status must say
//! the job waits for Kafka, output must resume soon after the broker returns, and the oracle must
//! find every record once.

use std::time::{Duration, Instant};

use weir_common::health;
use weir_tests::job::{JobFixture, free_port};
use weir_tests::kafka_broker::PrivateKafka;
use weir_tests::metrics::sample;
use weir_tests::oracle::judge;
use weir_tests::scenario::{assert_still_running, one_at_a_time, output_resumes, read_kafka_on};
use weir_tests::{kafka, supervisor::Supervisor};

const OUTAGE: Duration = Duration::from_secs(180);
/// After the broker answers again: its coordinators load, the tasks' clients reconnect or the
/// next attempt starts (every attempt in an outage ends within about 35 s).
const RESUME_LIMIT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn the_broker_killed_for_three_minutes_stops_no_process_and_loses_nothing() {
    let _alone = one_at_a_time().await;
    let mut services = Supervisor::new("faults-kafka-outage-broker");
    let broker = PrivateKafka::start(&mut services, "kafka").await;
    let mut job = JobFixture::new_on(&broker.brokers, "faults-kafka-outage", 4, "").await;
    job.http_listen = format!("127.0.0.1:{}", free_port());
    let sink = format!(
        "type = \"kafka\"\ntopic = \"{}\"\npartitioning = \"same-as-input\"\nguarantee = \"exactly-once\"",
        job.output
    );
    job.write_config_with_sink(&format!("topics = [\"{}\"]", job.input), &sink, "");
    job.start_driver();
    job.start_executor("ex-1");
    job.start_executor("ex-2");
    // 250 records a second for four minutes: before, during (held in the producer's queue) and
    // after the outage.
    let (brokers, input) = (broker.brokers.clone(), job.input.clone());
    let producer = tokio::spawn(async move {
        let (over, every) = (Duration::from_secs(240), Duration::from_millis(100));
        kafka::produce_paced_on(&brokers, input, 4, 60_000, over, every).await.0
    });
    job.supervisor.wait_for_log("driver", "Batch committed", Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Tasks in flight when the broker goes: the executors are paused for a moment (well within
    // the 3 s executor timeout) while batches are recorded and assigned to them, and they run
    // those tasks against the dead broker.
    job.supervisor.pause("ex-1");
    job.supervisor.pause("ex-2");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    services.kill("kafka");
    let killed = Instant::now();
    job.supervisor.resume("ex-1");
    job.supervisor.resume("ex-2");
    let base = format!("http://{}", job.http_listen);
    let mut waiting_for = None;
    while killed.elapsed() < OUTAGE {
        assert_still_running(&mut job.supervisor, "a Kafka outage");
        if let Ok((200, body)) = health::get(&base, "/api/status", Duration::from_secs(2)).await {
            let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
            if let Some(w) = status["waiting_for"].as_str().filter(|w| w.contains("Kafka")) {
                waiting_for = Some(w.to_owned());
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let waiting_for = waiting_for.expect("the status never said the job waits for Kafka");
    let (_, metrics) = health::get(&base, "/metrics", Duration::from_secs(2)).await.unwrap();
    let outage_failures =
        sample(&metrics, "weir_driver_task_failures_total{kind=\"unavailable\"}").unwrap_or(0.0);
    broker.restart(&mut services).await;
    let resumed = output_resumes(&mut job, "the broker", RESUME_LIMIT).await;

    let produced = producer.await.expect("the producer task");
    let mut progress = job.progress().await;
    let total = produced.len() as i64;
    progress
        .wait_committed(&job.input, total, Duration::from_secs(180), Some(&mut job.supervisor))
        .await;
    assert_still_running(&mut job.supervisor, "a Kafka outage");
    let verdict = judge(&produced, &read_kafka_on(&broker.brokers, &job.output).await);
    println!(
        "\n| fault | tasks failed as unavailable | output resumed after the broker answered |"
    );
    println!("|---|---:|---:|");
    println!(
        "| broker killed {} s | {outage_failures} | {:.1} s |",
        OUTAGE.as_secs(),
        resumed.as_secs_f64()
    );
    println!("status during the outage: waiting for {waiting_for}");
    println!("{verdict:?}");
    assert!(verdict.is_exactly_once(), "{verdict:?}");
    assert!(
        outage_failures >= 1.0,
        "tasks ran into the outage, so some must have failed as unavailable:\n{metrics}"
    );
}
