//! The job loop under the failures users meet, against the in-memory I/O of `memory.rs` and
//! tokio's paused clock: no real service, no real sleep. Each test plays the executors itself,
//! reading the commands the loop sends and answering with events.

mod memory;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_common::batch::{BatchPlan, LaneTask};
use weir_common::config::JobConfig;
use weir_common::control::JobState;
use weir_common::lanes::LaneMap;
use weir_common::protocol::{TaskId, TaskMetrics};
use weir_common::{OffsetRange, OffsetsCheckpoint, TopicPartition};

use self::memory::{MemoryGroup, MemorySource, MemoryStore};
use super::{Command, DRAIN_TIMEOUT, Event, ExecutorEvent, JobIo, JobLoop};
use crate::error::DriverError;
use crate::io::{CheckpointStore, Stored};
use crate::status::Status;

const CONFIG: &str = r#"
[job]
name = "j"
batch_interval = "100ms"
[source]
brokers = "memory:9092"
topics = ["t"]
starting_offsets = "earliest"
[sink]
type = "stdout"
[driver]
heartbeat_interval = "100ms"
executor_timeout = "1s"
"#;

fn tp(partition: i32) -> TopicPartition {
    TopicPartition::new("t", partition)
}

fn range(partition: i32, from: i64, until: i64) -> OffsetRange {
    OffsetRange::new(tp(partition), from, until).unwrap()
}

type Verdict = tokio::sync::oneshot::Receiver<Result<(), crate::error::AttachRefused>>;

/// A running job loop and the handles a test drives it with.
struct Job {
    store: Arc<MemoryStore>,
    source: Arc<MemorySource>,
    group: Arc<MemoryGroup>,
    events: mpsc::Sender<Event>,
    status: watch::Receiver<Status>,
    stop: CancellationToken,
    lost: CancellationToken,
    handle: JoinHandle<Result<(), DriverError>>,
    next_conn: u64,
    /// The loop's answers to the attaches (kept open, as the gRPC service keeps them).
    verdicts: Vec<Verdict>,
}

impl Job {
    /// Starts a loop over `partitions` (each `(partition, log end)`, logs starting at 0), with
    /// what an earlier driver left in etcd.
    async fn start(partitions: &[(i32, i64)], stored: Stored) -> Job {
        Job::start_refusing(partitions, stored, 0).await
    }

    /// The same, with etcd refusing the first `refused` writes as if unreachable.
    async fn start_refusing(partitions: &[(i32, i64)], stored: Stored, refused: u32) -> Job {
        let store = Arc::new(MemoryStore::new(stored));
        store.fail_next_writes(refused);
        Job::start_with(partitions, store).await
    }

    /// The same, on a job an operator has put in `state`.
    async fn start_stopped(partitions: &[(i32, i64)], stored: Stored, state: JobState) -> Job {
        let store = Arc::new(MemoryStore::new(stored));
        store.set_state(state);
        Job::start_with(partitions, store).await
    }

    async fn start_with(partitions: &[(i32, i64)], store: Arc<MemoryStore>) -> Job {
        Job::start_configured(CONFIG, partitions, store).await
    }

    async fn start_configured(
        config: &str,
        partitions: &[(i32, i64)],
        store: Arc<MemoryStore>,
    ) -> Job {
        let config = Arc::new(JobConfig::from_toml_str(config).unwrap());
        let source = Arc::new(MemorySource::default());
        for &(p, end) in partitions {
            source.set(&tp(p), 0, end);
        }
        let group = Arc::new(MemoryGroup::default());
        let io = JobIo { store: store.clone(), source: source.clone(), group: group.clone() };
        let (status_tx, status) = watch::channel(Status::default());
        let stored = store.load().await.unwrap();
        let metrics = Arc::new(crate::metrics::DriverMetrics::new("j", true));
        let job = JobLoop::new(config, io, stored, status_tx, metrics);
        let (events, events_rx) = mpsc::channel(crate::job::EVENT_QUEUE);
        let (stop, lost) = (CancellationToken::new(), CancellationToken::new());
        let handle = tokio::spawn(job.run(events_rx, stop.clone(), lost.clone()));
        Job {
            store,
            source,
            group,
            events,
            status,
            stop,
            lost,
            handle,
            next_conn: 1,
            verdicts: Vec::new(),
        }
    }

