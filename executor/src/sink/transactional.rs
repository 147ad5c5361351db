//! The Kafka sink under exactly-once: one transactional producer per lane, and one Kafka
//! transaction per task holding the task's output records, its dead letters and its input offsets
//! `until` for the group `weir.{job}`. etcd holds the plan; Kafka holds the outcome.
//!
//! The order of a task, and why:
//! 1. The lane's producer (`transactional.id = weir.{job}.lane.{n}`), created and
//!    `init_transactions`-ed on first use. Init fences every older producer of the lane (a paused
//!    executor that lost the lane) and completes or aborts its open transaction.
//! 2. *Then* the lane's progress is read from the group: after init nothing of an older owner is
//!    still pending, so the progress is final. Later tasks on the same producer use the progress
//!    it committed itself (reading the group right after a commit waits for the commit's markers). Progress at `until` means a replay: report done,
//!    write nothing. Progress strictly inside the range stops the job (see `progress.rs`).
//! 3. Begin, write, `send_offsets_to_transaction`, commit. A task that would keep its
//!    transaction open longer than half of `transaction_timeout` (a large first batch) commits
//!    what it wrote so far with the offsets where it stands, and goes on in a new transaction:
//!    the broker would abort a transaction past its timeout, and the replay would meet the same
//!    wall. Every offset committed names the lane in its metadata, so a retry resumes from a
//!    step (`progress.rs`) and progress nobody of this job wrote still stops the job.
//!
//! Errors: an abortable one aborts the transaction and fails the task (retryable). A fatal one
//! (fenced) or an ambiguous one drops the lane's producer, so the next task initialises a new
//! one, and never aborts (an abort after a commit that may have happened could not be trusted).
//! A commit that timed out is retried, never aborted.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{Producer, ThreadedProducer};
use tracing::{debug, info, warn};
use weir_common::batch::LaneId;
use weir_common::config::Partitioning;
use weir_common::failure::kafka_failure;
use weir_common::lanes::LaneMap;
use weir_common::protocol::TaskId;
use weir_common::{OffsetRange, Record, TopicPartition};

use super::admission::{Admission, TopicGate, fit_batches};
use super::dead_letters;
use super::progress::{Committed, TaskProgress, task_progress};
use super::{Begun, Sink, TaskOutput, record_bytes};
use crate::error::TaskError;
use crate::kafka::group::GroupProgress;
use crate::kafka::producer::{Deliveries, DeliveryTracker, SharedProducer};
use crate::metrics::TransactionCounters;

/// `init_transactions` waits while an older owner's transaction is completed or aborted.
const INIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the metadata request that warms a new lane producer's connection may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// Each transaction call (offsets, commit, abort) gets this long before it is retried or given up.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a transaction call may block in all, its own timeout included.
const OUTER_DEADLINE: Duration = Duration::from_secs(30);
/// Commit attempts after a retriable failure (a timeout) before the producer is dropped instead.
const COMMIT_ATTEMPTS: u32 = 3;

pub struct TransactionalSink {
    settings: TransactionalSettings,
    lanes: Mutex<HashMap<LaneId, Lane>>,
}

/// A lane's producer and the progress it committed itself. While the producer is not fenced,
/// nobody else has committed for the lane since its init, so that progress is current; the first
/// task after init reads it from the group.
struct Lane {
    producer: SharedProducer,
    committed: BTreeMap<TopicPartition, i64>,
}

pub struct TransactionalSettings {
    pub job: String,
    pub producer_config: ClientConfig,
    pub brokers: String,
    pub topic: String,
    pub partitioning: Partitioning,
    /// The output topic's limits: a lane producer's `batch.size` fits them.
    pub output_gate: Arc<TopicGate>,
    /// The dead-letter topic, and its limits.
    pub dead_letter_gate: Option<Arc<TopicGate>>,
    pub transaction_timeout: Duration,
    pub group: GroupProgress,
    /// Where the sink counts the transactions it commits and aborts.
    pub counters: TransactionCounters,
}

