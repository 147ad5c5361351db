//! The compose fault suite: one exactly-once job on `deploy/compose/compose.ha.yaml` (3 Kafka
//! brokers, 3 etcd members, two drivers, executors in containers) while records flow from the
//! host for the whole run, and the faults of a multi-node deployment applied one after another:
//! executors scaled, the leading driver killed, paused past its lease, cut off from etcd, an
//! executor cut off from every network, a Kafka broker (the busiest transaction coordinator of
//! the job's lanes) and an etcd member killed and started again. The read_committed oracle then
//! finds every record once, in order per input partition. Prints, per fault, the time until
//! the committed offsets moved again.
//!
//! Needs the container engine and builds the images (cached), so `cargo test` skips it; run it
//! with `cargo test -p weir-tests --test compose -- --ignored --nocapture` (deploy/local/test.sh
//! does, after the compose check). It sends traffic only between its containers and the host's
//! loopback, and removes its containers, networks and volumes, also when it fails.

mod stack;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use stack::{INPUT, JOB, OUTPUT, PARTITIONS, Stack};
use tokio::time::MissedTickBehavior;
use weir_common::OffsetsCheckpoint;
use weir_common::protocol::JobKeys;
use weir_tests::job::topic_records;
use weir_tests::kafka;
use weir_tests::kafka::Produced;
use weir_tests::metrics::sample;
use weir_tests::oracle::judge;
use weir_tests::scenario::read_kafka_on;

/// Records a second from the host, in slices every 100 ms.
const RATE: u64 = 400;
/// The drivers' lease (`driver.executor_timeout`, default 5 s) and some margin.
const LEASE: Duration = Duration::from_secs(5);
const RESUME_LIMIT: Duration = Duration::from_secs(90);
/// How long a killed Kafka broker and a killed etcd member stay down.
const BROKER_OUTAGE: Duration = Duration::from_secs(40);
const ETCD_OUTAGE: Duration = Duration::from_secs(30);

/// One row of the table: what was done, when output resumed, what else was seen.
struct Row {
    fault: String,
    resumed: Duration,
    note: String,
}