    /// Attaches an executor; returns its connection id and the commands it receives.
    fn attach(&mut self, executor: &str, slots: u32) -> (u64, mpsc::UnboundedReceiver<Command>) {
        let (conn, commands, verdict) = self.attach_process(executor, slots, 0);
        self.verdicts.push(verdict);
        (conn, commands)
    }

    /// Attaches an executor process (`instance`, as its hello says); returns also the loop's
    /// answer.
    fn attach_process(
        &mut self,
        executor: &str,
        slots: u32,
        instance: u64,
    ) -> (u64, mpsc::UnboundedReceiver<Command>, Verdict) {
        let (outbox, commands) = mpsc::unbounded_channel();
        let conn = self.next_conn;
        self.next_conn += 1;
        let (verdict, answer) = tokio::sync::oneshot::channel();
        let executor = executor.to_owned();
        let attached = Event::Attached {
            conn,
            executor,
            slots,
            address: format!("host-{instance}"),
            instance,
            outbox,
            verdict,
        };
        self.events.try_send(attached).unwrap();
        (conn, commands, answer)
    }

    fn report(&self, conn: u64, event: ExecutorEvent) {
        self.events.try_send(Event::Message { conn, event }).unwrap();
    }

    fn succeed(&self, conn: u64, task: TaskId) {
        self.report(conn, ExecutorEvent::Succeeded { task, metrics: TaskMetrics::default() });
    }

    /// Waits (in virtual time) until the loop has committed `batch`.
    async fn committed(&mut self, batch: u64) {
        let committed = self.status.wait_for(|s| s.last_committed_batch >= Some(batch));
        within(committed, "the batch's commit").await.unwrap();
    }
}

/// Waits for `what` at most ten virtual minutes, so a test that waits for something that never
/// comes fails (the paused clock would otherwise run the loop's timers for ever).
async fn within<T>(future: impl std::future::Future<Output = T>, what: &str) -> T {
    match tokio::time::timeout(Duration::from_secs(600), future).await {
        Ok(value) => value,
        Err(_) => panic!("waited ten (virtual) minutes for {what}"),
    }
}

/// The next assignment an executor receives: its task and ranges.
async fn next_assign(
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> (TaskId, Vec<OffsetRange>) {
    match within(commands.recv(), "an assignment").await.expect("the connection is open") {
        Command::Assign { task, ranges } => (task, ranges),
        other => panic!("expected an assignment, got {other:?}"),
    }
}

/// Heartbeats for an executor every 100 ms until aborted, so it is not expired as silent.
fn keep_beating(events: mpsc::Sender<Event>, conn: u64) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let beat = Event::Message { conn, event: ExecutorEvent::Heartbeat };
            if events.send(beat).await.is_err() {
                return;
            }
        }
    })
}

/// etcd as an earlier driver left it: both partitions at 0, one lane each, batch 1 recorded.
fn recorded_batch_one() -> Stored {
    let mut lanes = LaneMap::default();
    lanes.extend([tp(0), tp(1)].iter(), u32::MAX);
    let offsets = OffsetsCheckpoint {
        next_offsets: [(tp(0), 0), (tp(1), 0)].into_iter().collect(),
        last_committed_batch: None,
    };
    let plan = BatchPlan {
        id: 1,
        tasks: vec![
            LaneTask { lane: 0, ranges: vec![range(0, 0, 7)] },
            LaneTask { lane: 1, ranges: vec![range(1, 0, 3)] },
        ],
        planned_at_ms: 0,
        data_lost: Vec::new(),
    };
    Stored { offsets: Some(offsets), lanes, pending: vec![plan] }
}

