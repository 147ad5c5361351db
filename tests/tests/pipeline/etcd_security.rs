//! etcd with TLS and authentication (`[checkpoint.tls]`, `checkpoint.user` and `password`; the
//! executor's `--etcd-*` flags), against an etcd of the test's own that requires client
//! certificates and has authentication on, with the roles `docs/security.md` gives: the driver's
//! user reads and writes its job's prefix, the executors' only reads the leader key.
//!
//! The job runs exactly once, also across an etcd restart (every token is lost: the clients log
//! in again by themselves); wrong credentials stop a driver, an executor and `weirctl` within
//! seconds with an error naming the user and the endpoint; the executors' role reads the leader
//! key and nothing else.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use etcd_client::{Client, Permission};
use weir_common::protocol::{JobKeys, LeaderRecord};
use weir_tests::certs::CertFiles;
use weir_tests::etcd::{Login, PrivateEtcd, client_with};
use weir_tests::job::{JobFixture, executor_command_at};
use weir_tests::oracle::judge;
use weir_tests::scenario::read_kafka;
use weir_tests::{binaries, kafka};

const LIMIT: Duration = Duration::from_secs(90);
/// How soon a process with refused credentials must have stopped.
const REFUSED_WITHIN: Duration = Duration::from_secs(15);
const DRIVER_PASSWORD: &str = "driver-secret-5f3a";
const EXECUTOR_PASSWORD: &str = "executor-secret-9c1d";

