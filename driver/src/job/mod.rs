//! The job loop: the one owner of the job's state on the leading driver. It plans batches,
//! records them in etcd before dispatch, hands tasks to executors through the scheduler, commits
//! finished batches in order, and notices lost executors. Everything that changes the job's state
//! happens here, one event at a time; this file holds the state and the select loop, and each
//! concern has its own file:
//!
//! - `discovery.rs`: partitions found, deleted topics, where new partitions start;
//! - `planning.rs`: the next batch, within the budget, and data loss found while planning;
//! - `commits.rs`: batches handed to the scheduler and committed in order;
//! - `connections.rs`: executors attaching, reporting and leaving, and the commands sent to them;
//! - `control.rs`: what operators ask of the job (`weirctl`): stop, resume, drain an executor;
//! - `events.rs`: the domain events and commands the gRPC service translates.
//!
//! The loop reaches etcd and Kafka only through the traits of `crate::io`, so `tests/` runs it
//! against in-memory versions under tokio's paused clock.

mod commits;
mod connections;
mod control;
mod discovery;
mod events;
mod planning;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use weir_common::batch::BatchPlan;
use weir_common::config::{Guarantee, JobConfig, duration};
use weir_common::control::JobState;
use weir_common::lanes::LaneMap;
use weir_common::retry::{Backoff, retry};
use weir_common::{OffsetsCheckpoint, TopicPartition};

pub use events::{Command, ConnectionId, Event, ExecutorEvent, now_ms};

use crate::error::DriverError;
use crate::io::{CheckpointStore, Control, JobGroup, SourceMetadata, Stored};
use crate::metrics::DriverMetrics;
use crate::rate::{Limits, RateController};
use crate::scheduler::{Scheduler, Settings};
use crate::status::Status;
use crate::status::history::LagClock;
use connections::Connections;
use control::ControlPoller;

/// Batches recorded but not committed at once: the next batch is planned while the previous
/// one finishes, so lanes do not idle between batches.
const MAX_BATCHES_IN_FLIGHT: usize = 2;
/// The events waiting for the loop (from every connection). Bounded, so a peer that floods the
/// driver with messages is slowed (its stream is not read while the queue is full: HTTP/2 flow
/// control pushes back), instead of growing the driver's memory.
pub(crate) const EVENT_QUEUE: usize = 4096;
/// The most executors attached to one job at once: a peer opening connection after connection
/// gets refused, not a slot in the loop's tables each.
pub(crate) const MAX_EXECUTORS: usize = 1024;

/// How long a stopping driver waits for in-flight batches to commit.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// etcd writes of the loop wait for etcd for ever: giving up would stop the job, and a restarted
/// driver would wait the same way. A lost leadership is not retried (it is not retryable).
const ETCD_RETRY: Backoff = Backoff {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(5),
    give_up_after: None,
};

/// Waits for etcd or Kafka at start (the driver's and the loop's): for ever, loudly, never a
/// crash loop.
pub(crate) const START_RETRY: Backoff = Backoff {
    initial: Duration::from_millis(500),
    max: Duration::from_secs(10),
    give_up_after: None,
};

/// The services the loop talks to.
#[derive(Clone)]
pub struct JobIo {
    pub store: Arc<dyn CheckpointStore>,
    pub source: Arc<dyn SourceMetadata>,
    pub group: Arc<dyn JobGroup>,
}