impl TransactionalSink {
    pub fn new(settings: TransactionalSettings) -> Self {
        TransactionalSink { settings, lanes: Mutex::new(HashMap::new()) }
    }

    /// The lane's producer, initialised (fencing older owners) when this executor has none.
    fn lane_producer(&self, lane: LaneId) -> Result<SharedProducer, TaskError> {
        if let Some(known) = self.lanes.lock().expect("lanes").get(&lane) {
            return Ok(known.producer.clone());
        }
        let id = LaneMap::transactional_id(&self.settings.job, lane);
        let mut config = self.settings.producer_config.clone();
        let gates = [Some(&self.settings.output_gate), self.settings.dead_letter_gate.as_ref()];
        let gates: Vec<&TopicGate> = gates.into_iter().flatten().map(Arc::as_ref).collect();
        fit_batches(&mut config, &gates);
        let producer = SharedProducer::transactional(
            config,
            &self.settings.brokers,
            &id,
            self.settings.transaction_timeout,
        )?;
        // A metadata request first (of the output topic alone: a cluster may hold thousands): it
        // waits for a broker connection, so the coordinator lookup of `init_transactions` goes
        // out at once instead of after librdkafka's 500 ms retry timer (a cold lane's first task
        // took half a second more without it). Best effort.
        let topic = Some(self.settings.topic.as_str());
        let _ = producer.client().client().fetch_metadata(topic, METADATA_TIMEOUT);
        producer.client().init_transactions(INIT_TIMEOUT).map_err(|e| {
            TaskError::kafka(
                format_args!("init_transactions for {id} on {}", self.settings.brokers),
                &e,
            )
        })?;
        info!(lane, transactional_id = %id, "Lane producer initialised; older owners are fenced");
        let known = Lane { producer: producer.clone(), committed: BTreeMap::new() };
        self.lanes.lock().expect("lanes").insert(lane, known);
        Ok(producer)
    }

    /// Forgets the lane's producer if it is still `producer`: the next task starts a new one.
    fn drop_lane(&self, lane: LaneId, producer: &SharedProducer) {
        let mut lanes = self.lanes.lock().expect("lanes");
        if lanes.get(&lane).is_some_and(|known| known.producer.same_as(producer)) {
            lanes.remove(&lane);
        }
    }

    /// The lane's progress for the task's partitions: what its producer committed itself, or,
    /// for the first task after `init_transactions`, what the group holds. A stale value can
    /// only be behind the truth, and then the producer is fenced: its transaction fails, the
    /// producer is dropped, and the retry reads the group.
    fn progress(
        &self,
        lane: LaneId,
        ranges: &[OffsetRange],
    ) -> Result<BTreeMap<TopicPartition, Committed>, TaskError> {
        if let Some(known) = self.lanes.lock().expect("lanes").get(&lane)
            && ranges.iter().all(|r| known.committed.contains_key(r.topic_partition()))
        {
            let own = |&offset: &i64| Committed { offset, lane: Some(lane) };
            return Ok(known.committed.iter().map(|(tp, at)| (tp.clone(), own(at))).collect());
        }
        self.settings.group.committed(ranges)
    }

    /// After a commit: the lane's producer now knows its progress.
    fn committed(
        &self,
        lane: LaneId,
        producer: &SharedProducer,
        at: &BTreeMap<TopicPartition, i64>,
    ) {
        let mut lanes = self.lanes.lock().expect("lanes");
        if let Some(known) = lanes.get_mut(&lane).filter(|k| k.producer.same_as(producer)) {
            known.committed.extend(at.iter().map(|(tp, &offset)| (tp.clone(), offset)));
        }
    }