#[tokio::test(start_paused = true)]
async fn lanes_over_the_limit_are_regrouped_after_the_recorded_batch_and_fenced_first() {
    let config = CONFIG.replace("topics = [\"t\"]", "topics = [\"t\"]\nlanes = 1");
    let store = Arc::new(MemoryStore::new(recorded_batch_one()));
    let mut job = Job::start_configured(&config, &[(0, 20), (1, 20)], store).await;
    let (conn, mut commands) = job.attach("e1", 4);
    let first = [next_assign(&mut commands).await, next_assign(&mut commands).await];
    assert!(
        first.iter().all(|(task, _)| task.batch == 1 && task.lane <= 1),
        "replayed as recorded"
    );
    assert!(job.group.fenced.lock().unwrap().is_empty(), "nothing moves while batch 1 runs");
    for (task, _) in &first {
        job.succeed(conn, *task);
    }
    job.committed(1).await;
    let (task, ranges) = next_assign(&mut commands).await;
    assert_eq!(*job.group.fenced.lock().unwrap(), [0, 1], "the old lanes are fenced");
    assert_eq!((task.batch, task.lane), (2, 2), "one new lane, numbered past the old ones");
    assert_eq!(ranges, [range(0, 7, 20), range(1, 3, 20)]);
    let lanes = job.store.load().await.unwrap().lanes;
    assert_eq!((lanes.lane_of(&tp(0)), lanes.lane_of(&tp(1))), (Some(2), Some(2)), "in etcd");
}

#[tokio::test(start_paused = true)]
async fn a_new_driver_replays_the_recorded_batch_exactly_before_planning_more() {
    let mut job = Job::start(&[(0, 20), (1, 20)], recorded_batch_one()).await;
    let (conn, mut commands) = job.attach("e1", 4);
    let mut first = vec![next_assign(&mut commands).await, next_assign(&mut commands).await];
    first.sort_by_key(|(task, _)| task.lane);
    assert!(first.iter().all(|(task, _)| task.batch == 1), "the recorded batch runs first");
    assert_eq!(first[0].1, [range(0, 0, 7)], "as recorded, not re-planned to the log end");
    assert_eq!(first[1].1, [range(1, 0, 3)]);
    for (task, _) in &first {
        job.succeed(conn, *task);
    }
    job.committed(1).await;
    let (task, ranges) = next_assign(&mut commands).await;
    assert_eq!(task.batch, 2);
    let expected = if task.lane == 0 { range(0, 7, 20) } else { range(1, 3, 20) };
    assert_eq!(ranges, [expected], "the next batch starts where the replayed one ended");
    assert_eq!(job.store.commits(), [1]);
}

#[tokio::test(start_paused = true)]
async fn batches_commit_in_order_when_a_later_batch_finishes_first() {
    let mut job = Job::start(&[(0, 10), (1, 10)], Stored::default()).await;
    let (conn, mut commands) = job.attach("e1", 4);
    let beating = keep_beating(job.events.clone(), conn);
    let mut batch_one = [next_assign(&mut commands).await, next_assign(&mut commands).await];
    batch_one.sort_by_key(|(task, _)| task.lane);
    // New records on partition 0 only: batch 2 has one task, on lane 0.
    job.source.set(&tp(0), 0, 25);
    job.succeed(conn, batch_one[0].0);
    let (task, ranges) = next_assign(&mut commands).await;
    assert_eq!((task.batch, ranges), (2, vec![range(0, 10, 25)]));
    job.succeed(conn, task);
    // Batch 2 is finished, batch 1 is not: nothing may commit, however long it waits.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(job.store.commits(), Vec::<u64>::new());
    job.succeed(conn, batch_one[1].0);
    job.committed(2).await;
    assert_eq!(job.store.commits(), [1, 2], "in batch order");
    assert_eq!(job.store.committed_offsets()[&tp(0)], 25);
    assert_eq!(job.store.committed_offsets()[&tp(1)], 10);
    beating.abort();
}

