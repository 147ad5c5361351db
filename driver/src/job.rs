//! The job loop: the one owner of the job's state on the leading driver. It plans batches,
//! records them in etcd before dispatch, hands tasks to executors through the scheduler, commits
//! finished batches in order, and notices lost executors. Everything that changes the job's state
//! happens here, one event at a time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};
use weir_common::batch::BatchPlan;
use weir_common::config::{Guarantee, JobConfig, OnDataLoss};
use weir_common::lanes::LaneMap;
use weir_common::retry::{Backoff, retry};
use weir_common::{OffsetRange, OffsetsCheckpoint, TopicPartition};
use weir_proto::v1 as pb;

use crate::data_loss;
use crate::error::DriverError;
use crate::etcd::{Store, Stored};
use crate::group::JobGroup;
use crate::planner::{Budget, PartitionState, plan_batch};
use crate::rate::{BatchObservation, Limits, RateController};
use crate::scheduler::{Assignment, Scheduler, Settings};
use crate::service::{ConnectionId, Event, ExecutorEvent, now_ms};
use crate::source::Source;
use crate::status::Status;

/// Batches recorded but not committed at once: the next batch is planned while the previous
/// one finishes, so lanes do not idle between batches.
const MAX_BATCHES_IN_FLIGHT: usize = 2;

/// How long a stopping driver waits for in-flight batches to commit.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

const ETCD_RETRY: Backoff = Backoff {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(5),
    give_up_after: None,
};

struct Connection {
    executor: String,
    outbox: mpsc::UnboundedSender<pb::DriverMessage>,
}

pub struct JobLoop {
    config: Arc<JobConfig>,
    store: Store,
    source: Arc<Source>,
    generation: u64,
    scheduler: Scheduler,
    connections: HashMap<ConnectionId, Connection>,
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
    /// The group `weir.{job}`: under exactly-once the executors' Kafka transactions write the
    /// progress there; otherwise the driver publishes it after each etcd commit.
    group: Arc<JobGroup>,
    status: Arc<Mutex<Status>>,
}

impl JobLoop {
    pub fn new(
        config: Arc<JobConfig>,
        store: Store,
        source: Arc<Source>,
        group: Arc<JobGroup>,
        generation: u64,
        stored: Stored,
        status: Arc<Mutex<Status>>,
    ) -> Self {
        let guarantee = config.sink.guarantee;
        let settings = Settings {
            max_attempts: config.driver.max_task_attempts,
            retry_backoff: config.driver.task_retry_backoff,
            run_again: guarantee != Guarantee::AtMostOnce,
        };
        let committed = stored.offsets.unwrap_or_default();
        let mut planned = committed.next_offsets.clone();
        let scheduler = Scheduler::new(settings);
        let mut next_batch = committed.last_committed_batch.map_or(1, |b| b + 1);
        for plan in &stored.pending {
            advance(&mut planned, plan);
            next_batch = plan.id + 1;
        }
        let rate = config.source.backpressure.then(|| {
            let limits = Limits { max_rate: None, min_rate: 1.0 };
            RateController::new(config.job.batch_interval, limits)
        });
        JobLoop {
            config,
            store,
            source,
            generation,
            scheduler,
            connections: HashMap::new(),
            committed,
            planned,
            lanes: stored.lanes,
            next_batch,
            replay: stored.pending,
            guarantee,
            rate,
            limited: BTreeMap::new(),
            deleted_topics: BTreeSet::new(),
            group,
            status,
        }
    }