    /// A failed transaction call, turned into the task's error after doing what it needs: abort,
    /// or drop the producer.
    fn failed(&self, output: &mut TransactionOutput<'_>, what: &str, e: KafkaError) -> TaskError {
        let message = format!(
            "{what} for {} (lane {}): {e}",
            LaneMap::transactional_id(&self.settings.job, output.lane),
            output.lane
        );
        match Failure::of(&e) {
            Failure::Abortable => {
                // Dropping the output aborts the transaction. What caused it decides whether
                // the task runs again (a record too large for the broker never fits).
                TaskError { kind: kafka_failure(&e), message }
            }
            Failure::Fenced => {
                output.state = State::Dropped;
                self.drop_lane(output.lane, &output.producer);
                // A zombie (paused past the timeout) finds its session closed by the driver and
                // re-attaches; an executor the lane comes back to starts a new producer.
                warn!(lane = output.lane, error = %e, "Fenced: another executor took this lane over; dropped its producer");
                TaskError::transient(format!("{message}; another executor took the lane over"))
            }
            Failure::Retriable | Failure::Ambiguous => {
                output.state = State::Dropped;
                self.drop_lane(output.lane, &output.producer);
                TaskError::transient(format!("{message}; the lane's producer is started again"))
            }
        }
    }
}

impl Sink for TransactionalSink {
    fn begin(&self, task: TaskId, ranges: &[OffsetRange]) -> Result<Begun<'_>, TaskError> {
        let producer = self.lane_producer(task.lane)?;
        let committed = self.progress(task.lane, ranges)?;
        let resume = match task_progress(task.lane, ranges, &committed, self.settings.group.name())
            .map_err(TaskError::data)?
        {
            TaskProgress::AlreadyCommitted => {
                info!(lane = task.lane, "Task already committed in Kafka; not written again");
                return Ok(Begun::AlreadyCommitted);
            }
            TaskProgress::NotCommitted => None,
            TaskProgress::Resume(from) => {
                info!(lane = task.lane, from = ?from,
                    "Part of this task is committed (an earlier attempt's steps); resuming");
                Some(from)
            }
        };
        let mut output = TransactionOutput {
            sink: self,
            lane: task.lane,
            producer: producer.clone(),
            deliveries: Deliveries::for_ranges(ranges),
            dead_letters: None,
            ranges: ranges.to_vec(),
            state: State::NotBegun,
            written_to: WrittenTo::default(),
            opened_at: Instant::now(),
            steps: 0,
        };
        output.begin()?;
        Ok(match resume {
            Some(from) => Begun::Resume(Box::new(output), from),
            None => Begun::Write(Box::new(output)),
        })
    }

    fn forget_lanes(&self) {
        let dropped = std::mem::take(&mut *self.lanes.lock().expect("lanes"));
        if !dropped.is_empty() {
            debug!(lanes = dropped.len(), "Dropped the lane producers; the lanes may move");
        }
    }

    fn queued_messages(&self) -> u64 {
        self.lanes.lock().expect("lanes").values().map(|lane| lane.producer.queued()).sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotBegun,
    /// A transaction is open: dropping the output aborts it.
    Open,
    Committed,
    /// The producer was given up: nothing more is called on it.
    Dropped,
}

struct TransactionOutput<'a> {
    sink: &'a TransactionalSink,
    lane: LaneId,
    producer: SharedProducer,
    deliveries: Arc<Deliveries>,
    /// The dead-letter topic's limits, taken at the task's first dead letter.
    dead_letters: Option<Admission<'a>>,
    ranges: Vec<OffsetRange>,
    state: State,
    /// The next offset of each partition after the records written (or dead-lettered) so far:
    /// what a step commits.
    written_to: WrittenTo,
    /// When the open transaction began.
    opened_at: Instant,
    steps: u32,
}