#[tokio::test(start_paused = true)]
async fn a_silent_executors_tasks_move_to_another_and_the_batch_commits() {
    let mut job = Job::start(&[(0, 10), (1, 10)], Stored::default()).await;
    let (_silent, mut lost_commands) = job.attach("e1", 4);
    let lost_tasks = [next_assign(&mut lost_commands).await, next_assign(&mut lost_commands).await];
    let (conn, mut commands) = job.attach("e2", 4);
    let beating = keep_beating(job.events.clone(), conn);
    let started = Instant::now();
    // e1 never reports again; after executor_timeout (1 s) its tasks run on e2.
    let mut moved = vec![next_assign(&mut commands).await, next_assign(&mut commands).await];
    assert!(started.elapsed() >= Duration::from_secs(1), "not before executor_timeout");
    moved.sort_by_key(|(task, _)| task.lane);
    for ((old, old_ranges), (new, new_ranges)) in lost_tasks.iter().zip(&moved) {
        assert_eq!((new.batch, new.lane), (old.batch, old.lane));
        assert!(new.attempt > old.attempt, "a new attempt, so a late report of e1 is ignored");
        assert_eq!(new_ranges, old_ranges, "the same ranges");
    }
    for (task, _) in &moved {
        job.succeed(conn, *task);
    }
    job.committed(1).await;
    assert_eq!(job.store.committed_offsets()[&tp(0)], 10);
    beating.abort();
}

#[tokio::test(start_paused = true)]
async fn the_leader_lease_lost_mid_batch_commits_nothing_more() {
    let mut job = Job::start(&[(0, 10)], Stored::default()).await;
    let (conn, mut commands) = job.attach("e1", 1);
    let (task, _) = next_assign(&mut commands).await;
    job.lost.cancel();
    job.store.lose_leadership();
    job.succeed(conn, task);
    let result = within(job.handle, "the loop to end").await.unwrap();
    assert!(matches!(result, Err(DriverError::LostLeadership { .. })), "{result:?}");
    assert_eq!(job.store.commits(), Vec::<u64>::new(), "nothing committed after the loss");
    assert_eq!(job.store.recorded(), [1], "the batch stays recorded for the next leader");
}

#[tokio::test(start_paused = true)]
async fn a_stop_waits_for_the_batch_in_flight_and_commits_it() {
    let mut job = Job::start(&[(0, 10)], Stored::default()).await;
    let (conn, mut commands) = job.attach("e1", 1);
    let (task, _) = next_assign(&mut commands).await;
    job.stop.cancel();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!job.handle.is_finished(), "a stopping driver waits for the batch in flight");
    job.succeed(conn, task);
    within(job.handle, "the loop to end").await.unwrap().unwrap();
    assert_eq!(job.store.commits(), [1]);
    assert_eq!(job.store.recorded(), [1], "no batch planned after the stop");
}

#[tokio::test(start_paused = true)]
async fn a_stop_gives_up_at_the_drain_deadline_and_leaves_the_batch_for_the_next_driver() {
    let mut job = Job::start(&[(0, 10)], Stored::default()).await;
    let (conn, mut commands) = job.attach("e1", 1);
    let beating = keep_beating(job.events.clone(), conn);
    let _ = next_assign(&mut commands).await;
    let stopped_at = Instant::now();
    job.stop.cancel();
    within(job.handle, "the loop to end").await.unwrap().unwrap();
    let waited = stopped_at.elapsed();
    assert!(
        waited >= DRAIN_TIMEOUT && waited < DRAIN_TIMEOUT + Duration::from_secs(1),
        "{waited:?}"
    );
    assert_eq!(job.store.commits(), Vec::<u64>::new());
    assert_eq!(job.store.recorded(), [1], "recorded, so the next driver replays it");
    beating.abort();
}

#[tokio::test(start_paused = true)]
async fn an_etcd_write_that_fails_is_retried_and_the_batch_recorded_once() {
    // etcd refuses the first writes: the new partition's start, then the batch record.
    let mut job = Job::start_refusing(&[(0, 10)], Stored::default(), 3).await;
    let (conn, mut commands) = job.attach("e1", 1);
    let (task, ranges) = next_assign(&mut commands).await;
    assert_eq!(job.store.refused_writes(), 3, "etcd refused three writes first");
    assert_eq!((task.batch, ranges), (1, vec![range(0, 0, 10)]), "dispatched only once recorded");
    assert_eq!(job.store.recorded(), [1]);
    job.store.fail_next_writes(2);
    job.succeed(conn, task);
    job.committed(1).await;
    assert_eq!(job.store.commits(), [1], "the commit went through after two refusals");
    assert_eq!(job.store.committed_offsets()[&tp(0)], 10);
}

