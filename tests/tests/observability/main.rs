//! What operators see of a running job: the driver's status page in a real browser (Debian's
//! headless `chromium`), `/api/status`, `/metrics`, and health on a leader and a standby, checked
//! against what the test made happen: committed batches, a task that failed and was retried, and
//! an executor lost with its tasks.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use serde_json::Value;
use weir_common::health;
use weir_tests::job::{JobFixture, free_port};
use weir_tests::metrics::sample;
use weir_tests::{binaries, kafka};

const MINUTE: Duration = Duration::from_secs(60);
const GET: Duration = Duration::from_secs(5);

#[tokio::test]
async fn the_status_page_api_and_metrics_show_batches_a_retried_task_and_a_lost_executor() {
    let mut job = JobFixture::new("obs-status-page", 4, "").await;
    let http_port = free_port();
    job.http_listen = format!("127.0.0.1:{http_port}");
    let base = format!("127.0.0.1:{http_port}");
    let out_dir = job.supervisor.log_dir().join("out");
    let sink = format!("type = \"file\"\npath = {:?}", out_dir.display().to_string());
    job.write_config_with_sink(&format!("topics = [\"{}\"]", job.input), &sink, "");

    // A failure a retry mends: the first attempt of partition 0's first task finds a directory
    // where its temporary file goes (a transient file-sink error); the second attempt writes a
    // file of its own name.
    kafka::produce_ids(&job.input, 4, 400).await;
    let first = format!("{}-0-{:020}-{:020}.jsonl", job.input, 0, 100);
    std::fs::create_dir_all(out_dir.join(format!(".{first}.attempt-0.tmp"))).unwrap();

    job.start_driver();
    job.start_executor("ex-1");
    job.start_executor("ex-2");
    job.wait_committed(&job.input.clone(), 400, MINUTE).await;
    let ready = health::get(&base, "/readyz", GET).await.unwrap();
    assert_eq!(ready.0, 200, "the leader is ready: {ready:?}");

    // An executor lost with tasks: ex-2 is paused while it owns lanes, new records arrive, and
    // after executor_timeout (3 s) its tasks run again on ex-1.
    wait_until(&base, "both executors own lanes", |s| {
        let executors = s["executors"].as_array().cloned().unwrap_or_default();
        executors.len() == 2 && executors.iter().all(|e| e["lanes"].as_u64() > Some(0))
    })
    .await;
    job.supervisor.pause("ex-2");
    kafka::produce_range(&job.input, 4, 400..800).await;
    job.wait_committed(&job.input.clone(), 800, MINUTE).await;
    job.supervisor.kill("ex-2");

    let status = api_status(&base).await;
    let metrics = health::get(&base, "/metrics", GET).await.unwrap().1;

    // /api/status: totals, the history with the retried and the moved tasks, the failures.
    assert_eq!(status["records_in"], 800, "{status}");
    assert_eq!(status["role"], "leader");
    assert_eq!(status["executors"].as_array().unwrap().len(), 1, "ex-2 is gone");
    let batches = status["batches"].as_array().unwrap();
    let committed = status["batches_committed"].as_u64().unwrap();
    assert_eq!(batches.len() as u64, committed, "every batch is in the history");
    let failures = status["failures"].as_array().unwrap();
    let transient = failures.iter().find(|f| f["kind"] == "transient").expect("the failed task");
    assert!(transient["message"].as_str().unwrap().contains("Is a directory"), "{transient}");
    let retried = transient["batch"].as_u64().unwrap();
    let lost = failures.iter().find(|f| f["kind"] == "lost").expect("the lost executor's task");
    assert_eq!(lost["executor"], "ex-2");
    let moved = lost["batch"].as_u64().unwrap();
    for id in [retried, moved] {
        let b = batches.iter().find(|b| b["id"] == id).unwrap();
        assert!(b["attempts"].as_u64() > b["tasks"].as_u64(), "batch {id} ran a task twice: {b}");
        assert_eq!(b["status"], "committed");
    }

    // /metrics: the histograms and counters agree with what happened.
    let value = |series: &str| sample(&metrics, series);
    assert_eq!(value("weir_driver_leader{job"), Some(1.0));
    assert_eq!(
        value(&format!(
            "weir_driver_records_in_total{{job=\"{}\",topic=\"{}\"}}",
            job.names.job, job.input
        )),
        Some(800.0),
        "{metrics}"
    );
    assert_eq!(value("weir_driver_batches_committed_total{"), Some(committed as f64));
    assert_eq!(value("weir_driver_batch_processing_seconds_count{"), Some(committed as f64));
    assert_eq!(value("weir_driver_batch_total_delay_seconds_count{"), Some(committed as f64));
    let transient = value("weir_driver_task_failures_total{kind=\"transient\"}");
    assert!(transient.is_some_and(|n| n >= 1.0), "the failed attempt: {metrics}");
    assert!(value("weir_driver_executors_lost_total{").is_some_and(|n| n >= 1.0), "{metrics}");
    let tasks = batches.iter().map(|b| b["tasks"].as_u64().unwrap()).sum::<u64>() as f64;
    assert_eq!(value("weir_driver_task_duration_seconds_count{"), Some(tasks), "one per task");

    // The page in a real browser: the batch table matches /api/status, row for row.
    let page =
        chromium_dom(&format!("http://{base}/"), &job.supervisor.log_dir().join("status-page.png"))
            .await;
    for b in batches {
        let row = format!(
            r#"<tr data-batch="{}" data-status="{}" data-records-in="{}" data-records-out="{}">"#,
            b["id"],
            b["status"].as_str().unwrap(),
            b["records_in"],
            b["records_out"]
        );
        assert!(page.contains(&row), "the page lacks {row}");
    }
    assert!(page.contains(r#"data-records-in="800""#), "totals on the page");
    assert!(
        page.contains(r#"<tr data-kind="transient">"#) && page.contains(r#"<tr data-kind="lost">"#)
    );
    assert!(page.contains("<svg class=\"chart\""), "the charts are drawn");
    let detail = chromium_dom(
        &format!("http://{base}/batches/{retried}"),
        &job.supervisor.log_dir().join("batch.png"),
    )
    .await;
    assert!(
        detail.contains(r#"<tr data-outcome="failed">"#)
            && detail.contains(r#"<tr data-outcome="succeeded">"#),
        "{detail}"
    );

    // A standby serves its page and health while the leader leads, and says who leads.
    let standby_port = free_port();
    let mut command = job.driver_command();
    command
        .args(["--set", &format!("driver.grpc_listen=127.0.0.1:{}", free_port())])
        .args(["--set", &format!("driver.http_listen=127.0.0.1:{standby_port}")]);
    job.supervisor.spawn("standby", command);
    let standby = format!("127.0.0.1:{standby_port}");
    let ready = wait_ready(&standby).await;
    assert!(ready.contains("standby: driver"), "{ready}");
    let standby_page =
        chromium_dom(&format!("http://{standby}/"), &job.supervisor.log_dir().join("standby.png"))
            .await;
    assert!(standby_page.contains(r#"id="role">standby<"#), "{standby_page}");
    assert!(
        standby_page.contains(&format!(r#"href="http://{base}/""#)),
        "links to the leader: {standby_page}"
    );
    assert!(health_command(&standby).await.success(), "weir-driver health on the standby");
    assert!(health_command(&base).await.success(), "weir-driver health on the leader");
    job.supervisor.kill("driver");
    assert!(!health_command(&base).await.success(), "a dead driver is not healthy");
}

async fn api_status(base: &str) -> Value {
    let (code, body) = health::get(base, "/api/status", GET).await.unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn wait_until(base: &str, what: &str, check: impl Fn(&Value) -> bool) {
    let started = Instant::now();
    loop {
        let status = api_status(base).await;
        if check(&status) {
            return;
        }
        assert!(started.elapsed() < MINUTE, "waited a minute for {what}: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_ready(base: &str) -> String {
    let started = Instant::now();
    loop {
        if let Ok((200, body)) = health::get(base, "/readyz", GET).await {
            return body;
        }
        assert!(started.elapsed() < MINUTE, "{base} was not ready within a minute");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn health_command(base: &str) -> ExitStatus {
    let mut command = tokio::process::Command::new(binaries::path("weir-driver"));
    command.args(["health", "--http", base]).stdout(std::process::Stdio::null()).kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(20), command.status()).await.unwrap().unwrap()
}

/// Loads `url` in headless Chromium and returns the DOM it rendered; keeps a screenshot at
/// `screenshot` (a test artifact).
async fn chromium_dom(url: &str, screenshot: &Path) -> String {
    let browser = chromium();
    let profile = tempdir(screenshot);
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
    ];
    let run = |extra: Vec<String>| {
        let mut command = tokio::process::Command::new(&browser);
        command
            .args(common)
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(url)
            .kill_on_drop(true);
        async move {
            let output = tokio::time::timeout(MINUTE, command.output())
                .await
                .expect("chromium ran for a minute")
                .expect("chromium runs");
            assert!(
                output.status.success(),
                "chromium failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
    };
    run(vec![format!("--screenshot={}", screenshot.display()), "--window-size=1400,1800".into()])
        .await;
    assert!(screenshot.is_file(), "chromium wrote no screenshot at {}", screenshot.display());
    run(vec!["--dump-dom".into()]).await
}

fn chromium() -> PathBuf {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .map(PathBuf::from)
        .into_iter()
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("no chromium: run `deploy/local/services.sh browser` (the test command does)")
    })
}

fn tempdir(near: &Path) -> PathBuf {
    let dir = near.with_extension("profile");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every query of the Grafana dashboard and of the alert rules in `deploy/monitoring/` names a
/// metric that a running driver or executor exports, with the suffix its type gives it.
#[tokio::test]
async fn every_dashboard_and_alert_query_names_an_exported_metric() {
    let mut job = JobFixture::new("obs-dashboard", 2, "").await;
    let (driver_port, executor_port) = (free_port(), free_port());
    job.http_listen = format!("127.0.0.1:{driver_port}");
    job.write_config(&format!("topics = [\"{}\"]", job.input), "");
    kafka::produce_ids(&job.input, 2, 100).await;
    job.start_driver();
    let mut executor = weir_tests::job::executor_command(
        &binaries::path("weir-executor"),
        &job.names.job,
        &job.prefix,
        "ex-1",
    );
    executor.args(["--http-listen", &format!("127.0.0.1:{executor_port}")]);
    job.supervisor.spawn("ex-1", executor);
    job.wait_committed(&job.input.clone(), 100, MINUTE).await;

    let mut exported = std::collections::BTreeMap::new();
    for port in [driver_port, executor_port] {
        let (code, text) =
            health::get(&format!("127.0.0.1:{port}"), "/metrics", GET).await.unwrap();
        assert_eq!(code, 200, "{text}");
        for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let mut words = line.split_whitespace();
            if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                exported.insert(name.to_owned(), kind.to_owned());
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
    let monitoring = root.join("deploy/monitoring");
    let dashboard = std::fs::read_to_string(monitoring.join("grafana-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&dashboard).unwrap();
    let mut queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    queries.push(dashboard["templating"]["list"][0]["query"].as_str().unwrap().to_owned());
    let alerts = std::fs::read_to_string(monitoring.join("alerts.yml")).unwrap();
    queries
        .extend(alerts.lines().filter_map(|l| l.trim().strip_prefix("expr: ")).map(str::to_owned));
    assert!(queries.len() > 20, "the dashboard and the alerts have queries: {queries:?}");

    let mut unknown = Vec::new();
    let mut used = 0;
    for query in &queries {
        for name in metric_names(query) {
            used += 1;
            if !is_exported(&exported, &name) {
                unknown.push(format!("{name} (in {query})"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "queries name metrics nobody exports: {unknown:#?}\nexported: {exported:?}"
    );
    assert!(used > 20);
}

/// Every `weir_...` identifier in a PromQL query.
fn metric_names(query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(at) = rest.find("weir_") {
        let tail = &rest[at..];
        let end =
            tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// A gauge by its name, a counter by `_total`, a histogram by `_bucket`, `_sum` or `_count`.
fn is_exported(exported: &std::collections::BTreeMap<String, String>, name: &str) -> bool {
    let typed = |base: &str, kind: &str| exported.get(base).is_some_and(|k| k == kind);
    typed(name, "gauge")
        || name.strip_suffix("_total").is_some_and(|b| typed(b, "counter"))
        || ["_bucket", "_sum", "_count"]
            .iter()
            .any(|s| name.strip_suffix(s).is_some_and(|b| typed(b, "histogram")))
}