pub struct JobLoop {
    config: Arc<JobConfig>,
    io: JobIo,
    scheduler: Scheduler,
    connections: Connections,
    /// The committed progress, as in etcd.
    committed: OffsetsCheckpoint,
    /// Where the next batch starts, per partition: committed progress plus recorded batches.
    planned: BTreeMap<TopicPartition, i64>,
    lanes: LaneMap,
    next_batch: u64,
    /// Batches recorded by an earlier driver and not committed: run first, exactly as recorded.
    replay: Vec<BatchPlan>,
    guarantee: Guarantee,
    /// Sizes batches from measured processing rates (`source.backpressure`).
    rate: Option<RateController>,
    /// Batches in flight that the budget cut (some partition had more records than allowed):
    /// what the controller needs to know when they commit.
    limited: BTreeMap<u64, bool>,
    /// Listed topics deleted while read, under `on_data_loss = "skip"`: no longer an error.
    deleted_topics: BTreeSet<String>,
    /// What operators see (the job, driver and generation set by the caller): this loop is its
    /// one writer.
    status: watch::Sender<Status>,
    /// What operators asked of the job, as last read from etcd.
    control: Control,
    /// The state revision a stop confirmation was last tried at.
    stop_confirm_tried: Option<i64>,
    /// `/metrics`, shared with the HTTP server.
    metrics: Arc<DriverMetrics>,
    /// How long each partition's oldest unplanned record has waited.
    lag_clock: LagClock,
    /// Cancelled when this driver's leadership is lost; ends every wait for etcd at once.
    leadership_lost: CancellationToken,
}

impl JobLoop {
    pub fn new(
        config: Arc<JobConfig>,
        io: JobIo,
        stored: Stored,
        status: watch::Sender<Status>,
        metrics: Arc<DriverMetrics>,
    ) -> Self {
        let guarantee = config.sink.guarantee;
        let settings = Settings {
            max_attempts: config.driver.max_task_attempts,
            retry_backoff: config.driver.task_retry_backoff,
            run_again: guarantee != Guarantee::AtMostOnce,
            outage_limit: config.driver.outage_limit,
        };
        let rate = config.source.backpressure.then(|| {
            RateController::new(config.job.batch_interval, Limits::for_partitions(0, None))
        });
        let mut job = JobLoop {
            io,
            scheduler: Scheduler::new(settings),
            connections: Connections::default(),
            committed: OffsetsCheckpoint::default(),
            planned: BTreeMap::new(),
            lanes: LaneMap::default(),
            next_batch: 1,
            replay: Vec::new(),
            guarantee,
            rate,
            limited: BTreeMap::new(),
            deleted_topics: BTreeSet::new(),
            status,
            config,
            control: Control::default(),
            stop_confirm_tried: None,
            metrics,
            lag_clock: LagClock::default(),
            leadership_lost: CancellationToken::new(),
        };
        job.restore(stored);
        job
    }

    /// Takes the checkpoint as the job's state: the committed progress, the lanes, and the
    /// recorded batches to replay first.
    fn restore(&mut self, stored: Stored) {
        self.committed = stored.offsets.unwrap_or_default();
        self.planned = self.committed.next_offsets.clone();
        self.next_batch = self.committed.last_committed_batch.map_or(1, |b| b + 1);
        for plan in &stored.pending {
            advance(&mut self.planned, plan);
            self.next_batch = plan.id + 1;
        }
        self.lanes = stored.lanes;
        self.replay = stored.pending;
    }

