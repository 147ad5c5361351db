use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use weir_tests::job::{JobFixture, id_counts};
use weir_tests::{binaries, kafka, services};

/// `executor/examples/custom_transform`, next to the other binaries of this build.
fn custom_transform_executor() -> PathBuf {
    let executor = binaries::path("weir-executor");
    let example = executor.parent().expect("target/<profile>").join("examples/custom_transform");
    assert!(
        example.is_file(),
        "{} not found; build it first with `cargo build --examples` \
         (or `cargo build -p weir-executor --examples`)",
        example.display()
    );
    example
}

/// A user's executor binary (the `custom_transform` example, with its `redact` transform) runs
/// a job whose config names that transform: every record arrives, its payload's digits redacted,
/// its key untouched.
#[tokio::test]
async fn a_user_transform_registered_in_a_custom_executor_rewrites_every_record() {
    let example = custom_transform_executor();
    let steps = "[transform]\nsteps = [{ type = \"user\", name = \"redact\" }]";
    let mut job = JobFixture::new("pipeline-user-transform", 2, steps).await;
    kafka::produce_ids(&job.input, 2, 1_000).await;
    job.start_driver();
    // The same flags JobFixture::start_executor gives weir-executor.
    let mut command = Command::new(example);
    command.args([
        "--job",
        &job.names.job,
        "--prefix",
        &job.prefix,
        "--etcd",
        &services::ensure().etcd_endpoints.join(","),
        "--id",
        "custom-1",
        "--slots",
        "2",
    ]);
    job.supervisor.spawn("custom-1", command);
    job.wait_committed(&job.input.clone(), 1_000, Duration::from_secs(60)).await;

    let output = kafka::read_committed(&job.output).await;
    let counts = id_counts(&output);
    assert_eq!(counts.len(), 1_000, "distinct ids (keys pass through unchanged)");
    assert!(counts.values().all(|&n| n == 1), "a record arrived twice without any fault");
    for record in output.values().flatten() {
        let id = record.id().expect("id key");
        let redacted: String = kafka::record_payload(id)
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect();
        assert_eq!(
            record.payload.as_deref(),
            Some(redacted.as_bytes()),
            "record {id}: payload redacted by the user transform"
        );
    }
    assert!(
        job.supervisor.log("driver").contains("executor=custom-1"),
        "the custom executor ran the tasks"
    );
}
