//! User code that fails badly inside a task: a transform that panics on one record, and one that
//! hangs for ever on one host. The job goes on, and the oracle finds every other record once.

use std::time::Duration;

use rdkafka::producer::FutureRecord;
use weir_tests::job::{JobFixture, executor_command};
use weir_tests::scenario::one_at_a_time;
use weir_tests::{binaries, kafka};

const MINUTE: Duration = Duration::from_secs(60);

fn faulty_executor(job: &JobFixture, id: &str) -> std::process::Command {
    executor_command(&binaries::path("weir-faulty-executor"), &job.names.job, &job.prefix, id)
}

async fn produce_payload(topic: &str, key: &str, payload: &str) {
    let producer = kafka::test_producer();
    let record = FutureRecord::to(topic).key(key).payload(payload).partition(0);
    producer.send(record, Duration::from_secs(10)).await.expect("produce");
}

/// A transform that panics on one record: that record goes to the dead letters with the panic
/// message (`on_record_error = "dead-letter"`); every other record arrives once.
#[tokio::test]
async fn a_transform_that_panics_dead_letters_its_record_and_the_job_goes_on() {
    let mut job = JobFixture::new("faults-panicking-transform", 1, "").await;
    let dlq = job.names.topic("dead");
    kafka::create_topic(&dlq, 1).await;
    let transform = format!(
        "[transform]\non_record_error = \"dead-letter\"\ndead_letter_topic = \"{dlq}\"\nsteps = [{{ type = \"user\", name = \"panics\" }}]"
    );
    let sink =
        format!("type = \"kafka\"\ntopic = \"{}\"\nguarantee = \"exactly-once\"", job.output);
    job.write_config_with_sink(&format!("topics = [\"{}\"]", job.input), &sink, &transform);
    kafka::produce_range(&job.input, 1, 0..500).await;
    produce_payload(&job.input, "poison", "panic-me").await;
    kafka::produce_range(&job.input, 1, 500..1_000).await;
    job.start_driver();
    let executor = faulty_executor(&job, "ex-1");
    job.supervisor.spawn("ex-1", executor);
    job.wait_committed(&job.input.clone(), 1_001, MINUTE).await;

    let dead: Vec<_> = kafka::read_committed(&dlq).await.into_values().flatten().collect();
    assert_eq!(dead.len(), 1, "the poison record, once");
    let reason = dead[0].header("weir.error").expect("the reason");
    assert!(reason.contains("panicked: the test transform met a poison record"), "{reason}");
    let counts = weir_tests::job::id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 1_000);
    assert!(counts.values().all(|&n| n == 1), "every other record once");
    assert!(job.supervisor.is_running("ex-1"), "the executor lives on");
}

/// A transform that hangs for ever on one host: the task reads nothing more, the driver cancels
/// it after `driver.task_stall_timeout` and runs it on the other executor, whose transaction
/// fences the stuck one; later batches commit and every record arrives once (exactly-once).
#[tokio::test]
async fn a_transform_that_hangs_on_one_executor_is_run_elsewhere_and_the_job_goes_on() {
    let _alone = one_at_a_time().await;
    let mut job = JobFixture::new("faults-hanging-transform", 1, "").await;
    let steps = "[transform]\nsteps = [{ type = \"user\", name = \"hangs\" }]";
    let sink =
        format!("type = \"kafka\"\ntopic = \"{}\"\nguarantee = \"exactly-once\"", job.output);
    job.write_config_with_sink(&format!("topics = [\"{}\"]", job.input), &sink, steps);
    let config = std::fs::read_to_string(&job.config_path).unwrap();
    let config = config.replace("[driver]\n", "[driver]\ntask_stall_timeout = \"3s\"\n");
    std::fs::write(&job.config_path, config).unwrap();
    kafka::produce_range(&job.input, 1, 0..500).await;
    produce_payload(&job.input, "id-500", "{\"id\":500,\"note\":\"hang-me\"}").await;
    kafka::produce_range(&job.input, 1, 501..1_000).await;
    job.start_driver();
    let mut stuck = faulty_executor(&job, "ex-stuck");
    stuck.env("WEIR_HANG_ON", "hang-me");
    job.supervisor.spawn("ex-stuck", stuck);
    job.supervisor.wait_for_log("driver", "Assigning task", MINUTE).await;
    let healthy = faulty_executor(&job, "ex-healthy");
    job.supervisor.spawn("ex-healthy", healthy);
    job.supervisor.wait_for_log("driver", "Task stalled", MINUTE).await;
    job.wait_committed(&job.input.clone(), 1_000, MINUTE).await;
    kafka::produce_range(&job.input, 1, 1_000..1_500).await;
    job.wait_committed(&job.input.clone(), 1_500, MINUTE).await;

    let counts = weir_tests::job::id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 1_500, "every record arrived");
    assert!(counts.values().all(|&n| n == 1), "the stuck attempt's output was fenced: once each");
    assert!(job.supervisor.is_running("ex-stuck") && job.supervisor.is_running("ex-healthy"));
}