    /// Runs until `stop` fires and the in-flight batches are committed, or until the job fails.
    /// First it reads what operators asked (a stopped job waits for a resume); then it finds the
    /// source's partitions (waiting for Kafka as long as it takes) and writes new partitions'
    /// starting offsets to etcd, so a restart before the first batch does not resolve `latest`
    /// again; then it replays the batches an earlier driver recorded.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        stop: CancellationToken,
        leadership_lost: CancellationToken,
    ) -> Result<(), DriverError> {
        self.leadership_lost = leadership_lost.clone();
        tokio::select! {
            biased;
            _ = leadership_lost.cancelled() => return Err(self.lost_leadership()),
            _ = stop.cancelled() => return Ok(()),
            ready = self.start_up() => ready?,
        }
        let period = self.config.driver.heartbeat_interval;
        let (_poller, mut control) =
            ControlPoller::start(self.io.store.clone(), self.control.clone(), period);
        let mut plan_tick = tokio::time::interval(self.config.job.batch_interval);
        plan_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut liveness_tick = tokio::time::interval(self.config.driver.heartbeat_interval);
        let mut drain_deadline: Option<Instant> = None;
        loop {
            tokio::select! {
                biased;
                _ = leadership_lost.cancelled() => return Err(self.lost_leadership()),
                Some(event) = events.recv() => self.on_event(event)?,
                Ok(()) = control.changed() => {
                    let requests = control.borrow_and_update().clone();
                    self.on_control(requests).await?;
                }
                _ = liveness_tick.tick() => {
                    self.expire_silent_executors();
                    self.cancel_stalled_tasks()?;
                }
                _ = plan_tick.tick(), if drain_deadline.is_none() && !self.control.state.holds_planning() => {
                    self.plan().await?
                }
                _ = stop.cancelled(), if drain_deadline.is_none() => {
                    info!(in_flight = self.scheduler.batches_in_flight(),
                        "Stopping: no new batches; waiting for in-flight batches to commit");
                    drain_deadline = Some(Instant::now() + DRAIN_TIMEOUT);
                }
                // Wakes the loop at the deadline even when nothing else happens.
                _ = sleep_until_some(drain_deadline) => {}
            }
            let backlog_left = self.commit_finished().await?;
            let may_plan = drain_deadline.is_none() && !self.control.state.holds_planning();
            if backlog_left && may_plan && self.catches_up() {
                // The executors would idle until the tick: plan the next batch now, and count
                // the interval from here.
                self.plan().await?;
                plan_tick.reset();
            }
            self.confirm_stop_when_drained().await?;
            self.dispatch();
            self.let_leaving_executors_go();
            self.publish_status();
            if let Some(deadline) = drain_deadline {
                if self.scheduler.batches_in_flight() == 0 {
                    info!("All batches committed");
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    warn!(
                        in_flight = self.scheduler.batches_in_flight(),
                        "Batches still running after {DRAIN_TIMEOUT:?}; stopping anyway, the next driver replays them"
                    );
                    return Ok(());
                }
            }
        }
    }

    /// Whether a backlog may be drained at the executors' pace: nothing runs, and batches are
    /// sized by the rate controller (measured by now), not by `max_rate_per_partition`, a rate
    /// the job must not exceed by planning more often than once an interval.
    fn catches_up(&self) -> bool {
        self.scheduler.batches_in_flight() == 0
            && self.config.source.max_rate_per_partition.is_none()
            && self.rate.as_ref().is_some_and(|rate| rate.rate().is_some())
    }

    /// Reads the operators' requests, then (unless the job is stopped) finds the partitions and
    /// replays the recorded batches.
    async fn start_up(&mut self) -> Result<(), DriverError> {
        let store = self.io.store.clone();
        let control = retry("reading the operators' requests from etcd", START_RETRY, || {
            store.read_control()
        })
        .await?;
        self.control = control;
        if self.control.state == JobState::Stopped && !self.replay.is_empty() {
            // Batches recorded before the stop was confirmed (their driver died draining): they
            // are finished first, with the stop held as requested, so no offsets reset can
            // write while they commit.
            let seen = self.control.clone();
            retry("holding the stop in etcd", START_RETRY, || {
                store.set_state(&seen, JobState::StopRequested)
            })
            .await?;
            self.control = retry("reading the operators' requests from etcd", START_RETRY, || {
                store.read_control()
            })
            .await?;
        }
        self.publish_state();
        if self.control.state == JobState::Stopped {
            info!(by = %self.control.changed_by,
                "The job is stopped; nothing runs until `weirctl job resume`");
            self.status.send_modify(|s| s.ready = true);
            return Ok(());
        }
        self.discover_until_kafka_answers().await?;
        for plan in std::mem::take(&mut self.replay) {
            info!(batch = plan.id, ranges = plan.ranges().count(), "Replaying a recorded batch");
            self.start_batch(plan, true).await?;
        }
        self.status.send_modify(|s| s.ready = true);
        Ok(())
    }

    /// What an etcd write of the loop needs to wait well: where to show the wait, and when to
    /// stop waiting (the leadership is gone).
    fn etcd_wait(&self) -> EtcdWait<'_> {
        EtcdWait { status: &self.status, lost: &self.leadership_lost, job: &self.config.job.name }
    }

    fn lost_leadership(&self) -> DriverError {
        DriverError::LostLeadership { job: self.config.job.name.clone() }
    }

    fn publish_status(&self) {
        let now = Instant::now();
        let running = self.scheduler.running();
        let mut executors = self.scheduler.executor_status(now);
        for e in &mut executors {
            e.address = self.connections.address_of(&e.id).unwrap_or_default();
        }
        let backlog = self.scheduler.backlog(now);
        let in_flight = self.scheduler.batches_in_flight();
        let outage = self.scheduler.unavailable_since();
        self.status.send_modify(|status| {
            status.executors = executors;
            status
                .running_tasks
                .retain(|t| running.iter().any(|(e, id)| *e == t.executor && *id == t.task));
            status.batches_in_flight = in_flight;
            match (backlog.waiting_tasks, backlog.executors, backlog.free_slots) {
                (0, _, _) => {
                    status.done_waiting("no_executor");
                    status.done_waiting("slots");
                }
                (n, 0, _) => {
                    let message =
                        format!("an executor to attach: {n} task(s) ready, none attached");
                    status.wait("no_executor", message, now_ms());
                    status.done_waiting("slots");
                }
                (n, _, 0) => {
                    status.wait("slots", format!("a free slot: {n} task(s) ready"), now_ms());
                    status.done_waiting("no_executor");
                }
                _ => {
                    status.done_waiting("no_executor");
                    status.done_waiting("slots");
                }
            }
            match outage {
                Some(since) => {
                    let limit = match self.config.driver.outage_limit {
                        Some(limit) => format!("the job stops after {}", duration::format(limit)),
                        None => "waited out for as long as it lasts".to_owned(),
                    };
                    let message = format!(
                        "Kafka to answer: tasks fail because it does not respond ({limit}; not \
                         counted against max_task_attempts)"
                    );
                    let since_ms = now_ms() - now.duration_since(since).as_millis() as i64;
                    status.wait("kafka_outage", message, since_ms);
                }
                None => status.done_waiting("kafka_outage"),
            }
            let m = &self.metrics;
            m.executors.set(status.executors.len() as i64);
            m.batches_in_flight.set(in_flight as i64);
            m.job_stopped.set(i64::from(status.state.holds_planning()));
            m.waiting_for(&status.waiting_reasons());
            m.rate.set(status.rate_records_per_second.unwrap_or(0.0));
        });
    }
}