    /// Runs until `stop` fires and the in-flight batches are committed, or until the job fails.
    pub async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        stop: CancellationToken,
        leadership_lost: CancellationToken,
    ) -> Result<(), DriverError> {
        for plan in std::mem::take(&mut self.replay) {
            info!(batch = plan.id, ranges = plan.ranges().count(), "Replaying a recorded batch");
            self.start_batch(plan).await?;
        }
        let mut plan_tick = tokio::time::interval(self.config.job.batch_interval);
        plan_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut liveness_tick = tokio::time::interval(self.config.driver.heartbeat_interval);
        let mut drain_deadline: Option<Instant> = None;
        loop {
            tokio::select! {
                biased;
                _ = leadership_lost.cancelled() => {
                    return Err(DriverError::LostLeadership { job: self.config.job.name.clone() });
                }
                Some(event) = events.recv() => self.on_event(event)?,
                _ = liveness_tick.tick() => self.expire_silent_executors(),
                _ = plan_tick.tick(), if drain_deadline.is_none() => self.plan().await?,
                _ = stop.cancelled(), if drain_deadline.is_none() => {
                    info!(in_flight = self.scheduler.batches_in_flight(),
                        "Stopping: no new batches; waiting for in-flight batches to commit");
                    drain_deadline = Some(Instant::now() + DRAIN_TIMEOUT);
                }
            }
            self.commit_finished().await?;
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

    /// Finds partitions the job does not know yet and gives them a start and a lane, in etcd at
    /// once (so a restart does not resolve `latest` again). Partitions of a topic new to the job
    /// start at `source.starting_offsets`; new partitions of a known topic at their earliest
    /// offset, so records written before they were discovered are not lost.
    pub async fn discover_partitions(&mut self) -> Result<Vec<TopicPartition>, DriverError> {
        let source = self.source.clone();
        let mut known: BTreeSet<String> = self.planned.keys().map(|tp| tp.topic.clone()).collect();
        known.extend(self.deleted_topics.iter().cloned());
        let partitions = blocking(move || source.partitions(|t| known.contains(t))).await?;
        self.forget_deleted_topics(&partitions).await?;
        let new: Vec<TopicPartition> =
            partitions.iter().filter(|tp| !self.planned.contains_key(tp)).cloned().collect();
        if new.is_empty() {
            return Ok(partitions);
        }
        let (new_topics, new_of_known): (Vec<_>, Vec<_>) = new
            .iter()
            .cloned()
            .partition(|tp| !self.planned.keys().any(|known| known.topic == tp.topic));
        let source = self.source.clone();
        let starting = self.config.source.starting_offsets.clone();
        let (from_start, from_earliest) = blocking(move || {
            Ok((source.starting_offsets(&new_topics, &starting)?, source.earliest(&new_of_known)?))
        })
        .await?;
        let starts: BTreeMap<TopicPartition, i64> =
            from_start.into_iter().chain(from_earliest).collect();
        if self.guarantee == Guarantee::ExactlyOnce {
            self.check_group_is_behind(&starts).await?;
        }
        self.status.lock().expect("status").partitions_discovered += starts.len() as u64;
        for (tp, offset) in starts {
            info!(partition = %tp, offset, "New partition; reading from here");
            self.committed.next_offsets.insert(tp.clone(), offset);
            self.planned.insert(tp, offset);
        }
        self.lanes.extend(new.iter());
        let (store, committed, lanes) = (&self.store, &self.committed, &self.lanes);
        retry("writing the new partitions' offsets to etcd", ETCD_RETRY, || {
            store.write_offsets_and_lanes(committed, lanes)
        })
        .await?;
        Ok(partitions)
    }

    /// Exactly-once trusts the group's progress: a task whose range ends at or below it is
    /// reported done without writing. Progress already past where a new partition starts would
    /// silently skip records (the job name was used before, and etcd's state is gone), so the job
    /// refuses to start and says how to clear it.
    async fn check_group_is_behind(
        &self,
        starts: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), DriverError> {
        let group = self.group.clone();
        let partitions: Vec<TopicPartition> = starts.keys().cloned().collect();
        let brokers = self.config.source.brokers.clone();
        let committed = blocking(move || {
            group.committed(&partitions).map_err(|message| DriverError::Kafka { brokers, message })
        })
        .await?;
        for (tp, &start) in starts {
            if let Some(&at) = committed.get(tp).filter(|&&at| at > start) {
                let group = self.group.name();
                return Err(DriverError::Unfit(format!(
                    "the group {group} already holds offset {at} for {tp}, past where this job \
                     starts it ({start}): an earlier job of this name committed there, and \
                     exactly-once would skip those records as done. Delete the group \
                     (kafka-consumer-groups --delete --group {group}) or give the job another name"
                )));
            }
        }
        Ok(())
    }

    /// Topics the job reads that Kafka no longer has (deleted) follow `source.on_data_loss`:
    /// `fail` stops the job naming them; `skip` stops reading them and forgets their offsets (a
    /// topic created again under the name is then new to the job).
    async fn forget_deleted_topics(&mut self, found: &[TopicPartition]) -> Result<(), DriverError> {
        let absent: BTreeSet<String> = self
            .planned
            .keys()
            .filter(|tp| !found.contains(tp))
            .map(|tp| tp.topic.clone())
            .collect();
        if absent.is_empty() {
            return Ok(());
        }
        let source = self.source.clone();
        let asked: Vec<String> = absent.into_iter().collect();
        let deleted = blocking(move || source.deleted(&asked)).await?;
        if deleted.is_empty() {
            return Ok(());
        }
        let positions: Vec<String> = self
            .planned
            .iter()
            .filter(|(tp, _)| deleted.contains(&tp.topic))
            .map(|(tp, at)| format!("{tp} at offset {at}"))
            .collect();
        if self.config.source.on_data_loss == OnDataLoss::Fail {
            return Err(DriverError::DataLoss(format!(
                "source topic(s) {} were deleted while the job read them ({}); records not yet \
                 read are gone. Set source.on_data_loss = \"skip\" to go on without them",
                deleted.join(", "),
                positions.join(", ")
            )));
        }
        warn!(topics = %deleted.join(", "), positions = %positions.join(", "),
            "Source topics deleted; no longer read (source.on_data_loss = \"skip\")");
        self.planned.retain(|tp, _| !deleted.contains(&tp.topic));
        self.deleted_topics.extend(deleted.iter().cloned());
        self.committed.next_offsets.retain(|tp, _| !deleted.contains(&tp.topic));
        let (store, committed, lanes) = (&self.store, &self.committed, &self.lanes);
        retry("writing offsets without the deleted topics to etcd", ETCD_RETRY, || {
            store.write_offsets_and_lanes(committed, lanes)
        })
        .await
    }

    /// Plans, records and queues the next batch, if there is room and there are new records.
    /// Kafka being unreachable skips this round (the next tick tries again).
    async fn plan(&mut self) -> Result<(), DriverError> {
        if self.scheduler.batches_in_flight() >= MAX_BATCHES_IN_FLIGHT {
            return Ok(());
        }
        let started = Instant::now();
        let latest = match self.fetch_latest().await {
            Ok(latest) => latest,
            Err(e @ DriverError::Kafka { .. }) => {
                warn!(error = %e, "Cannot plan a batch: Kafka did not answer; trying again next interval");
                self.status.lock().expect("status").waiting_for = Some(e.to_string());
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.status.lock().expect("status").waiting_for = None;
        let states: BTreeMap<TopicPartition, PartitionState> = self
            .planned
            .iter()
            .filter_map(|(tp, &next)| {
                latest.get(tp).map(|&l| (tp.clone(), PartitionState { next, latest: l }))
            })
            .collect();
        let mut states = states;
        let data_lost = self.check_data_loss(&mut states).await?;
        let lag: i64 = states.values().map(|s| (s.latest - s.next).max(0)).sum();
        self.status.lock().expect("status").lag_by_partition =
            states.iter().map(|(tp, s)| (tp.to_string(), (s.latest - s.next).max(0))).collect();
        self.update_rate_limits(states.len());
        let budget = self.budget();
        let planned = plan_batch(self.next_batch, &states, &self.lanes, budget, now_ms());
        let plan = match (planned, data_lost.is_empty()) {
            (Some(plan), _) => Some(BatchPlan { data_lost, ..plan }),
            // Only skipped offsets: a batch without tasks still moves the partitions on.
            (None, false) => Some(BatchPlan {
                id: self.next_batch,
                tasks: Vec::new(),
                planned_at_ms: now_ms(),
                data_lost,
            }),
            (None, true) => None,
        };
        let Some(plan) = plan else {
            let took = started.elapsed();
            debug!(took_us = took.as_micros() as u64, "No new records; no batch");
            self.status.lock().expect("status").empty_round(took, lag);
            return Ok(());
        };
        let store = &self.store;
        retry("recording a batch in etcd", ETCD_RETRY, || store.record_batch(&plan)).await?;
        info!(
            batch = plan.id,
            tasks = plan.tasks.len(),
            max_records = plan.max_records(),
            took_ms = started.elapsed().as_millis() as u64,
            "Batch recorded"
        );
        // Cut by the budget when it leaves records behind: what the rate controller learns.
        self.limited.insert(plan.id, (plan.max_records() as i64) < lag);
        advance(&mut self.planned, &plan);
        self.next_batch = plan.id + 1;
        self.status.lock().expect("status").lag = lag;
        self.start_batch(plan).await
    }

    /// Hands a recorded batch to the scheduler. At-most-once commits it in etcd first: once a
    /// task may have written anything, its records are never read again.
    async fn start_batch(&mut self, plan: BatchPlan) -> Result<(), DriverError> {
        if self.guarantee == Guarantee::AtMostOnce {
            self.commit_offsets(&plan).await?;
        }
        self.scheduler.add_batch(plan, Instant::now());
        Ok(())
    }

    /// Commits the batch's ends as the job's progress, in one guarded etcd transaction, then
    /// shows it in the group `weir.{job}` (unless the executors' transactions already did).
    async fn commit_offsets(&mut self, plan: &BatchPlan) -> Result<(), DriverError> {
        let mut next = self.committed.clone();
        for (tp, end) in plan.ends() {
            next.next_offsets.insert(tp.clone(), end);
        }
        next.last_committed_batch = Some(plan.id);
        let store = &self.store;
        let span = info_span!("commit", job = %self.config.job.name, batch = plan.id);
        retry("committing a batch in etcd", ETCD_RETRY, || store.commit_batch(&next))
            .instrument(span)
            .await?;
        if self.guarantee != Guarantee::ExactlyOnce {
            self.group.publish(&next.next_offsets);
        }
        self.committed = next;
        Ok(())
    }

    /// How many records the next batch may take. Per partition: `max_rate_per_partition` (and,
    /// until the rate controller has measured a batch, `initial_rate_per_partition`) times the
    /// batch interval. In all: `max_records_per_batch` and the controller's rate times the
    /// interval.
    fn budget(&self) -> Budget {
        let source = &self.config.source;
        let interval = self.config.job.batch_interval.as_secs_f64();
        let records = |rate: f64| ((rate * interval).ceil() as u64).max(1);
        let measured = self.rate.as_ref().and_then(RateController::rate);
        let initial = source.initial_rate_per_partition.filter(|_| measured.is_none());
        let per_partition = [source.max_rate_per_partition, initial].into_iter().flatten().min();
        let total =
            [source.max_records_per_batch, measured.map(records)].into_iter().flatten().min();
        Budget { per_partition: per_partition.map(|rate| records(rate as f64)), total }
    }

    /// The controller's bounds: at most `max_rate_per_partition` for every partition, at least
    /// one record per second per partition so every partition moves.
    fn update_rate_limits(&mut self, partitions: usize) {
        let max_rate = self.config.source.max_rate_per_partition;
        if let Some(rate) = &mut self.rate {
            rate.set_limits(Limits {
                max_rate: max_rate.map(|r| r as f64 * partitions as f64),
                min_rate: partitions.max(1) as f64,
            });
        }
    }

    /// Finds offsets still to read that Kafka no longer holds (only partitions whose log end
    /// differs from the job's position are asked for their log start, so an idle round costs
    /// nothing more) and applies `source.on_data_loss`.
    async fn check_data_loss(
        &mut self,
        states: &mut BTreeMap<TopicPartition, PartitionState>,
    ) -> Result<Vec<OffsetRange>, DriverError> {
        let moved: Vec<TopicPartition> =
            states.iter().filter(|(_, s)| s.latest != s.next).map(|(tp, _)| tp.clone()).collect();
        if moved.is_empty() {
            return Ok(Vec::new());
        }
        let source = self.source.clone();
        let starts = blocking(move || source.earliest(&moved)).await?;
        let skipped = data_loss::check(states, &starts, self.config.source.on_data_loss)
            .map_err(DriverError::DataLoss)?;
        for range in &skipped {
            warn!(partition = %range.topic_partition(), from = range.from(), until = range.until(),
                records = range.max_records(),
                "Offsets no longer in Kafka; skipped (source.on_data_loss = \"skip\")");
        }
        let lost: u64 = skipped.iter().map(OffsetRange::max_records).sum();
        self.status.lock().expect("status").records_lost_planning += lost;
        Ok(skipped)
    }

    async fn fetch_latest(&mut self) -> Result<BTreeMap<TopicPartition, i64>, DriverError> {
        let partitions = self.discover_partitions().await?;
        let source = self.source.clone();
        blocking(move || source.latest(&partitions)).await
    }

    fn on_event(&mut self, event: Event) -> Result<(), DriverError> {
        let now = Instant::now();
        match event {
            Event::Attached { conn, executor, slots, address, outbox } => {
                if let Some(old) = self.connection_of(&executor) {
                    self.drop_connection(old, "it attached again");
                }
                info!(executor = %executor, slots, address = %address, "Executor attached");
                self.scheduler.add_executor(executor.clone(), slots, now);
                self.connections.insert(conn, Connection { executor, outbox });
            }
            Event::Detached { conn, reason } => self.drop_connection(conn, &reason),
            Event::Message { conn, event } => {
                let Some(executor) = self.connections.get(&conn).map(|c| c.executor.clone()) else {
                    return Ok(());
                };
                self.scheduler.executor_seen(&executor, now);
                match event {
                    ExecutorEvent::Heartbeat => {}
                    ExecutorEvent::Progress { task, records_in } => {
                        self.status.lock().expect("status").progress(&executor, task, records_in);
                    }
                    ExecutorEvent::Succeeded { task, metrics } => {
                        if self.scheduler.task_succeeded(&executor, task, metrics) {
                            debug!(executor = %executor, batch = task.batch, lane = task.lane,
                                records_in = metrics.records_in, read_ms = metrics.read_ms,
                                flush_ms = metrics.flush_ms, total_ms = metrics.total_ms, "Task done");
                        }
                    }
                    ExecutorEvent::Failed { task, retryable, message } => {
                        warn!(executor = %executor, batch = task.batch, lane = task.lane, retryable,
                            error = %message, "Task failed");
                        if let Err(failure) =
                            self.scheduler.task_failed(&executor, task, retryable, &message, now)
                        {
                            self.cancel_running();
                            return Err(failure.into());
                        }
                    }
                    ExecutorEvent::Leaving => {
                        info!(executor = %executor, "Executor leaving; its lanes move once idle");
                        self.scheduler.executor_leaving(&executor);
                    }
                }
            }
        }
        Ok(())
    }

    fn connection_of(&self, executor: &str) -> Option<ConnectionId> {
        self.connections.iter().find(|(_, c)| c.executor == executor).map(|(&id, _)| id)
    }

    /// Forgets a connection and its executor; its unfinished tasks run again elsewhere.
    fn drop_connection(&mut self, conn: ConnectionId, reason: &str) {
        let Some(connection) = self.connections.remove(&conn) else { return };
        let requeued = self.scheduler.remove_executor(&connection.executor, Instant::now());
        if requeued.is_empty() {
            info!(executor = %connection.executor, reason, "Executor detached");
        } else if self.guarantee == Guarantee::AtMostOnce {
            warn!(executor = %connection.executor, reason, tasks = requeued.len(),
                "Executor lost; at-most-once abandons its tasks, their records are lost");
        } else {
            warn!(executor = %connection.executor, reason, tasks = requeued.len(),
                "Executor lost; its tasks run again elsewhere");
        }
    }

    /// Closes the stream of each leaving executor that has finished its tasks, which lets it exit.
    fn let_leaving_executors_go(&mut self) {
        for executor in self.scheduler.idle_leaving_executors() {
            if let Some(conn) = self.connection_of(&executor) {
                self.drop_connection(conn, "it left after finishing its tasks");
            }
        }
    }

    fn expire_silent_executors(&mut self) {
        let timeout = self.config.driver.executor_timeout;
        for executor in self.scheduler.silent_executors(Instant::now(), timeout) {
            if let Some(conn) = self.connection_of(&executor) {
                self.drop_connection(conn, &format!("no heartbeat for {timeout:?}"));
            } else {
                self.scheduler.remove_executor(&executor, Instant::now());
            }
        }
    }

    fn dispatch(&mut self) {
        for Assignment { executor, task, ranges } in self.scheduler.dispatch(Instant::now()) {
            debug!(executor = %executor, batch = task.batch, lane = task.lane, attempt = task.attempt, "Assigning task");
            let message = pb::DriverMessage {
                generation: self.generation,
                kind: Some(pb::driver_message::Kind::Assign(pb::AssignTask {
                    task: Some(task.into()),
                    ranges: ranges.iter().map(pb::OffsetRange::from).collect(),
                })),
            };
            // A closed outbox means the connection is going; its Detached event requeues the task.
            if let Some(conn) = self.connections.values().find(|c| c.executor == executor) {
                let _ = conn.outbox.send(message);
            }
        }
    }

    fn cancel_running(&mut self) {
        for (executor, task) in self.scheduler.running() {
            if let Some(conn) = self.connections.values().find(|c| c.executor == executor) {
                let _ = conn.outbox.send(pb::DriverMessage {
                    generation: self.generation,
                    kind: Some(pb::driver_message::Kind::Cancel(pb::CancelTask {
                        task: Some(task.into()),
                    })),
                });
            }
        }
    }

    /// Commits every finished batch at the head of the queue, in order: the new offsets and the
    /// batch's completion in one guarded etcd transaction. (At-most-once committed it before
    /// dispatch; a finished batch just leaves.)
    async fn commit_finished(&mut self) -> Result<(), DriverError> {
        while let Some(batch) = self.scheduler.committable() {
            let id = batch.plan.id;
            if self.guarantee != Guarantee::AtMostOnce {
                let plan = batch.plan.clone();
                self.commit_offsets(&plan).await?;
            }
            let batch = self.scheduler.remove_batch(id).expect("committable batch exists");
            let now = Instant::now();
            let delay = batch.first_dispatch.unwrap_or(now).duration_since(batch.recorded_at);
            let processing = now.duration_since(batch.first_dispatch.unwrap_or(now));
            info!(
                batch = id,
                tasks = batch.plan.tasks.len(),
                records_in = batch.metrics.records_in,
                records_out = batch.metrics.records_out,
                rejected = batch.metrics.records_rejected,
                filtered = batch.metrics.records_filtered,
                already_committed_tasks = batch.metrics.tasks_already_committed,
                records_lost = batch.metrics.records_lost + batch.plan.records_lost(),
                scheduling_delay_ms = delay.as_millis() as u64,
                processing_ms = processing.as_millis() as u64,
                "Batch committed"
            );
            if let Some(rate) = &mut self.rate {
                rate.observe(BatchObservation {
                    records: batch.metrics.records_in,
                    processing,
                    scheduling_delay: delay,
                    limited: self.limited.remove(&id).unwrap_or(false),
                });
                let now = rate.rate();
                self.status.lock().expect("status").rate_records_per_second = now;
            }
            if batch.records_abandoned > 0 {
                warn!(
                    batch = id,
                    offsets = batch.records_abandoned,
                    "At-most-once: tasks failed or were lost and are not run again; their records are lost"
                );
            }
            self.status.lock().expect("status").committed(id, &batch, delay, processing);
        }
        Ok(())
    }

    fn publish_status(&self) {
        let mut status = self.status.lock().expect("status");
        status.executors = self.scheduler.executor_status();
        let running = self.scheduler.running();
        status
            .running_tasks
            .retain(|t| running.iter().any(|(e, id)| *e == t.executor && *id == t.task));
        status.batches_in_flight = self.scheduler.batches_in_flight();
        status.generation = self.generation;
    }
}

/// Moves each partition's planned position to where the plan leaves it.
fn advance(planned: &mut BTreeMap<TopicPartition, i64>, plan: &BatchPlan) {
    for (tp, end) in plan.ends() {
        planned.insert(tp.clone(), end);
    }
}

/// Runs blocking librdkafka work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DriverError> + Send + 'static,
) -> Result<T, DriverError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(DriverError::Internal(format!("a Kafka metadata thread failed: {e}")))
    })
}
