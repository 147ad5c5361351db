//! `weirctl offsets reset`: every target writes the same offsets to etcd and to the group, a dry
//! run writes nothing, a live job is refused until `--stop`, and under exactly-once a reset back
//! in time writes the records from then once more, each once.

use std::time::Duration;

use weir_driver::time::format_ms;
use weir_tests::job::{JobFixture, id_counts};
use weir_tests::kafka;

use crate::{committed, group_offsets, produce, sink, topics};

const MINUTE: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// 10,000 records with known timestamps (the second half produced after a recorded instant),
/// all processed under exactly-once; then a reset to that instant and a resume: the second half
/// is written exactly once more, the first half never again.
#[tokio::test]
async fn reset_to_a_datetime_under_exactly_once_writes_the_records_from_then_once_more() {
    let mut job = JobFixture::new("ctl-reset-datetime", 4, "").await;
    job.write_config_with_sink(&topics(&job), &sink(&job, "exactly-once"), "");
    produce(&job, 4, 0..5_000).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let reset_at = now_ms();
    tokio::time::sleep(Duration::from_millis(20)).await;
    produce(&job, 4, 5_000..10_000).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.start_executor("ex-2");
    job.wait_committed(&job.input.clone(), 10_000, MINUTE).await;

    job.weirctl(&["job", "stop"]).await.ok();
    let at = format_ms(reset_at);
    let reset = job
        .weirctl(&["offsets", "reset", "--all-topics", "--to-datetime", &at, "--execute"])
        .await
        .ok();
    assert!(reset.stdout.contains("(checked)"), "{}", reset.stdout);
    let expected: std::collections::BTreeMap<i32, i64> = (0..4).map(|p| (p, 1_250)).collect();
    assert_eq!(committed(&job).await, expected, "each partition at its first record after {at}");
    assert_eq!(group_offsets(&job, 4), expected, "the group moved with etcd");

    job.weirctl(&["job", "resume"]).await.ok();
    job.wait_committed(&job.input.clone(), 10_000, MINUTE).await;
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    let wrong: Vec<(u64, usize)> = (0..10_000)
        .map(|id| (id, counts.get(&id).copied().unwrap_or(0)))
        .filter(|&(id, n)| n != if id < 5_000 { 1 } else { 2 })
        .take(10)
        .collect();
    assert!(wrong.is_empty(), "ids before the reset time once, after it twice; wrong: {wrong:?}");
    assert_eq!(counts.len(), 10_000, "nothing unexpected in the output");
}

/// `--shift-by`, `--from-file` and `--to-latest`, on a stopped job: etcd and the group hold the
/// same new offsets after each.
#[tokio::test]
async fn shift_by_from_file_and_to_latest_move_etcd_and_the_group_alike() {
    let mut job = JobFixture::new("ctl-reset-targets", 4, "").await;
    produce(&job, 4, 0..4_000).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.wait_committed(&job.input.clone(), 4_000, MINUTE).await;
    job.weirctl(&["job", "stop"]).await.ok();
    let input = job.input.clone();

    job.weirctl(&["offsets", "reset", "--topic", &input, "--shift-by", "-100", "--execute"])
        .await
        .ok();
    let shifted: std::collections::BTreeMap<i32, i64> = (0..4).map(|p| (p, 900)).collect();
    assert_eq!(committed(&job).await, shifted);
    assert_eq!(group_offsets(&job, 4), shifted);

    let csv = job.supervisor.log_dir().join("offsets.csv");
    std::fs::write(&csv, format!("# topic,partition,offset\n{input},0,10\n{input},2,500\n"))
        .unwrap();
    let csv = csv.to_string_lossy().into_owned();
    job.weirctl(&["offsets", "reset", "--from-file", &csv, "--execute"]).await.ok();
    let from_file = [(0, 10), (1, 900), (2, 500), (3, 900)].into_iter().collect();
    assert_eq!(committed(&job).await, from_file, "only the partitions in the file move");
    assert_eq!(group_offsets(&job, 4), from_file);

    let out = job
        .weirctl(&[
            "offsets",
            "reset",
            "--topic",
            &format!("{input}:0,2"),
            "--to-latest",
            "--execute",
        ])
        .await
        .ok();
    assert!(out.stdout.contains("+990"), "the plan shows each move: {}", out.stdout);
    let latest = [(0, 1_000), (1, 900), (2, 1_000), (3, 900)].into_iter().collect();
    assert_eq!(committed(&job).await, latest);
    assert_eq!(group_offsets(&job, 4), latest);

    let outside = job
        .weirctl(&["offsets", "reset", "--all-topics", "--to-offset", "5000", "--execute"])
        .await;
    assert_eq!(outside.code, 3, "an offset past the log is refused: {outside:?}");
    assert!(outside.stderr.contains("outside its log [0, 1000]"), "{}", outside.stderr);
    assert_eq!(committed(&job).await, latest, "a refused reset writes nothing");
}