#[tokio::test]
#[ignore = "needs the container engine and its images: cargo test -p weir-tests --test compose -- --ignored"]
async fn faults_across_containers_lose_and_duplicate_nothing() {
    let started = Instant::now();
    let stack = Stack::up();
    assert_eq!(stack.leader(Duration::from_secs(120)).await, 0, "driver-1 leads first");
    let brokers = stack.brokers();
    let mut progress = Progress::connect(&stack).await;
    println!("stack up and leading after {:.0} s", started.elapsed().as_secs_f64());

    let stop = Arc::new(AtomicBool::new(false));
    let producer = tokio::spawn(produce_until(brokers.clone(), stop.clone()));
    let mut rows = Vec::new();
    wait_progress(&mut progress, Instant::now()).await;

    // 1. Executors scaled 3 -> 5 -> 1 -> 3 while records flow.
    for n in [5, 1, 3] {
        let at = Instant::now();
        stack.compose(&["up", "-d", "--no-deps", "--scale", &format!("executor={n}"), "executor"]);
        wait_for("the executors attached", Duration::from_secs(60), || async {
            sample(&stack.metrics(0).await, "weir_driver_executors") == Some(n as f64)
        })
        .await;
        let attached = at.elapsed();
        let mark = progress.committed_records(INPUT).await;
        let resumed = resumed_after(&mut progress, Instant::now(), mark).await;
        rows.push(row(
            format!("executors scaled to {n}"),
            resumed,
            format!(
                "{n} attached {:.1} s after the command began; the time is to the next commit",
                attached.as_secs_f64()
            ),
        ));
        settle(&mut progress).await;
    }

    // 2. The leading driver's container killed (its process, as a crash). The restart policy
    //    brings it back within a second or two, before its lease ends; at the lease's end the
    //    standby, which has waited longer, leads, and the restarted driver stands by.
    let leader = stack.leader(LEASE).await;
    let standby = 1 - leader;
    let at = Instant::now();
    let mark = progress.committed_records(INPUT).await;
    let generation = generation(&stack, leader).await;
    stack.crash(&stack.container(driver(leader)));
    let took_over = wait_for("the standby to lead", Duration::from_secs(30), || async {
        stack.leads(standby).await && self::generation(&stack, standby).await > generation
    })
    .await;
    let resumed = resumed_after(&mut progress, at, mark).await;
    let back = wait_for("the killed driver to stand by", Duration::from_secs(60), || async {
        stack.readyz(leader).await.starts_with("standby")
    })
    .await;
    assert!(took_over < LEASE * 3, "the standby led {took_over:?} after the kill");
    let (new_leader, other) = (standby, leader);
    rows.push(row(
        format!("{} killed (restarted by its policy)", driver(leader)),
        resumed,
        format!(
            "{} led generation {} after {:.1} s; {} standing by after {:.1} s",
            driver(new_leader),
            generation + 1,
            took_over.as_secs_f64(),
            driver(other),
            back.as_secs_f64()
        ),
    ));
    settle(&mut progress).await;

    // 3. The leading driver paused past its lease, then unpaused: the standby leads, and the
    //    paused one, fenced, stands by (the oracle shows it wrote nothing twice).
    let leader = stack.leader(LEASE).await;
    let standby = 1 - leader;
    let paused = stack.container(driver(leader));
    let at = Instant::now();
    let mark = progress.committed_records(INPUT).await;
    stack.docker(&["pause", &paused]);
    let took_over =
        wait_for("the standby to lead", Duration::from_secs(30), || stack.leads(standby)).await;
    let resumed = resumed_after(&mut progress, at, mark).await;
    tokio::time::sleep((LEASE * 3).saturating_sub(at.elapsed())).await;
    stack.docker(&["unpause", &paused]);
    let stood_by = wait_for("the unpaused driver to stand by", Duration::from_secs(30), || async {
        stack.readyz(leader).await.starts_with("standby")
    })
    .await;
    rows.push(row(
        format!("{} paused {} s", driver(leader), (LEASE * 3).as_secs()),
        resumed,
        format!(
            "{} led after {:.1} s; the paused one stood by {:.1} s after unpause",
            driver(standby),
            took_over.as_secs_f64(),
            stood_by.as_secs_f64()
        ),
    ));
    settle(&mut progress).await;

    // 4. One executor cut off from every network for 20 s: its lanes move; back, it attaches
    //    again and its stale transactions are fenced by the lanes' new owners.
    let cut = stack.containers("executor").into_iter().next().expect("an executor");
    let networks = [stack.network("weir"), stack.network("etcd")];
    let at = Instant::now();
    let mark = progress.committed_records(INPUT).await;
    for network in &networks {
        stack.docker(&["network", "disconnect", network, &cut]);
    }
    wait_for("the cut-off executor declared lost", Duration::from_secs(30), || async {
        sample(&stack.metrics(stack.leader(LEASE).await).await, "weir_driver_executors")
            == Some(2.0)
    })
    .await;
    let lost = at.elapsed();
    let resumed = resumed_after(&mut progress, at, mark).await;
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(at.elapsed())).await;
    for network in &networks {
        stack.docker(&["network", "connect", network, &cut]);
    }
    let rejoined = wait_for("the executor attached again", Duration::from_secs(60), || async {
        sample(&stack.metrics(stack.leader(LEASE).await).await, "weir_driver_executors")
            == Some(3.0)
    })
    .await;
    rows.push(row(
        "an executor disconnected 20 s".into(),
        resumed,
        format!(
            "declared lost after {:.1} s; attached again {:.1} s after reconnecting",
            lost.as_secs_f64(),
            rejoined.as_secs_f64()
        ),
    ));
    settle(&mut progress).await;

    // 5. The leading driver cut off from etcd only for 20 s: it steps down, the standby leads.
    let leader = stack.leader(LEASE).await;
    let standby = 1 - leader;
    let isolated = stack.container(driver(leader));
    let at = Instant::now();
    let mark = progress.committed_records(INPUT).await;
    stack.docker(&["network", "disconnect", &stack.network("etcd"), &isolated]);
    let took_over =
        wait_for("the standby to lead", Duration::from_secs(60), || stack.leads(standby)).await;
    let resumed = resumed_after(&mut progress, at, mark).await;
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(at.elapsed())).await;
    stack.docker(&["network", "connect", &stack.network("etcd"), &isolated]);
    let stood_by = wait_for("the cut-off driver to stand by", Duration::from_secs(60), || async {
        stack.readyz(leader).await.starts_with("standby")
    })
    .await;
    rows.push(row(
        format!("{} cut off from etcd 20 s", driver(leader)),
        resumed,
        format!(
            "{} led after {:.1} s; the cut-off one stood by {:.1} s after reconnecting",
            driver(standby),
            took_over.as_secs_f64(),
            stood_by.as_secs_f64()
        ),
    ));
    settle(&mut progress).await;

    // 6. The Kafka broker coordinating most of the lanes' transactions killed for 20 s.
    let (broker, lanes) = busiest_coordinator(&brokers);
    let killed = stack.container(&format!("kafka-{broker}"));
    let (resumed, note) = outage(&stack, &mut progress, &killed, BROKER_OUTAGE).await;
    rows.push(row(
        format!("kafka-{broker} killed {} s", BROKER_OUTAGE.as_secs()),
        resumed,
        format!("transaction coordinator of {lanes} of {PARTITIONS} lanes; {note}"),
    ));
    settle(&mut progress).await;

    // 7. One etcd member killed for 15 s (the Raft leader unless that is etcd-1, which the host
    //    reads through).
    let member = etcd_member_to_kill(&stack).await;
    let killed = stack.container(&member);
    let (resumed, note) = outage(&stack, &mut progress, &killed, ETCD_OUTAGE).await;
    rows.push(row(format!("{member} killed {} s", ETCD_OUTAGE.as_secs()), resumed, note));

    // The verdict: every record produced over the run, once, in order per input partition.
    stop.store(true, Ordering::SeqCst);
    let produced = producer.await.expect("the producer task");
    let total = produced.len() as i64;
    let drained = Instant::now();
    while progress.committed_records(INPUT).await < total {
        assert!(drained.elapsed() < Duration::from_secs(180), "the job did not drain in 180 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        progress.committed_records(INPUT).await,
        total,
        "more offsets committed than written"
    );
    let verdict = judge(&produced, &read_kafka_on(&brokers, OUTPUT).await);
    println!("\n| fault | output resumed after | seen |");
    println!("|---|---:|---|");
    for row in &rows {
        println!("| {} | {:.1} s | {} |", row.fault, row.resumed.as_secs_f64(), row.note);
    }
    println!(
        "\n{} records over {:.0} s (logs of a failed run go to {})",
        produced.len(),
        started.elapsed().as_secs_f64(),
        stack.dir().display()
    );
    println!("{verdict:?}");
    assert!(verdict.is_exactly_once(), "{verdict:?}");
}

