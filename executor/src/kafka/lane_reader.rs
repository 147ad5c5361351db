//! Reads a task's offset ranges (one lane: one range per partition, several partitions) through
//! one consumer, handing each record to a callback without holding the ranges in memory. One
//! consumer per lane is kept between tasks, so an executor has a Kafka consumer per lane it
//! runs, not per partition it ever read.
//!
//! Between tasks the consumer keeps fetching, as a plain consumer loop would: the lane's next
//! task finds its records already in memory. A record that arrives for a partition whose range
//! is read (or that is not in this task) belongs to a later task: it is kept in the partition's
//! stash, in order, and handed out first next time. When the lane's stashes pass
//! [`STASH_BYTES`], such a partition is paused instead: librdkafka then drops what it prefetched
//! for it and, on resume, fetches again after the last record it handed out, which is the
//! stash's end. When a task starts a partition anywhere but where the lane stands (another
//! executor ran the lane meanwhile, an error), the consumer is re-assigned at the ranges' starts.
//!
//! Invariant kept here: the callback sees every visible record with `from <= offset < until`
//! of each range once, in offset order within its partition, and nothing else; reading a range
//! stops at `until` even when offsets have gaps (compaction, transaction markers, aborted
//! records under `read_committed`).

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use weir_common::batch::LaneId;
use weir_common::config::OnDataLoss;
use weir_common::{Header, OffsetRange, Record, TopicPartition};

use crate::error::TaskError;

/// A lane that delivers nothing for this long fails (retryable): the broker is gone or stuck.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
/// After an end-of-partition event that may be stale, how long records may take to follow before
/// the reader seeks to make sure. A seek is what costs: it must wait for the fetch in flight,
/// which the broker may hold for `fetch.wait.max.ms` when it waits for new records.
const STALE_EOF_GRACE: Duration = Duration::from_millis(100);
/// How long a seek may wait for the fetcher to take the new position.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);
/// A lane's consumer unused this long is closed: the lane has moved to another executor, or
/// the lane map was regrouped.
const IDLE_CONSUMER: Duration = Duration::from_secs(120);
/// The most bytes of records a lane keeps for later tasks (beside librdkafka's own prefetch,
/// `queued.max.messages.kbytes`); past it, partitions are paused instead.
const STASH_BYTES: usize = 8 << 20;