impl TransactionOutput<'_> {
    fn begin(&mut self) -> Result<(), TaskError> {
        if let Err(e) = self.producer.client().begin_transaction() {
            return Err(self.sink.failed(self, "begin_transaction", e));
        }
        self.state = State::Open;
        self.opened_at = Instant::now();
        Ok(())
    }

    /// Notes that `record` is written, and commits a step when the transaction has been open
    /// for half of `transaction_timeout`.
    fn written(&mut self, record: &Record<'_>) -> Result<(), TaskError> {
        self.written_to.note(record.topic, record.partition, record.offset + 1);
        if self.opened_at.elapsed() < self.sink.settings.transaction_timeout / 2 {
            return Ok(());
        }
        let at = self.written_to.to_map();
        self.commit(&at)?;
        self.steps += 1;
        info!(lane = self.lane, step = self.steps, at = ?at,
            "Committed a step of a task too long for one transaction; going on in a new one");
        self.begin()
    }

    /// Runs a transaction call with a deadline of its own: librdkafka's own timeout is not
    /// always kept (`send_offsets_to_transaction` was seen blocked for minutes after the group
    /// coordinator's broker was killed: confluentinc/librdkafka#5456, #5511), and a task blocked
    /// there holds its lane until the stall timeout. The call runs on a thread of its own; past
    /// [`OUTER_DEADLINE`] the task fails (transient) and the lane's producer is dropped, never
    /// aborted: whatever the call did, the next owner's `init_transactions` completes or aborts
    /// the transaction, and the group's progress tells which. The blocked thread ends when
    /// librdkafka returns.
    fn bounded<T: Send + 'static>(
        &mut self,
        what: &str,
        call: impl FnOnce(&ThreadedProducer<DeliveryTracker>) -> T + Send + 'static,
    ) -> Result<T, TaskError> {
        let (answer, answered) = std::sync::mpsc::channel();
        let producer = self.producer.clone();
        let spawned = std::thread::Builder::new().name("weir-txn-call".into()).spawn(move || {
            let _ = answer.send(call(producer.client()));
        });
        let outcome = match spawned {
            Ok(_) => answered.recv_timeout(OUTER_DEADLINE).ok(),
            Err(_) => None,
        };
        outcome.ok_or_else(|| {
            self.state = State::Dropped;
            self.sink.drop_lane(self.lane, &self.producer);
            warn!(
                lane = self.lane,
                call = what,
                "A transaction call did not return in time; dropped the lane's producer"
            );
            TaskError::transient(format!(
                "{what} for lane {} did not return within {OUTER_DEADLINE:?}; the lane's \
                 producer is started again",
                self.lane
            ))
        })
    }

    /// Flushes, sends the offsets `at` (naming the lane) and commits the open transaction.
    fn commit(&mut self, at: &BTreeMap<TopicPartition, i64>) -> Result<(), TaskError> {
        let sink = self.sink;
        // Every record acknowledged first: then the commit's own flush has nothing to wait for
        // (it polls in 100 ms steps), and a failed record fails the task with its reason.
        self.producer.flush(&self.deliveries)?;
        let offsets = GroupProgress::offsets_at(at, self.lane);
        let metadata = sink.settings.group.metadata();
        let sent = self.bounded("send_offsets_to_transaction", move |client| {
            client.send_offsets_to_transaction(&offsets, &metadata, CALL_TIMEOUT)
        })?;
        if let Err(e) = sent {
            return Err(sink.failed(self, "send_offsets_to_transaction", e));
        }
        let mut attempt = 1;
        loop {
            let committed = self
                .bounded("commit_transaction", |client| client.commit_transaction(CALL_TIMEOUT))?;
            let Err(e) = committed else {
                self.state = State::Committed;
                sink.committed(self.lane, &self.producer, at);
                sink.settings.counters.committed();
                return Ok(());
            };
            // A retriable failure (a timeout) leaves the outcome open: commit again, never abort.
            // Not `common::retry`: this runs on a blocking thread, and librdkafka asks for the
            // same call again at once (each call already waits up to CALL_TIMEOUT).
            if Failure::of(&e) != Failure::Retriable || attempt >= COMMIT_ATTEMPTS {
                return Err(sink.failed(self, "commit_transaction", e));
            }
            warn!(lane = self.lane, attempt, error = %e, "Commit not confirmed; committing again");
            attempt += 1;
        }
    }
}