#[tokio::test]
async fn a_job_runs_on_etcd_with_tls_and_users_and_refused_credentials_stop_at_once() {
    let mut job = JobFixture::new("etcd-security", 2, "").await;
    // Tokens unused for 2 s expire; the etcd restart below drops all of them.
    let etcd =
        PrivateEtcd::start_secured(&mut job.supervisor, "etcd", Duration::from_secs(2)).await;
    let secured = etcd.secured.as_ref().expect("secured");
    let keys = JobKeys::new(&job.prefix, &job.names.job);
    grant_weir_roles(&mut etcd.root_client().await, &keys).await;

    let dir = job.supervisor.log_dir().to_owned();
    let secret = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, format!("{text}\n")).expect("write a password file");
        path.display().to_string()
    };
    let driver_password = secret("driver-password", DRIVER_PASSWORD);
    let executor_password = secret("executor-password", EXECUTOR_PASSWORD);
    let wrong_password = secret("wrong-password", "not-the-password");
    let ca = secured.ca.cert.display().to_string();
    // etcd requires a client certificate of every client. The executors' common name is the
    // user etcd takes from a client with no password; the others name no user, so the driver
    // and ex-2 get in only by their passwords.
    let executor_cert = secured.ca.client("weir-executor");
    let driver_cert = secured.ca.client("driver-host");
    let anonymous_cert = secured.ca.client("executor-host");

    job.etcd_endpoints = etcd.endpoints();
    job.etcd_login = Some(secured.root.clone());
    job.checkpoint = format!("user = \"weir-driver\"\npassword = \"${{file:{driver_password}}}\"");
    let sink = format!(
        "type = \"kafka\"\ntopic = \"{}\"\npartitioning = \"same-as-input\"\nguarantee = \"exactly-once\"",
        job.output
    );
    let tls = format!(
        "[checkpoint.tls]\nca = \"{ca}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        driver_cert.cert.display(),
        driver_cert.key.display()
    );
    job.write_config_with_sink(&format!("topics = [\"{}\"]", job.input), &sink, &tls);

    // ex-1 logs in by its certificate alone; ex-2 as the user weir-executor, its password from
    // the environment (its certificate names no user).
    job.start_driver();
    let mut ex1 = executor(&job, "ex-1");
    ex1.args(etcd_tls(&ca, &executor_cert));
    job.supervisor.spawn("ex-1", ex1);
    let mut ex2 = executor(&job, "ex-2");
    ex2.args(etcd_tls(&ca, &anonymous_cert)).args(["--etcd-user", "weir-executor"]);
    ex2.env("WEIR_ETCD_PASSWORD", EXECUTOR_PASSWORD);
    job.supervisor.spawn("ex-2", ex2);

    let mut produced = kafka::produce_ids(&job.input, 2, 1_000).await;
    let mut progress = job.progress().await;
    progress.wait_committed(&job.input, 1_000, LIMIT, Some(&mut job.supervisor)).await;

    // An etcd restart forgets every token (and those unused for 2 s have expired anyway): the
    // driver, a driver started next and the executors looking for it log in again by themselves.
    job.supervisor.kill("etcd");
    etcd.restart(&mut job.supervisor).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    job.supervisor.kill("driver");
    job.start_driver();
    // ex-3's password comes from a file.
    let mut ex3 = executor(&job, "ex-3");
    ex3.args(etcd_tls(&ca, &anonymous_cert)).args(["--etcd-user", "weir-executor"]);
    ex3.args(["--etcd-password-file", &executor_password]);
    job.supervisor.spawn("ex-3", ex3);
    produced.extend(kafka::produce_range(&job.input, 2, 1_000..2_000).await);
    let mut progress = job.progress().await;
    progress.wait_committed(&job.input, 2_000, LIMIT, Some(&mut job.supervisor)).await;

    // A second driver with a wrong password stops at once, naming the user and the endpoint.
    let endpoint = &etcd.endpoint;
    let mut bad = job.driver_command();
    bad.args(["--set", &format!("checkpoint.password=${{file:{wrong_password}}}")]);
    bad.args(["--set", "driver.grpc_listen=127.0.0.1:0", "--set", "driver.http_listen=off"]);
    let log = stops(&mut job, "driver-bad-password", bad).await;
    let expected =
        format!("weir-driver: etcd at {endpoint} as user weir-driver: authentication failed");
    assert!(log.contains(&expected), "names the user and the endpoint: {log}");
    // One with the executors' user may not write the job's keys: it stops too.
    let mut bad = job.driver_command();
    bad.args(["--set", "checkpoint.user=weir-executor"]);
    bad.args(["--set", &format!("checkpoint.password=${{file:{executor_password}}}")]);
    bad.args(["--set", "driver.grpc_listen=127.0.0.1:0", "--set", "driver.http_listen=off"]);
    let log = stops(&mut job, "driver-executor-user", bad).await;
    let expected =
        format!("weir-driver: etcd at {endpoint} as user weir-executor: permission denied");
    assert!(log.contains(&expected), "{log}");
    // So does an executor with a wrong password.
    let mut bad = executor(&job, "ex-bad");
    bad.args(etcd_tls(&ca, &anonymous_cert)).args(["--etcd-user", "weir-executor"]);
    bad.args(["--etcd-password-file", &wrong_password]);
    let log = stops(&mut job, "ex-bad", bad).await;
    let expected =
        format!("weir-executor: etcd at {endpoint} as user weir-executor: authentication failed");
    assert!(log.contains(&expected), "{log}");

    // The roles are the ones docs/security.md gives.
    let executor_login = Login {
        ca: secured.ca.cert.clone(),
        cert: Some(anonymous_cert.clone()),
        user: Some(("weir-executor".into(), EXECUTOR_PASSWORD.into())),
    };
    let mut as_executor = client_with(&job.etcd_endpoints, Some(&executor_login)).await;
    let leader = as_executor.get(keys.leader(), None).await.expect("executors read the leader key");
    let leader = LeaderRecord::decode(leader.kvs()[0].value()).expect("a leader record");
    assert!(leader.address.starts_with("http://127.0.0.1:"), "{leader:?}");
    assert_denied(as_executor.put(keys.offsets(), "0", None).await, "an executor writing offsets");
    assert_denied(as_executor.get(keys.offsets(), None).await, "an executor reading offsets");
    let driver_login = Login {
        ca: secured.ca.cert.clone(),
        cert: Some(driver_cert.clone()),
        user: Some(("weir-driver".into(), DRIVER_PASSWORD.into())),
    };
    let mut as_driver = client_with(&job.etcd_endpoints, Some(&driver_login)).await;
    let elsewhere = format!("{}/jobs/another-job/offsets", job.prefix);
    assert_denied(as_driver.get(elsewhere.as_str(), None).await, "a driver reading another job");

    // weirctl logs in from the job config, or from its flags.
    let status = job.weirctl(&["status"]).await.ok();
    assert!(status.stdout.contains(&job.names.job), "{}", status.stdout);
    let mut ctl = Command::new(binaries::path("weirctl"));
    ctl.args(["--etcd", endpoint, "--prefix", &job.prefix, "--job", &job.names.job]);
    ctl.args(["--etcd-ca", &ca, "--etcd-cert", &path(&driver_cert.cert)]);
    ctl.args(["--etcd-key", &path(&driver_cert.key), "--etcd-user", "weir-driver"]);
    ctl.args(["--etcd-password-file", &driver_password, "batches"]);
    let out = ctl.output().expect("weirctl runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let refused = job
        .weirctl(&["--set", &format!("checkpoint.password=${{file:{wrong_password}}}"), "batches"])
        .await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("as user weir-driver: authentication failed (connecting: etcdserver"),
        "{refused:?}"
    );

    let verdict = judge(&produced, &read_kafka(&job.output).await);
    assert!(verdict.is_exactly_once(), "{verdict:?}");
    for name in ["driver", "ex-1", "ex-2", "ex-3"] {
        let log = job.supervisor.log(name);
        assert!(!log.contains(DRIVER_PASSWORD) && !log.contains(EXECUTOR_PASSWORD), "{name}");
        if name.starts_with("ex-") {
            assert!(log.contains("generation=2"), "{name} found the second driver: {log}");
        }
        assert!(job.supervisor.is_running(name), "{name} runs: {log}");
    }
}