/// librdkafka reports the end of a partition as an error; for a range reader it is a normal
/// event (handled in [`LaneRead`]), so it is not logged as one.
pub struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let end_of_partition = matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF);
        if end_of_partition {
            tracing::trace!(reason, "End of partition");
        } else {
            tracing::warn!(error = %error, reason, "Kafka consumer error");
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// One assigned partition of a lane's consumer, between tasks and during one.
#[derive(Default)]
struct Assigned {
    /// Every visible record before this offset has been handed out; the next task of the lane
    /// must start here to use the consumer as it stands. `None`: not known (re-assign).
    position: Option<i64>,
    /// Records at or past `position` taken from the consumer and not handed out yet, in order.
    stash: VecDeque<OwnedMessage>,
    paused: bool,
}

/// A lane's consumer between tasks.
struct LaneConsumer {
    consumer: BaseConsumer<ReaderContext>,
    assigned: HashMap<TopicPartition, Assigned>,
    stash_bytes: usize,
    last_used: Instant,
}

impl LaneConsumer {
    /// Makes the consumer deliver each range's partition from the range's start: as it stands
    /// when every partition is assigned and stands there (paused ones are resumed), assigned
    /// afresh at the ranges' starts otherwise. Returns whether it was assigned afresh.
    fn position_at(&mut self, ranges: &[&OffsetRange]) -> Result<bool, TaskError> {
        let resumable = ranges.iter().all(|r| {
            self.assigned.get(r.topic_partition()).and_then(|a| a.position) == Some(r.from())
        });
        if !resumable {
            let at = ranges.iter().map(|r| (r.topic_partition(), r.from()));
            assign_afresh(&self.consumer, &mut self.assigned, &mut self.stash_bytes, at)?;
            return Ok(true);
        }
        let paused: Vec<&TopicPartition> = ranges
            .iter()
            .map(|r| r.topic_partition())
            .filter(|tp| self.assigned[*tp].paused)
            .collect();
        if !paused.is_empty() {
            let list = partition_list(paused.iter().map(|&tp| (tp, None)))?;
            self.consumer.resume(&list).map_err(|e| {
                TaskError::kafka(format_args!("cannot resume {}", names(ranges)), &e)
            })?;
            for tp in paused {
                self.assigned.get_mut(tp).expect("assigned").paused = false;
            }
        }
        Ok(false)
    }

    /// Forgets where the consumer stands: the next task re-assigns.
    fn forget_positions(&mut self) {
        for a in self.assigned.values_mut() {
            a.position = None;
            a.stash.clear();
        }
        self.stash_bytes = 0;
    }
}

pub struct ConsumerCache {
    config: ClientConfig,
    on_data_loss: OnDataLoss,
    idle: Mutex<HashMap<LaneId, LaneConsumer>>,
}

impl ConsumerCache {
    pub fn new(mut config: ClientConfig, on_data_loss: OnDataLoss) -> Self {
        if config.get("queued.max.messages.kbytes").is_none() {
            // What one lane's consumer prefetches, all its partitions together (librdkafka's
            // default is 64 MiB).
            config.set("queued.max.messages.kbytes", "32768");
        }
        if config.get("fetch.max.bytes").is_none() {
            // Large fetches: a lane reads many partitions from one broker per request.
            config.set("fetch.max.bytes", "16777216");
        }
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // librdkafka's "none": a position outside the log is an error, never a silent jump.
            .set("auto.offset.reset", "error")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true");
        ConsumerCache { config, on_data_loss, idle: Mutex::new(HashMap::new()) }
    }

    /// Reads `ranges` (the lane's task: at most one range per partition), calling `on_record`
    /// for each record, partitions interleaved. Stops early, with an error, when `cancel` is set
    /// or `on_record` fails. Returns how many records of the ranges Kafka no longer held and
    /// were skipped (`source.on_data_loss = "skip"`; with `"fail"` that is an error).
    pub fn read(
        &self,
        lane: LaneId,
        ranges: &[OffsetRange],
        cancel: &AtomicBool,
        mut on_record: impl FnMut(&Record<'_>) -> Result<(), TaskError>,
    ) -> Result<u64, TaskError> {
        let ranges: Vec<&OffsetRange> = ranges.iter().filter(|r| !r.is_empty()).collect();
        if ranges.is_empty() {
            return Ok(0);
        }
        let mut lane_consumer = self.checkout(lane)?;
        let result = LaneRead::start(&mut lane_consumer, &ranges, self.on_data_loss)
            .and_then(|mut read| read.run(cancel, &mut on_record));
        if result.is_err() {
            lane_consumer.forget_positions();
        }
        self.check_in(lane, lane_consumer);
        result
    }

    /// Positions the lane's consumer for `ranges` without reading, so it connects and fetches
    /// while the task does its other set-up (a new lane producer's `init_transactions`). Best
    /// effort: [`ConsumerCache::read`] positions it again if needed.
    pub fn prepare(&self, lane: LaneId, ranges: &[OffsetRange]) {
        let ranges: Vec<&OffsetRange> = ranges.iter().filter(|r| !r.is_empty()).collect();
        if ranges.is_empty() {
            return;
        }
        let Ok(mut lane_consumer) = self.checkout(lane) else { return };
        if let Err(e) = lane_consumer.position_at(&ranges) {
            tracing::debug!(lane, error = %e, "Could not position the lane's consumer ahead");
            lane_consumer.forget_positions();
        }
        self.check_in(lane, lane_consumer);
    }

    fn check_in(&self, lane: LaneId, mut lane_consumer: LaneConsumer) {
        lane_consumer.last_used = Instant::now();
        self.idle.lock().expect("consumer cache").insert(lane, lane_consumer);
    }

    fn checkout(&self, lane: LaneId) -> Result<LaneConsumer, TaskError> {
        let mut idle = self.idle.lock().expect("consumer cache");
        idle.retain(|_, c| c.last_used.elapsed() < IDLE_CONSUMER);
        if let Some(cached) = idle.remove(&lane) {
            return Ok(cached);
        }
        drop(idle);
        let consumer = self.config.create_with_context(ReaderContext).map_err(|e| {
            TaskError::kafka(format_args!("cannot create a consumer for lane {lane}"), &e)
        })?;
        Ok(LaneConsumer {
            consumer,
            assigned: HashMap::new(),
            stash_bytes: 0,
            last_used: Instant::now(),
        })
    }
}

/// Where one range stands during a read.
struct Reading<'r> {
    range: &'r OffsetRange,
    position: i64,
    /// Whether the fetcher was positioned during this read, so an end-of-partition event it
    /// reports is proof that nothing visible is left before `until` (see [`LaneRead::run`]).
    seeked: bool,
    /// An end-of-partition event that may be stale: usually records already fetched follow it.
    unproven_eof: Option<Instant>,
    done: bool,
}

struct LaneRead<'c, 'r> {
    consumer: &'c BaseConsumer<ReaderContext>,
    /// The lane consumer's partitions and stashes.
    assigned: &'c mut HashMap<TopicPartition, Assigned>,
    stash_bytes: &'c mut usize,
    ranges: Vec<Reading<'r>>,
    /// Index into `ranges` by partition number (a lane may read several topics).
    by_partition: HashMap<i32, Vec<usize>>,
    on_data_loss: OnDataLoss,
    lost: u64,
    left: usize,
}

impl<'c, 'r> LaneRead<'c, 'r> {
    /// Uses the consumer as it stands when every range starts where the lane stands in its
    /// partition (paused partitions of the task are resumed); re-assigns it at the ranges'
    /// starts otherwise.
    fn start(
        lane: &'c mut LaneConsumer,
        ranges: &[&'r OffsetRange],
        on_data_loss: OnDataLoss,
    ) -> Result<Self, TaskError> {
        let resumable = !lane.position_at(ranges)?;
        let mut by_partition: HashMap<i32, Vec<usize>> = HashMap::new();
        let readings: Vec<Reading<'r>> = ranges
            .iter()
            .enumerate()
            .map(|(i, &range)| {
                by_partition.entry(range.partition()).or_default().push(i);
                Reading {
                    range,
                    position: range.from(),
                    // A fetcher left running may hold an end-of-partition event from before.
                    seeked: !resumable,
                    unproven_eof: None,
                    done: false,
                }
            })
            .collect();
        let left = readings.len();
        let LaneConsumer { consumer, assigned, stash_bytes, .. } = lane;
        Ok(LaneRead {
            consumer,
            assigned,
            stash_bytes,
            ranges: readings,
            by_partition,
            on_data_loss,
            lost: 0,
            left,
        })
    }

    fn index_of(&self, topic: &str, partition: i32) -> Option<usize> {
        self.by_partition
            .get(&partition)?
            .iter()
            .copied()
            .find(|&i| self.ranges[i].range.topic() == topic)
    }

    /// Reads until every range is done: first what the partitions' stashes hold, then from the
    /// consumer. An end-of-partition event says the fetcher reached the end of the log *then*;
    /// one queued before this read may be older than records still to come. Only an EOF that
    /// follows a seek made during this read is proof that the range is complete: after the seek
    /// the fetcher delivers every record from `position` on before it can report an end, and
    /// that end is at or past `until`. An unproven EOF is first given STALE_EOF_GRACE for
    /// records to follow, and only then answered with a seek.
    fn run(
        &mut self,
        cancel: &AtomicBool,
        on_record: &mut impl FnMut(&Record<'_>) -> Result<(), TaskError>,
    ) -> Result<u64, TaskError> {
        for i in 0..self.ranges.len() {
            self.hand_out_stash(i, on_record)?;
        }
        let mut last_progress = Instant::now();
        // Whether a range may hold an unproven end-of-partition event: only then are the ranges
        // scanned for one (a scan per record would cost a lane of many partitions dearly).
        let mut waiting_on_eof = false;
        while self.left > 0 {
            if cancel.load(Ordering::Relaxed) {
                return Err(TaskError::transient("cancelled"));
            }
            if waiting_on_eof {
                waiting_on_eof = self.answer_stale_eofs()?;
            }
            let wait = if waiting_on_eof { POLL / 5 } else { POLL };
            let consumer = self.consumer;
            let Some(event) = consumer.poll(wait) else {
                self.check_stall(last_progress)?;
                continue;
            };
            match event {
                Ok(m) => {
                    let index = self.index_of(m.topic(), m.partition());
                    let Some(i) = index.filter(|&i| !self.ranges[i].done) else {
                        // A partition this task does not read (any more): keep it for later.
                        self.keep(m.topic(), m.partition(), m.offset(), || m.detach())?;
                        continue;
                    };
                    let r = &mut self.ranges[i];
                    let offset = m.offset();
                    if offset < r.position {
                        continue;
                    }
                    if offset >= r.range.until() {
                        // A gap reached past `until`: the record belongs to a later range.
                        self.finish(i);
                        self.keep(m.topic(), m.partition(), offset, || m.detach())?;
                        continue;
                    }
                    on_record(&record_of(&m))?;
                    let r = &mut self.ranges[i];
                    r.position = offset + 1;
                    r.unproven_eof = None;
                    last_progress = Instant::now();
                    if r.position == r.range.until() {
                        self.finish(i);
                    }
                }
                Err(KafkaError::PartitionEOF(partition)) => {
                    // librdkafka names only the partition number here; a lane reading two topics
                    // with the same partition number treats the EOF as unproven for both.
                    let indices = self.by_partition.get(&partition).cloned().unwrap_or_default();
                    let proven = indices.len() == 1;
                    for i in indices {
                        let r = &mut self.ranges[i];
                        if r.done {
                            continue;
                        }
                        if r.seeked && proven {
                            // The rest of the range is a gap (transaction markers, aborted or
                            // compacted records): whatever comes next is at or past `until`.
                            self.finish(i);
                        } else {
                            r.unproven_eof.get_or_insert_with(Instant::now);
                            waiting_on_eof = true;
                        }
                    }
                }
                Err(e) => self.on_error(e, last_progress)?,
            }
        }
        Ok(self.lost)
    }

    /// Seeks each range whose unproven end-of-partition event has had STALE_EOF_GRACE without
    /// records following: the range may end in a gap, and only a seek proves it. Returns whether
    /// an event is still within its grace.
    fn answer_stale_eofs(&mut self) -> Result<bool, TaskError> {
        let mut waiting = false;
        for i in 0..self.ranges.len() {
            let r = &self.ranges[i];
            match r.unproven_eof {
                Some(at) if at.elapsed() >= STALE_EOF_GRACE => {
                    let position = r.position;
                    self.seek(i, position)?;
                }
                Some(_) => waiting = true,
                None => {}
            }
        }
        Ok(waiting)
    }

    /// Hands out the records range `i`'s partition kept from earlier reads, up to `until`.
    fn hand_out_stash(
        &mut self,
        i: usize,
        on_record: &mut impl FnMut(&Record<'_>) -> Result<(), TaskError>,
    ) -> Result<(), TaskError> {
        let range = self.ranges[i].range;
        let Some(assigned) = self.assigned.get_mut(range.topic_partition()) else {
            return Ok(());
        };
        while let Some(m) = assigned.stash.front() {
            if m.offset() >= range.until() {
                // The range ends in a gap: the rest is a later range's.
                self.finish(i);
                return Ok(());
            }
            on_record(&record_of(m))?;
            self.ranges[i].position = m.offset() + 1;
            let m = assigned.stash.pop_front().expect("front");
            *self.stash_bytes -= stash_size(&m);
            if self.ranges[i].position == range.until() {
                self.finish(i);
                return Ok(());
            }
        }
        Ok(())
    }

    /// Range `i` is read: the lane stands at its `until` in the partition.
    fn finish(&mut self, i: usize) {
        let r = &mut self.ranges[i];
        if r.done {
            return;
        }
        r.done = true;
        self.left -= 1;
        let until = r.range.until();
        if let Some(a) = self.assigned.get_mut(r.range.topic_partition()) {
            a.position = Some(until);
        }
    }

    /// Keeps a record of a partition this task is done with for a later task, after what its
    /// stash holds; pauses the partition once the lane keeps too much.
    fn keep(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        detach: impl FnOnce() -> OwnedMessage,
    ) -> Result<(), TaskError> {
        let found =
            self.assigned.iter_mut().find(|(tp, _)| tp.partition == partition && tp.topic == topic);
        let Some((tp, assigned)) = found else { return Ok(()) };
        let Some(position) = assigned.position else { return Ok(()) };
        let after = assigned.stash.back().map_or(position, |m| m.offset() + 1);
        if offset < after {
            return Ok(());
        }
        let m = detach();
        *self.stash_bytes += stash_size(&m);
        assigned.stash.push_back(m);
        if *self.stash_bytes > STASH_BYTES && !assigned.paused {
            let list = partition_list([(tp, None)])?;
            self.consumer
                .pause(&list)
                .map_err(|e| TaskError::kafka(format_args!("cannot pause {tp}"), &e))?;
            assigned.paused = true;
        }
        Ok(())
    }

    /// Positions range `i`'s fetcher at `offset`; records fetched before are not handed out.
    /// A partition whose fetcher stopped on an error refuses a seek: then the whole lane is
    /// re-assigned.
    fn seek(&mut self, i: usize, offset: i64) -> Result<(), TaskError> {
        let r = &mut self.ranges[i];
        r.position = offset;
        r.seeked = true;
        r.unproven_eof = None;
        let tp = r.range.topic_partition();
        match self.consumer.seek(&tp.topic, tp.partition, Offset::Offset(offset), SEEK_TIMEOUT) {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::debug!(partition = %tp, offset, error = %e, "Seek refused; re-assigning the lane");
                self.reassign()
            }
        }
    }

    /// Assigns the task's partitions afresh: each range not done at its position, each one done
    /// at its `until` (what the partitions kept is dropped, as are partitions not in the task).
    fn reassign(&mut self) -> Result<(), TaskError> {
        let at = self.ranges.iter().map(|r| {
            (r.range.topic_partition(), if r.done { r.range.until() } else { r.position })
        });
        assign_afresh(self.consumer, self.assigned, self.stash_bytes, at)?;
        for r in self.ranges.iter_mut().filter(|r| !r.done) {
            r.seeked = true;
            r.unproven_eof = None;
        }
        Ok(())
    }

    fn check_stall(&self, last_progress: Instant) -> Result<(), TaskError> {
        if last_progress.elapsed() <= STALL_TIMEOUT {
            return Ok(());
        }
        let waiting: Vec<String> = self
            .ranges
            .iter()
            .filter(|r| !r.done)
            .map(|r| {
                format!(
                    "{} at offset {} (reading {})",
                    r.range.topic_partition(),
                    r.position,
                    r.range
                )
            })
            .collect();
        Err(TaskError::transient(format!(
            "no record for {STALL_TIMEOUT:?} of {}",
            waiting.join(", ")
        )))
    }

    fn on_error(&mut self, e: KafkaError, last_progress: Instant) -> Result<(), TaskError> {
        // The connection state librdkafka reports and recovers from by itself (a broker away,
        // then back): the stall timeout still bounds the wait. Failing here would fail the task
        // on a stale event queued while the broker was down.
        if is_connection_state(&e) {
            return self.check_stall(last_progress);
        }
        if !is_out_of_range(&e) {
            let first = self.ranges.iter().find(|r| !r.done).expect("a range left");
            return Err(classify(e, first.range, first.position));
        }
        // Deleted after the batch was planned (retention, DeleteRecords). The event names no
        // partition here: ask each range still being read where its log starts now.
        let mut moved = false;
        for i in 0..self.ranges.len() {
            let r = &self.ranges[i];
            if r.done {
                continue;
            }
            let (range, position) = (r.range, r.position);
            let start = log_start(self.consumer, range.topic_partition())?;
            if start <= position {
                continue;
            }
            moved = true;
            self.skip_lost(i, start)?;
        }
        if !moved {
            let first = self.ranges.iter().find(|r| !r.done).expect("a range left");
            return Err(classify(e, first.range, first.position));
        }
        Ok(())
    }

    /// Offsets `[position, start)` of range `i`'s partition are gone from Kafka: skip them under
    /// `on_data_loss = "skip"`, fail otherwise.
    fn skip_lost(&mut self, i: usize, start: i64) -> Result<(), TaskError> {
        let r = &self.ranges[i];
        let (range, position) = (r.range, r.position);
        let tp = range.topic_partition();
        let until = range.until();
        let gone = start.min(until) - position;
        if self.on_data_loss == OnDataLoss::Fail {
            return Err(TaskError::data(format!(
                "offsets [{position}, {start}) of {tp} are no longer in Kafka: {gone} records of \
                 this task's range {range} are gone (retention or DeleteRecords). Set \
                 source.on_data_loss = \"skip\" to go on"
            )));
        }
        tracing::warn!(partition = %tp, from = position, until = start.min(until), records = gone,
            "Offsets no longer in Kafka; skipped (source.on_data_loss = \"skip\")");
        self.lost += gone as u64;
        if start >= until {
            // Where the fetcher stands after the error is not known: the next task seeks.
            self.finish(i);
            if let Some(a) = self.assigned.get_mut(tp) {
                a.position = None;
            }
            return Ok(());
        }
        self.seek(i, start)
    }
}

/// What a kept record costs: its key and payload.
fn stash_size(m: &OwnedMessage) -> usize {
    m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len) + 64
}

/// A record borrowing the message's buffers: nothing is copied here.
pub fn record_of<M: Message>(m: &M) -> Record<'_> {
    let headers = match m.headers() {
        Some(h) => h
            .iter()
            .map(|h| Header { key: Cow::Borrowed(h.key), value: h.value.map(Cow::Borrowed) })
            .collect(),
        None => Vec::new(),
    };
    Record {
        topic: m.topic(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(Cow::Borrowed),
        payload: m.payload().map(Cow::Borrowed),
        headers,
        timestamp_ms: m.timestamp().to_millis(),
    }
}

/// Assigns the consumer exactly the partitions `at` names, each to deliver from its offset;
/// what the lane kept (stashes, paused states) is dropped. Paused partitions stay paused across
/// an assign, so they are resumed first.
fn assign_afresh<'a>(
    consumer: &BaseConsumer<ReaderContext>,
    assigned: &mut HashMap<TopicPartition, Assigned>,
    stash_bytes: &mut usize,
    at: impl Iterator<Item = (&'a TopicPartition, i64)> + Clone,
) -> Result<(), TaskError> {
    let paused = assigned.iter().filter(|(_, a)| a.paused).map(|(tp, _)| (tp, None));
    let paused = partition_list(paused)?;
    if paused.count() > 0 {
        let _ = consumer.resume(&paused);
    }
    let list = partition_list(at.clone().map(|(tp, offset)| (tp, Some(offset))))?;
    consumer.assign(&list).map_err(|e| {
        let names: Vec<String> = at.clone().map(|(tp, _)| tp.to_string()).collect();
        TaskError::kafka(format_args!("cannot assign {}", names.join(", ")), &e)
    })?;
    *assigned = at
        .map(|(tp, offset)| {
            (tp.clone(), Assigned { position: Some(offset), ..Assigned::default() })
        })
        .collect();
    *stash_bytes = 0;
    Ok(())
}

fn partition_list<'a>(
    partitions: impl IntoIterator<Item = (&'a TopicPartition, Option<i64>)>,
) -> Result<TopicPartitionList, TaskError> {
    let mut list = TopicPartitionList::new();
    for (tp, offset) in partitions {
        match offset {
            Some(offset) => list
                .add_partition_offset(&tp.topic, tp.partition, Offset::Offset(offset))
                .map_err(|e| TaskError::kafka(tp, &e))?,
            None => {
                list.add_partition(&tp.topic, tp.partition);
            }
        }
    }
    Ok(list)
}

fn names(ranges: &[&OffsetRange]) -> String {
    let names: Vec<String> = ranges.iter().map(|r| r.topic_partition().to_string()).collect();
    names.join(", ")
}

fn is_connection_state(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::AllBrokersDown
                | C::BrokerTransportFailure
                | C::Resolve
                | C::BrokerNotAvailable
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::NetworkException
        )
    )
}

fn is_out_of_range(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::OffsetOutOfRange) | Some(RDKafkaErrorCode::AutoOffsetReset)
    )
}

/// The first offset still in the partition's log.
fn log_start(
    consumer: &BaseConsumer<ReaderContext>,
    tp: &TopicPartition,
) -> Result<i64, TaskError> {
    let (low, _) = consumer
        .fetch_watermarks(&tp.topic, tp.partition, Duration::from_secs(10))
        .map_err(|e| TaskError::kafka(format_args!("reading the log start of {tp}"), &e))?;
    Ok(low)
}

fn classify(e: KafkaError, range: &OffsetRange, position: i64) -> TaskError {
    let tp = range.topic_partition();
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::OffsetOutOfRange) | Some(RDKafkaErrorCode::AutoOffsetReset) => {
            TaskError::data(format!(
                "offsets [{position}, {}) of {tp} are not in Kafka any more (deleted by retention?): {e}",
                range.until()
            ))
        }
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
            TaskError::data(format!("{tp} does not exist any more: {e}"))
        }
        _ => TaskError::kafka(format_args!("reading {range}"), &e),
    }
}