impl TaskOutput for TransactionOutput<'_> {
    fn write(&mut self, record: &Record<'_>) -> Result<u64, TaskError> {
        let partition = match self.sink.settings.partitioning {
            Partitioning::Key => None,
            Partitioning::SameAsInput => Some(record.partition),
        };
        self.producer.send(&self.deliveries, &self.sink.settings.topic, partition, record, &[])?;
        self.written(record)?;
        Ok(record_bytes(record))
    }

    fn write_dead_letter(&mut self, record: &Record<'_>, reason: &str) -> Result<(), TaskError> {
        let Some(gate) = &self.sink.settings.dead_letter_gate else {
            return Err(dead_letters::no_dead_letter_topic(record));
        };
        let admission = self.dead_letters.get_or_insert_with(|| gate.admission());
        let letter = dead_letters::fit(record, reason, Some(admission));
        let headers = letter.extra_headers();
        self.producer.send(&self.deliveries, gate.topic(), None, &letter.record, &headers)?;
        self.written(record)
    }

    fn finish(mut self: Box<Self>) -> Result<(), TaskError> {
        let ends: BTreeMap<TopicPartition, i64> =
            self.ranges.iter().map(|r| (r.topic_partition().clone(), r.until())).collect();
        self.commit(&ends)
    }
}

impl Drop for TransactionOutput<'_> {
    fn drop(&mut self) {
        if self.state != State::Open {
            return;
        }
        // The task failed or was cancelled: abort, so read_committed readers never see its
        // records. If even the abort fails, the producer is dropped; the next owner's init aborts
        // the transaction.
        match self.producer.client().abort_transaction(CALL_TIMEOUT) {
            Ok(()) => self.sink.settings.counters.aborted(),
            Err(e) => {
                warn!(lane = self.lane, error = %e, "Abort failed; dropping the lane's producer");
                self.sink.drop_lane(self.lane, &self.producer);
            }
        }
    }
}

/// The next offset of each input partition after the records written so far, found by
/// partition number first: a lane's task reads many partitions, and this is noted per record.
#[derive(Default)]
struct WrittenTo {
    by_partition: HashMap<i32, Vec<(String, i64)>>,
}

impl WrittenTo {
    fn note(&mut self, topic: &str, partition: i32, next: i64) {
        let topics = self.by_partition.entry(partition).or_default();
        match topics.iter_mut().find(|(t, _)| t == topic) {
            Some((_, at)) => *at = next,
            None => topics.push((topic.to_owned(), next)),
        }
    }

    fn to_map(&self) -> BTreeMap<TopicPartition, i64> {
        let entries = self.by_partition.iter().flat_map(|(&partition, topics)| {
            topics
                .iter()
                .map(move |(topic, at)| (TopicPartition::new(topic.as_str(), partition), *at))
        });
        entries.collect()
    }
}

/// What a failed transaction call means for the producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The transaction must be aborted; the producer is fine.
    Abortable,
    /// Another producer with the lane's id was initialised: this one can do nothing more.
    Fenced,
    /// Worth calling again (a timeout): the outcome is not known yet.
    Retriable,
    /// Anything else: the producer's state is not known, so it is not used again.
    Ambiguous,
}

impl Failure {
    fn of(e: &KafkaError) -> Failure {
        let KafkaError::Transaction(error) = e else { return Failure::Ambiguous };
        let fenced = matches!(
            error.code(),
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
        );
        if fenced {
            Failure::Fenced
        } else if error.is_fatal() {
            Failure::Ambiguous
        } else if error.txn_requires_abort() {
            Failure::Abortable
        } else if error.is_retriable() {
            Failure::Retriable
        } else {
            Failure::Ambiguous
        }
    }
}