/// The roles of docs/security.md#etcd, for this job: `weir-driver` reads and writes the job's
/// keys, `weir-executor` reads its leader key; a user of each name holds its role.
async fn grant_weir_roles(root: &mut Client, keys: &JobKeys) {
    let job_keys = Permission::read_write(keys.job_prefix()).with_prefix();
    root.role_add("weir-driver").await.expect("role add");
    root.role_grant_permission("weir-driver", job_keys).await.expect("grant");
    root.role_add("weir-executor").await.expect("role add");
    root.role_grant_permission("weir-executor", Permission::read(keys.leader()))
        .await
        .expect("grant");
    for (user, password) in [("weir-driver", DRIVER_PASSWORD), ("weir-executor", EXECUTOR_PASSWORD)]
    {
        root.user_add(user, password, None).await.expect("user add");
        root.user_grant_role(user, user).await.expect("user grant");
    }
}

fn executor(job: &JobFixture, id: &str) -> Command {
    let binary = binaries::path("weir-executor");
    executor_command_at(&binary, &job.etcd_endpoints, &job.names.job, &job.prefix, id)
}

fn etcd_tls(ca: &str, cert: &CertFiles) -> [String; 6] {
    ["--etcd-ca".into(), ca.into(), "--etcd-cert".into(), path(&cert.cert)]
        .into_iter()
        .chain(["--etcd-key".into(), path(&cert.key)])
        .collect::<Vec<_>>()
        .try_into()
        .expect("six arguments")
}

/// Runs `command` as `name`; it must exit non-zero within [`REFUSED_WITHIN`]. Its log.
async fn stops(job: &mut JobFixture, name: &str, command: Command) -> String {
    let started = Instant::now();
    job.supervisor.spawn(name, command);
    let status = job.supervisor.wait_exit(name, REFUSED_WITHIN).await;
    let log = job.supervisor.log(name);
    let status =
        status.unwrap_or_else(|| panic!("{name} still runs after {REFUSED_WITHIN:?}: {log}"));
    assert_eq!(status.code(), Some(1), "{name} exits 1: {log}");
    println!("{name} stopped in {:.1} s", started.elapsed().as_secs_f64());
    log
}

fn assert_denied<T: std::fmt::Debug>(result: Result<T, etcd_client::Error>, what: &str) {
    match result {
        Err(e) if e.to_string().contains("permission denied") => {}
        other => panic!("{what}: expected permission denied, got {other:?}"),
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}
