//! The in-process tier: `weir_driver::run` and two `weir_executor::run` as tokio tasks of the
//! test process (no child binaries), against the real Kafka and etcd. It proves that the library
//! entry points run a job to completion exactly-once, and that their shutdown futures stop them
//! cleanly: each `run` returns `Ok(())` in bounded time, the gRPC port the OS chose for the driver
//! (read from the leader record in etcd) refuses connections once the driver's `run` returned,
//! no task they spawned is left on the runtime, and
//! etcd holds no uncommitted batch.
//!
//! Set `WEIR_LOG` (e.g. `WEIR_LOG=info,weir_driver=debug`) to see the components' logs on stderr.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weir_common::etcd::EtcdAccess;
use weir_common::protocol::{JobKeys, LeaderRecord};
use weir_executor::{ExecutorOptions, TransformRegistry};
use weir_tests::job::{self, JobFixture, id_counts};
use weir_tests::{etcd, kafka, services};

const RECORDS: u64 = 2_000;
const PARTITIONS: i32 = 4;
/// How long each `run` may take to return once its shutdown future resolved.
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// A component running as a tokio task, with the sender that resolves its shutdown future.
struct Running<E> {
    name: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), E>>,
}

/// A shutdown future for `run` that resolves when the returned sender fires (or is dropped).
fn shutdown(reason: &'static str) -> (oneshot::Sender<()>, impl Future<Output = &'static str>) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
        reason
    })
}

impl<E: std::fmt::Debug + Send + 'static> Running<E> {
    /// Resolves the shutdown future and waits (at most [`STOP_LIMIT`]) for `run` to return `Ok`.
    async fn stop(self) {
        let started = Instant::now();
        self.stop.send(()).expect("the task still holds its shutdown future");
        let joined = tokio::time::timeout(STOP_LIMIT, self.task).await.unwrap_or_else(|_| {
            panic!("{}: run did not return within {STOP_LIMIT:?} of its shutdown", self.name)
        });
        let result = joined.unwrap_or_else(|e| panic!("{}: the task panicked: {e}", self.name));
        assert!(result.is_ok(), "{}: run returned {result:?}", self.name);
        println!("{} stopped in {:?}", self.name, started.elapsed());
    }

    /// Panics if `run` already returned: the job cannot progress without it.
    fn assert_running(&self) {
        assert!(!self.task.is_finished(), "{} returned before its shutdown", self.name);
    }
}

/// The fixture's config with the driver's gRPC port left to the OS (`127.0.0.1:0`, no
/// `advertise`), HTTP off, and the Kafka sink exactly-once.
fn config(job: &JobFixture) -> Arc<weir_common::config::JobConfig> {
    let sink = format!(
        "type = \"kafka\"\ntopic = \"{}\"\npartitioning = \"same-as-input\"\nguarantee = \"exactly-once\"",
        job.output
    );
    let text = job::JobConfig {
        job: &job.names.job,
        prefix: &job.prefix,
        batch_interval: "200ms",
        brokers: &job.brokers,
        source: &format!("topics = [\"{}\"]", job.input),
        sink: &sink,
        grpc_port: 0,
        http_listen: "off",
        etcd: &job.etcd_endpoints,
        checkpoint: "",
        driver: "executor_timeout = \"3s\"\nheartbeat_interval = \"500ms\"",
        extra: "",
    }
    .text();
    let config = weir_common::config::JobConfig::from_toml_str(&text)
        .unwrap_or_else(|e| panic!("job config: {e}\n{text}"));
    assert_eq!(config.driver.grpc_listen.port(), 0, "the OS picks the port");
    assert!(config.driver.advertise.is_none());
    Arc::new(config)
}

/// What the binary's flags would give: etcd, prefix and job of the fixture, two slots, no
/// `--driver` (the leader is looked up in etcd).
fn executor_options(job: &JobFixture, id: &str) -> ExecutorOptions {
    ExecutorOptions {
        etcd: EtcdAccess {
            endpoints: services::ensure().etcd_endpoints.clone(),
            ..EtcdAccess::default()
        },
        prefix: job.prefix.clone(),
        job: job.names.job.clone(),
        driver: None,
        slots: 2,
        id: id.to_owned(),
        address: "127.0.0.1".to_owned(),
        tls: None,
        token: None,
        allow_kafka_code: false,
    }
}