/// The job's committed offsets in etcd, read through etcd-1's published port. A read that
/// fails (etcd's leader changing while a member is down) is retried: the suite measures the
/// job, not its own client.
struct Progress {
    client: etcd_client::Client,
    keys: JobKeys,
}

impl Progress {
    async fn connect(stack: &Stack) -> Progress {
        let client = stack.etcd_client().await;
        Progress { client, keys: JobKeys::new("/weir", JOB) }
    }

    /// Committed next offsets summed over `topic`'s partitions; 0 before the first commit.
    async fn committed_records(&mut self, topic: &str) -> i64 {
        let started = Instant::now();
        loop {
            match self.client.get(self.keys.offsets(), None).await {
                Ok(resp) => {
                    return resp.kvs().first().map_or(0, |kv| {
                        let checkpoint = OffsetsCheckpoint::decode(kv.value()).expect("offsets");
                        topic_records(&checkpoint, topic)
                    });
                }
                Err(e) => assert!(
                    started.elapsed() < RESUME_LIMIT,
                    "etcd-1 has not answered for {RESUME_LIMIT:?}: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A row of the table, printed at once too (a failure later keeps what was measured).
fn row(fault: String, resumed: Duration, note: String) -> Row {
    println!("{fault}: output resumed after {:.1} s; {note}", resumed.as_secs_f64());
    Row { fault, resumed, note }
}

/// The generation a driver reports in `/metrics` (0 on a standby).
async fn generation(stack: &Stack, driver: usize) -> u64 {
    sample(&stack.metrics(driver).await, "weir_driver_generation").unwrap_or(0.0) as u64
}

fn driver(index: usize) -> &'static str {
    ["driver-1", "driver-2"][index]
}

/// Produces [`RATE`] records a second (ids from 0 up, record `id` to partition
/// `id % PARTITIONS`) until `stop`; returns where each landed.
async fn produce_until(brokers: String, stop: Arc<AtomicBool>) -> Vec<Produced> {
    let producer = kafka::test_producer_on(&brokers);
    let slice = RATE / 10;
    let mut produced = Vec::new();
    let mut next = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        produced
            .extend(kafka::produce_with(&producer, INPUT, PARTITIONS, next..next + slice).await);
        next += slice;
    }
    produced
}

/// How long since `at` until the committed input offsets passed `mark`.
async fn resumed_after(progress: &mut Progress, at: Instant, mark: i64) -> Duration {
    loop {
        if progress.committed_records(INPUT).await > mark {
            return at.elapsed();
        }
        assert!(at.elapsed() < RESUME_LIMIT, "no commit {RESUME_LIMIT:?} after the fault");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills `container` (`docker kill`: no restart) for `down`, then starts it again. Returns the
/// time from the kill to the first commit after it, and whether that came during the outage.
async fn outage(
    stack: &Stack,
    progress: &mut Progress,
    container: &str,
    down: Duration,
) -> (Duration, String) {
    let at = Instant::now();
    let mark = progress.committed_records(INPUT).await;
    stack.docker(&["kill", container]);
    let mut during = None;
    while at.elapsed() < down {
        if during.is_none() && progress.committed_records(INPUT).await > mark {
            during = Some(at.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.docker(&["start", container]);
    match during {
        Some(resumed) => (resumed, "output resumed while it was down".into()),
        None => {
            let back = Instant::now();
            while progress.committed_records(INPUT).await <= mark {
                if back.elapsed() > RESUME_LIMIT {
                    panic!(
                        "no commit during the outage nor {RESUME_LIMIT:?} after {container} started \
                         again; the drivers' /api/status:\n{}\n{}",
                        stack.api_status(0).await,
                        stack.api_status(1).await
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (
                at.elapsed(),
                format!(
                    "no commit while it was down; the first {:.1} s after its start",
                    back.elapsed().as_secs_f64()
                ),
            )
        }
    }
}

/// Waits for the first commit from now on.
async fn wait_progress(progress: &mut Progress, at: Instant) {
    let mark = progress.committed_records(INPUT).await;
    resumed_after(progress, at, mark).await;
}

/// Lets the job run a few batches between faults.
async fn settle(progress: &mut Progress) {
    for _ in 0..3 {
        wait_progress(progress, Instant::now()).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// Polls `check` (that is, `what`) every 200 ms until it holds; returns how long that took. Panics past `limit`.
async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "gave up waiting for {what} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The broker (node id) leading the `__transaction_state` partitions of most of the job's lane
/// transactional ids (`weir.{job}.lane.{lane}`), and how many lanes it coordinates.
fn busiest_coordinator(brokers: &str) -> (i32, usize) {
    let consumer: BaseConsumer =
        kafka::client_config_on(brokers).create().expect("metadata client");
    let metadata = consumer
        .fetch_metadata(Some("__transaction_state"), Duration::from_secs(10))
        .expect("metadata of __transaction_state");
    let topic = &metadata.topics()[0];
    let partitions = topic.partitions().len() as i32;
    assert!(partitions > 0, "no __transaction_state partitions: {:?}", topic.error());
    let mut lanes_of = std::collections::BTreeMap::<i32, usize>::new();
    for lane in 0..PARTITIONS {
        let partition = java_abs(java_hash(&format!("weir.{JOB}.lane.{lane}"))) % partitions;
        let leader = topic
            .partitions()
            .iter()
            .find(|p| p.id() == partition)
            .map(|p| p.leader())
            .expect("the coordinator's partition");
        *lanes_of.entry(leader).or_default() += 1;
    }
    lanes_of.into_iter().max_by_key(|&(_, lanes)| lanes).expect("a coordinator")
}

/// Java's `String.hashCode`, which Kafka hashes transactional ids with.
fn java_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// Kafka's `Utils.abs`.
fn java_abs(n: i32) -> i32 {
    if n == i32::MIN { 0 } else { n.abs() }
}

/// The etcd member to kill: the Raft leader, unless it is `etcd-1` (the host's endpoint), then
/// `etcd-2`.
async fn etcd_member_to_kill(stack: &Stack) -> String {
    let mut client = stack.etcd_client().await;
    let leader = client.status().await.expect("etcd status").leader();
    let members = client.member_list().await.expect("etcd members");
    let name = members
        .members()
        .iter()
        .find(|m| m.id() == leader)
        .map(|m| m.name().to_owned())
        .unwrap_or_default();
    if name.starts_with("etcd-") && name != "etcd-1" { name } else { "etcd-2".into() }
}