/// A dry run changes nothing, byte for byte; `--execute` against a job a driver runs is refused
/// with the driver's address; with `--stop` the job drains, the reset is written, and the job
/// stays stopped until resumed, then reads everything again (at-least-once).
#[tokio::test]
async fn a_dry_run_writes_nothing_and_a_live_job_is_refused_until_stopped() {
    let mut job = JobFixture::new("ctl-reset-live", 2, "").await;
    produce(&job, 2, 0..2_000).await;
    job.start_driver();
    job.start_executor("ex-1");
    job.wait_committed(&job.input.clone(), 2_000, MINUTE).await;

    // At-least-once publishes the progress to the group after each commit, asynchronously: let
    // it land before taking the picture the dry run must not change.
    let committed_offsets = committed(&job).await;
    let started = std::time::Instant::now();
    while group_offsets(&job, 2) != committed_offsets {
        assert!(started.elapsed() < MINUTE, "the group never showed the committed offsets");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let etcd_before = job.etcd_keys().await;
    let group_before = group_offsets(&job, 2);
    let dry = job
        .weirctl(&["--output", "json", "offsets", "reset", "--all-topics", "--to-earliest"])
        .await
        .ok();
    let plan = dry.json();
    assert_eq!(plan["dry_run"], true);
    let targets: Vec<i64> =
        plan["changes"].as_array().unwrap().iter().map(|c| c["target"].as_i64().unwrap()).collect();
    assert_eq!(targets, [0, 0], "the plan says where each partition would go");
    assert_eq!(job.etcd_keys().await, etcd_before, "etcd unchanged, byte for byte");
    assert_eq!(group_offsets(&job, 2), group_before, "the group unchanged");

    let refused =
        job.weirctl(&["offsets", "reset", "--all-topics", "--to-earliest", "--execute"]).await;
    assert_eq!(refused.code, 3, "{refused:?}");
    let address = format!("http://127.0.0.1:{}", job.grpc_port);
    assert!(refused.stderr.contains(&address), "names the driver: {}", refused.stderr);
    assert_eq!(committed(&job).await, [(0, 1_000), (1, 1_000)].into_iter().collect());

    job.weirctl(&["offsets", "reset", "--all-topics", "--to-earliest", "--execute", "--stop"])
        .await
        .ok();
    assert_eq!(committed(&job).await, [(0, 0), (1, 0)].into_iter().collect());
    assert_eq!(group_offsets(&job, 2), [(0, 0), (1, 0)].into_iter().collect());
    let status = job.weirctl(&["--output", "json", "status"]).await.ok().json();
    assert_eq!(status["state"], "stopped", "the job stays stopped after the reset");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(committed(&job).await, [(0, 0), (1, 0)].into_iter().collect(), "nothing runs");

    job.weirctl(&["job", "resume"]).await.ok();
    job.wait_committed(&job.input.clone(), 2_000, MINUTE).await;
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), 2_000);
    assert!(counts.values().all(|&n| n == 2), "every record read again, once more");
}
