//! etcd going away under a running exactly-once job: frozen (`SIGSTOP`, a hung server that
//! accepts connections and never answers) and killed then started again. The job runs against an
//! etcd of its own, so the outages touch no other test. No Weir process may exit, output must
//! resume soon after etcd returns, and the oracle must find every record once, in order.

use std::time::Duration;

use weir_tests::etcd::PrivateEtcd;
use weir_tests::job::JobFixture;
use weir_tests::kafka;
use weir_tests::oracle::judge;
use weir_tests::scenario::{assert_still_running, one_at_a_time, output_resumes, read_kafka};

const FROZEN: Duration = Duration::from_secs(15);
const KILLED: Duration = Duration::from_secs(30);
/// After etcd returns: the driver's lease time (3 s) and a campaign, with room for a busy CI.
const RESUME_LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn etcd_frozen_then_killed_while_records_flow_stops_no_process_and_loses_nothing() {
    let _alone = one_at_a_time().await;
    let mut job = JobFixture::new("faults-etcd-outages", 4, "").await;
    let etcd = PrivateEtcd::start(&mut job.supervisor, "etcd").await;
    job.etcd_endpoints = etcd.endpoints();
    let sink = format!(
        "type = \"kafka\"\ntopic = \"{}\"\npartitioning = \"same-as-input\"\nguarantee = \"exactly-once\"",
        job.output
    );
    job.write_config_with_sink(&format!("topics = [\"{}\"]", job.input), &sink, "");
    job.start_driver();
    job.start_executor("ex-1");
    job.start_executor("ex-2");
    // 2,000 records a second for the whole run: both outages and the recoveries.
    let every = Duration::from_millis(100);
    let input = job.input.clone();
    let producer = tokio::spawn(async move {
        kafka::produce_paced(input, 4, 120_000, Duration::from_secs(60), every).await.0
    });
    job.supervisor.wait_for_log("driver", "Batch committed", Duration::from_secs(60)).await;

    let mut table = vec![];
    job.supervisor.pause("etcd");
    tokio::time::sleep(FROZEN).await;
    job.supervisor.resume("etcd");
    table.push(("etcd frozen 15 s", output_resumes(&mut job, "etcd", RESUME_LIMIT).await));
    job.supervisor.kill("etcd");
    tokio::time::sleep(KILLED).await;
    etcd.restart(&mut job.supervisor).await;
    table.push(("etcd killed 30 s", output_resumes(&mut job, "etcd", RESUME_LIMIT).await));

    let produced = producer.await.expect("the producer task");
    let mut progress = job.progress().await;
    let total = produced.len() as i64;
    progress
        .wait_committed(&job.input, total, Duration::from_secs(120), Some(&mut job.supervisor))
        .await;
    assert_still_running(&mut job.supervisor, "an etcd outage");
    let driver_log = job.supervisor.log("driver");
    assert!(driver_log.contains("Lost the leadership"), "the driver stepped down: {driver_log}");
    let verdict = judge(&produced, &read_kafka(&job.output).await);
    println!("\n| fault | output resumed after etcd returned |\n|---|---:|");
    for (fault, took) in &table {
        println!("| {fault} | {:.1} s |", took.as_secs_f64());
    }
    println!("{verdict:?}");
    assert!(verdict.is_exactly_once(), "{verdict:?}");
}