/// Waits (in virtual time) until the store holds `state`.
async fn job_state_becomes(job: &Job, state: JobState) {
    let waited = async {
        while job.store.job_state() != state {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    within(waited, "the job state").await;
}

#[tokio::test(start_paused = true)]
async fn an_operators_stop_commits_the_batch_in_flight_plans_nothing_and_resumes_from_reset_offsets()
 {
    let mut job = Job::start(&[(0, 10)], Stored::default()).await;
    let (conn, mut commands) = job.attach("e1", 1);
    let beating = keep_beating(job.events.clone(), conn);
    let (task, _) = next_assign(&mut commands).await;
    job.store.set_state(JobState::StopRequested);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(job.store.job_state(), JobState::StopRequested, "not confirmed while in flight");
    job.source.set(&tp(0), 0, 50);
    job.succeed(conn, task);
    job.committed(1).await;
    job_state_becomes(&job, JobState::Stopped).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(job.store.recorded(), [1], "no batch planned while stopped");
    assert!(!job.handle.is_finished(), "a stopped driver keeps leading");
    assert_eq!(job.status.borrow().state, JobState::Stopped);
    // An operator moves the offset back while the job is stopped, then resumes it.
    job.store.reset_offset(&tp(0), 4);
    job.store.set_state(JobState::Running);
    let closed = within(commands.recv(), "the executor's stream to close").await;
    assert_eq!(closed, None, "executors attach again, forgetting progress read before the reset");
    beating.abort();
    let (conn, mut commands) = job.attach("e1", 1);
    let beating = keep_beating(job.events.clone(), conn);
    let (task, ranges) = next_assign(&mut commands).await;
    assert_eq!((task.batch, ranges), (2, vec![range(0, 4, 50)]), "planned from the reset offset");
    beating.abort();
}

#[tokio::test(start_paused = true)]
async fn a_driver_starting_on_a_stopped_job_plans_nothing_until_resumed() {
    let mut job = Job::start_stopped(&[(0, 20)], Stored::default(), JobState::Stopped).await;
    let (conn, mut commands) = job.attach("e1", 4);
    let beating = keep_beating(job.events.clone(), conn);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(commands.try_recv().is_err(), "nothing runs while stopped");
    assert_eq!(job.store.recorded(), Vec::<u64>::new(), "and nothing is written");
    job.store.set_state(JobState::Running);
    let (task, ranges) = next_assign(&mut commands).await;
    assert_eq!((task.batch, ranges), (1, vec![range(0, 0, 20)]), "runs once resumed");
    beating.abort();
}

#[tokio::test(start_paused = true)]
async fn a_driver_starting_on_a_stopped_job_with_recorded_batches_commits_them_then_stays_stopped()
{
    let stored = recorded_batch_one();
    let mut job = Job::start_stopped(&[(0, 20), (1, 20)], stored, JobState::Stopped).await;
    let (conn, mut commands) = job.attach("e1", 4);
    let beating = keep_beating(job.events.clone(), conn);
    let (first, _) = next_assign(&mut commands).await;
    assert_eq!(job.store.job_state(), JobState::StopRequested, "the stop is held while it runs");
    let (second, _) = next_assign(&mut commands).await;
    assert_eq!((first.batch, second.batch), (1, 1), "only the recorded batch");
    job.succeed(conn, first);
    job.succeed(conn, second);
    job.committed(1).await;
    job_state_becomes(&job, JobState::Stopped).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(job.store.recorded(), [1], "nothing new planned");
    beating.abort();
}

#[tokio::test(start_paused = true)]
async fn a_drained_executor_is_told_to_leave_and_its_lanes_move() {
    let mut job = Job::start(&[(0, 10)], Stored::default()).await;
    let (e1, mut e1_commands) = job.attach("e1", 1);
    let e1_beating = keep_beating(job.events.clone(), e1);
    let (task, _) = next_assign(&mut e1_commands).await;
    let (e2, mut e2_commands) = job.attach("e2", 1);
    let e2_beating = keep_beating(job.events.clone(), e2);
    job.store.request_drain("e1");
    let told = within(e1_commands.recv(), "the drain command").await;
    assert_eq!(told, Some(Command::Drain));
    assert!(job.store.drain_requests().is_empty(), "the request is deleted once acted on");
    job.report(e1, ExecutorEvent::Leaving);
    job.succeed(e1, task);
    job.committed(1).await;
    job.source.set(&tp(0), 0, 30);
    let (task, _) = next_assign(&mut e2_commands).await;
    assert_eq!(task.batch, 2, "the next batch runs on the other executor");
    assert_eq!(within(e1_commands.recv(), "e1's stream to close").await, None);
    e1_beating.abort();
    e2_beating.abort();
}

#[tokio::test(start_paused = true)]
async fn the_status_says_what_the_job_waits_for_and_keeps_the_history_of_a_retried_task() {
    let mut job = Job::start(&[(0, 10), (1, 10)], Stored::default()).await;
    let waiting = job.status.wait_for(|s| s.waits.contains_key("no_executor"));
    let since = within(waiting, "no executor to be waited for").await.unwrap().waiting_since_ms;
    assert!(since.is_some());
    let (conn, mut commands) = job.attach("e1", 1);
    let beating = keep_beating(job.events.clone(), conn);
    let (first, _) = next_assign(&mut commands).await;
    // One slot, two tasks: the second waits for the slot.
    let slots = job.status.wait_for(|s| s.waits.contains_key("slots"));
    within(slots, "a free slot to be waited for").await.unwrap();
    assert!(!job.status.borrow().waits.contains_key("no_executor"));
    let failed = ExecutorEvent::Failed {
        task: first,
        kind: weir_common::failure::FailureKind::Transient,
        message: "broker away".into(),
        wrote_nothing: false,
    };
    job.report(conn, failed);
    // The other lane's task, and the failed one's second attempt.
    for _ in 0..2 {
        let (task, _) = next_assign(&mut commands).await;
        job.succeed(conn, task);
    }
    job.committed(1).await;
    let status = job.status.borrow().clone();
    let batch = status.history.batch(1).unwrap();
    assert_eq!((batch.tasks, batch.attempts), (2, 3), "the failed task ran twice");
    assert_eq!(status.history.failures.len(), 1);
    assert_eq!(status.history.failures[0].kind, "transient");
    assert!(status.waiting_for.is_none(), "nothing left to wait for: {:?}", status.waits);
    beating.abort();
}

#[tokio::test(start_paused = true)]
async fn a_leadership_lost_while_etcd_does_not_answer_ends_the_term_at_once() {
    let mut job = Job::start(&[(0, 10)], Stored::default()).await;
    let (conn, mut commands) = job.attach("e1", 1);
    let (task, _) = next_assign(&mut commands).await;
    // etcd stops answering: the commit of batch 1 retries for ever...
    job.store.fail_next_writes(u32::MAX);
    job.succeed(conn, task);
    let waiting = job.status.wait_for(|s| s.waits.contains_key("etcd"));
    within(waiting, "etcd to be waited for").await.unwrap();
    // ...until the lease runs out: the loop stops acting as the leader at once.
    let lost_at = Instant::now();
    job.lost.cancel();
    let result = within(job.handle, "the loop to end").await.unwrap();
    assert!(matches!(result, Err(DriverError::LostLeadership { .. })), "{result:?}");
    assert_eq!(lost_at.elapsed(), Duration::ZERO, "not after the next retry");
    assert_eq!(job.store.commits(), Vec::<u64>::new());
}

#[tokio::test(start_paused = true)]
async fn a_second_process_with_a_live_executors_id_is_refused_and_a_restart_is_not() {
    let mut job = Job::start(&[(0, 10)], Stored::default()).await;
    let (conn, _commands, verdict) = job.attach_process("e1", 1, 111);
    assert_eq!(within(verdict, "the first verdict").await.unwrap(), Ok(()));
    let beating = keep_beating(job.events.clone(), conn);
    let (_, _, verdict) = job.attach_process("e1", 1, 222);
    let refused = within(verdict, "the second verdict").await.unwrap().unwrap_err();
    assert!(
        refused.to_string().contains("already attached from another running process (at host-111)"),
        "{refused}"
    );
    // The same process attaching again (a broken stream) is welcome.
    let (_, _, verdict) = job.attach_process("e1", 1, 111);
    assert_eq!(within(verdict, "the reattach").await.unwrap(), Ok(()));
    // Once the first process falls silent past executor_timeout (it died), its id is free.
    beating.abort();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, _, verdict) = job.attach_process("e1", 1, 222);
    assert_eq!(within(verdict, "the restart's verdict").await.unwrap(), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_task_that_reads_nothing_for_the_stall_timeout_is_cancelled_and_runs_elsewhere() {
    let mut job = Job::start(&[(0, 10)], Stored::default()).await;
    let (e1, mut on_e1) = job.attach("e1", 1);
    let beating_1 = keep_beating(job.events.clone(), e1);
    let (task, _) = next_assign(&mut on_e1).await;
    let (e2, mut on_e2) = job.attach("e2", 1);
    let beating_2 = keep_beating(job.events.clone(), e2);
    // e1 keeps beating, read 5 records, then nothing more: its transform hangs.
    job.report(e1, ExecutorEvent::Progress { task, records_in: 5 });
    let hung_at = Instant::now();
    let cancelled = within(on_e1.recv(), "the cancel").await;
    assert_eq!(cancelled, Some(Command::Cancel { task }));
    assert!(hung_at.elapsed() >= Duration::from_secs(300), "not before task_stall_timeout");
    let (retry, ranges) = next_assign(&mut on_e2).await;
    assert_eq!((retry.batch, retry.lane, retry.attempt), (task.batch, task.lane, 1));
    assert_eq!(ranges, [range(0, 0, 10)], "the same range, on the other executor");
    job.succeed(e2, retry);
    job.committed(1).await;
    let failures = job.status.borrow().history.failures.clone();
    assert_eq!(failures.len(), 1);
    assert_eq!((failures[0].kind.as_str(), failures[0].executor.as_str()), ("stalled", "e1"));
    beating_1.abort();
    beating_2.abort();
}

/// A batch the budget cut commits while nothing else runs: the next batch is planned at once,
/// not at the next tick, so a backlog drains at the executors' pace. With
/// `max_rate_per_partition` (a rate), the tick waits.
#[tokio::test(start_paused = true)]
async fn a_backlog_is_planned_at_the_executors_pace_unless_a_rate_is_set() {
    for (limit, catches_up) in
        [("max_records_per_batch = 10", true), ("max_rate_per_partition = 1", false)]
    {
        let config = CONFIG
            .replace("batch_interval = \"100ms\"", "batch_interval = \"10s\"")
            .replace("topics = [\"t\"]", &format!("topics = [\"t\"]\n{limit}"));
        let store = Arc::new(MemoryStore::new(Stored::default()));
        let mut job = Job::start_configured(&config, &[(0, 1_000)], store).await;
        let (conn, mut commands) = job.attach("e1", 4);
        let beating = keep_beating(job.events.clone(), conn);
        let (first, ranges) = next_assign(&mut commands).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let records_in = ranges.iter().map(OffsetRange::max_records).sum();
        let metrics = TaskMetrics { records_in, ..TaskMetrics::default() };
        job.report(conn, super::ExecutorEvent::Succeeded { task: first, metrics });
        let committed_at = Instant::now();
        job.committed(1).await;
        let (second, _) = next_assign(&mut commands).await;
        assert_eq!(second.batch, 2);
        let waited = committed_at.elapsed();
        assert_eq!(waited < Duration::from_secs(1), catches_up, "{limit}: waited {waited:?}");
        beating.abort();
    }
}