/// The driver's gRPC address from the job's leader record, once there is one.
async fn leader_address(job: &JobFixture) -> SocketAddr {
    let mut client = etcd::client().await;
    let key = JobKeys::new(&job.prefix, &job.names.job).leader();
    let started = Instant::now();
    loop {
        let resp = client.get(key.as_str(), None).await.expect("etcd get leader");
        if let Some(kv) = resp.kvs().first() {
            let record = LeaderRecord::decode(kv.value()).expect("leader record");
            let host_port = record.address.strip_prefix("http://").unwrap_or_else(|| {
                panic!("leader address {:?} is not http://host:port", record.address)
            });
            return host_port
                .parse()
                .unwrap_or_else(|e| panic!("leader address {:?}: {e}", record.address));
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no leader record at {key}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `addr` refuses a TCP connection now (nothing listens there any more).
async fn refuses(addr: SocketAddr) -> bool {
    let connect = tokio::net::TcpStream::connect(addr);
    matches!(tokio::time::timeout(Duration::from_secs(1), connect).await, Ok(Err(_)))
}

/// The driver and two executors run in the test process over a backlog of 2,000 records: every
/// record reaches the output once, etcd commits them all, and stopping the driver, then the
/// executors, ends every task with `Ok` and leaves nothing running (the driver's port closed, the
/// runtime back to the tasks it had before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_and_two_executors_run_in_process_and_stop_cleanly() {
    if std::env::var_os("WEIR_LOG").is_some() {
        weir_common::telemetry::init();
    }
    let job = JobFixture::new("pipeline-in-process", PARTITIONS, "").await;
    let produced = kafka::produce_ids(&job.input, PARTITIONS, RECORDS).await;
    let config = config(&job);
    let mut progress = job.progress().await;
    // A first request, so the connection's own tasks are running before they are counted.
    assert_eq!(progress.committed().await, None, "a new job has no progress");
    let metrics = tokio::runtime::Handle::current().metrics();
    // The test's own tasks (its etcd connection) stay; whatever runs above this count afterwards
    // was left behind by the components.
    let tasks_before = metrics.num_alive_tasks();

    let (stop, until) = shutdown("test: driver stop");
    let driver = Running {
        name: "driver".into(),
        stop,
        task: tokio::spawn(weir_driver::run(config, until)),
    };
    let executors: Vec<_> = ["ex-1", "ex-2"]
        .into_iter()
        .map(|id| {
            let (stop, until) = shutdown("test: executor stop");
            let options = executor_options(&job, id);
            let task = tokio::spawn(weir_executor::run(options, TransformRegistry::new(), until));
            Running { name: id.to_owned(), stop, task }
        })
        .collect();

    let grpc = leader_address(&job).await;
    assert_ne!(grpc.port(), 0, "the leader record names the port bound");
    tokio::net::TcpStream::connect(grpc)
        .await
        .unwrap_or_else(|e| panic!("the driver's gRPC port {grpc} while it runs: {e}"));

    let started = Instant::now();
    {
        let committed =
            progress.wait_committed(&job.input, RECORDS as i64, Duration::from_secs(60), None);
        tokio::pin!(committed);
        loop {
            tokio::select! {
                () = &mut committed => break,
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    driver.assert_running();
                    executors.iter().for_each(Running::assert_running);
                }
            }
        }
    }
    println!("{RECORDS} records committed in {:?}", started.elapsed());

    driver.stop().await;
    assert!(refuses(grpc).await, "the driver's gRPC port {grpc} still accepts after run returned");
    for executor in executors {
        executor.stop().await;
    }
    // Tasks the components spawned end with them; a connection's task may need a moment to see
    // its peer gone, so allow a bounded wait, never more.
    let started = Instant::now();
    while metrics.num_alive_tasks() > tasks_before {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} tasks alive 10 s after every run returned, {tasks_before} before they started",
            metrics.num_alive_tasks()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tasks_after = metrics.num_alive_tasks();
    println!(
        "runtime at {tasks_after} tasks ({tasks_before} before) {:?} after",
        started.elapsed()
    );

    assert_eq!(job.uncommitted_batches().await, Vec::<u64>::new(), "uncommitted batches in etcd");
    assert_eq!(progress.committed_records(&job.input).await, RECORDS as i64, "committed offsets");
    let output = kafka::read_committed(&job.output).await;
    let counts = id_counts(&output);
    let missing: Vec<u64> =
        produced.iter().map(|p| p.id).filter(|id| !counts.contains_key(id)).take(10).collect();
    assert!(missing.is_empty(), "ids missing from the output (first 10): {missing:?}");
    let twice: Vec<(&u64, &usize)> = counts.iter().filter(|(_, n)| **n != 1).take(10).collect();
    assert!(twice.is_empty(), "ids not exactly once in the output (first 10): {twice:?}");
    assert_eq!(counts.len(), produced.len(), "ids in the output that were never produced");
}

/// Once the driver's `run` returned, its gRPC port is closed, even while a client still holds a
/// connection to it (an executor paused or cut off by the network): the server gets a short
/// grace for open requests, then its connections are cut, so a driver started next in the same
/// process can bind the port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_port_is_closed_when_run_returns_even_with_a_connection_open() {
    let job = JobFixture::new("pipeline-in-process-port", 1, "").await;
    let (stop, until) = shutdown("test: driver stop");
    let task = tokio::spawn(weir_driver::run(config(&job), until));
    let driver = Running { name: "driver".into(), stop, task };
    let grpc = leader_address(&job).await;
    let idle = tokio::net::TcpStream::connect(grpc).await.expect("connect to the driver");
    driver.stop().await;
    let closed = refuses(grpc).await;
    drop(idle);
    assert!(closed, "the driver's gRPC port {grpc} still accepts after run returned");
}