struct EtcdWait<'a> {
    status: &'a watch::Sender<Status>,
    lost: &'a CancellationToken,
    job: &'a str,
}

/// Runs one etcd operation of the loop until it succeeds (`ETCD_RETRY`: for ever; a lost
/// leadership is not retried), showing `etcd` among what the job waits for while it fails. A
/// leadership lost meanwhile (the lease expired while etcd did not answer) ends the wait at once:
/// this driver must stop acting as the leader, not wait for etcd to tell it so.
async fn in_etcd<T, F, Fut>(wait: EtcdWait<'_>, what: &str, mut op: F) -> Result<T, DriverError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, DriverError>>,
{
    let status = wait.status;
    let retried = retry(what, ETCD_RETRY, || {
        let attempt = op();
        async move {
            let result = attempt.await;
            if let Err(e) = &result
                && weir_common::retry::Retryable::is_retryable(e)
            {
                let message = format!("etcd: {what} failed: {e}");
                status.send_modify(|s| s.wait("etcd", message, now_ms()));
            }
            result
        }
    });
    let result = tokio::select! {
        biased;
        _ = wait.lost.cancelled() => Err(DriverError::LostLeadership { job: wait.job.to_owned() }),
        result = retried => result,
    };
    status.send_if_modified(|s| {
        let waited = s.waits.contains_key("etcd");
        s.done_waiting("etcd");
        waited
    });
    result
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Moves each partition's planned position to where the plan leaves it.
fn advance(planned: &mut BTreeMap<TopicPartition, i64>, plan: &BatchPlan) {
    for (tp, end) in plan.ends() {
        planned.insert(tp.clone(), end);
    }
}
