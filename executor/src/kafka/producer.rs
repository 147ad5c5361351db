//! The executor's Kafka producer: one per executor and cluster, reused by every task, made at
//! the first task that needs it ([`LazyProducer`]), when the limits of the topics it writes are
//! known. Each task counts its own deliveries, and a task is done only when all its records are
//! acknowledged. Each record's delivery opaque is a small box holding the task's counter and
//! the record's source position, so a delivery that fails names the input record.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use weir_common::failure::FailureKind;
use weir_common::{OffsetRange, Record};

use crate::error::TaskError;
use crate::sink::admission::{TopicGate, fit_batches};

/// How long a task's flush may take before the task fails (retryable).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// The most a lane's transactional producer keeps queued, in KiB.
const LANE_QUEUE_KBYTES: u32 = 16 * 1024;
/// How long librdkafka tries to deliver one record before it reports the record failed.
const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// One task's deliveries.
#[derive(Default)]
pub struct Deliveries {
    /// The task's input ranges, to name a record whose delivery failed.
    ranges: Vec<OffsetRange>,
    sent: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    /// The first delivery error, classified: its kind decides whether the task is run again.
    first_error: Mutex<Option<TaskError>>,
    /// Signalled on every delivery report, so a finishing task wakes as soon as its own records
    /// are acknowledged (a producer-wide flush would wait for every task's records, and polls).
    reported: Condvar,
}

impl Deliveries {
    /// The deliveries of a task that reads `ranges`.
    pub fn for_ranges(ranges: &[OffsetRange]) -> Arc<Self> {
        Arc::new(Deliveries { ranges: ranges.to_vec(), ..Deliveries::default() })
    }

    fn settled(&self) -> u64 {
        self.acked.load(Ordering::Acquire) + self.failed.load(Ordering::Acquire)
    }

    /// `topic-partition@offset` of an input record of this task.
    fn source(&self, partition: i32, offset: i64) -> String {
        let range = self.ranges.iter().find(|r| {
            r.topic_partition().partition == partition && (r.from()..r.until()).contains(&offset)
        });
        match range {
            Some(r) => format!("{}-{partition}@{offset}", r.topic_partition().topic),
            None => format!("partition {partition}@{offset}"),
        }
    }
}

/// What librdkafka hands back with a record's delivery report.
pub struct Sent {
    deliveries: Arc<Deliveries>,
    /// The source record's partition and offset.
    partition: i32,
    offset: i64,
}

pub struct DeliveryTracker;

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = Box<Sent>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Sent>) {
        let Sent { deliveries, partition, offset } = *sent;
        match result {
            Ok(_) => {
                deliveries.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, message)) => {
                deliveries.failed.fetch_add(1, Ordering::Relaxed);
                deliveries.first_error.lock().expect("delivery error").get_or_insert_with(|| {
                    let record = deliveries.source(partition, offset);
                    let to = match message.partition() {
                        p if p >= 0 => format!("{}-{p}", message.topic()),
                        _ => message.topic().to_owned(),
                    };
                    TaskError::kafka(format_args!("record {record} was not delivered to {to}"), e)
                });
            }
        }
        // Taking the lock orders this notification after a waiter's check of the counts.
        let _guard = deliveries.first_error.lock().expect("delivery error");
        deliveries.reported.notify_all();
    }
}

#[derive(Clone)]
pub struct SharedProducer {
    producer: Arc<ThreadedProducer<DeliveryTracker>>,
    brokers: String,
}

impl SharedProducer {
    /// A transactional producer for one lane: `transactional.id` is the lane's stable id, so a
    /// new owner's `init_transactions` fences every older producer of the lane. Its message
    /// timeout stays within the transaction timeout, as librdkafka requires.
    pub fn transactional(
        mut config: ClientConfig,
        brokers: &str,
        transactional_id: &str,
        transaction_timeout: Duration,
    ) -> Result<Self, TaskError> {
        let timeout_ms = transaction_timeout.as_millis().to_string();
        let message_timeout_ms = transaction_timeout.min(DEFAULT_MESSAGE_TIMEOUT).as_millis();
        if config.get("queue.buffering.max.kbytes").is_none() {
            // librdkafka queues up to 1 GiB per producer by default; with a producer per lane
            // that would let an executor's memory grow with its lanes. A full queue makes `send`
            // wait, which slows the reader: backpressure.
            config.set("queue.buffering.max.kbytes", LANE_QUEUE_KBYTES.to_string());
        }
        config
            .set("transactional.id", transactional_id)
            .set("transaction.timeout.ms", timeout_ms)
            .set("message.timeout.ms", message_timeout_ms.to_string());
        Self::new(config, brokers)
    }

    /// The librdkafka producer, for the transaction calls.
    pub fn client(&self) -> &ThreadedProducer<DeliveryTracker> {
        &self.producer
    }

    /// Messages librdkafka holds for this producer, not yet acknowledged (queued or in flight).
    pub fn queued(&self) -> u64 {
        u64::try_from(self.producer.in_flight_count()).unwrap_or(0)
    }

    /// Whether `other` is this very producer (not another one with the same settings).
    pub fn same_as(&self, other: &SharedProducer) -> bool {
        Arc::ptr_eq(&self.producer, &other.producer)
    }

    /// An idempotent producer: retries inside librdkafka never duplicate or reorder a record.
    pub fn new(mut config: ClientConfig, brokers: &str) -> Result<Self, TaskError> {
        config.set("enable.idempotence", "true").set("acks", "all");
        if config.get("linger.ms").is_none() {
            config.set("linger.ms", "5");
        }
        if config.get("message.timeout.ms").is_none() {
            // librdkafka's 5 minutes would hold a task that can never deliver (a missing output
            // topic) for that long; fail it sooner, retryably, with the reason.
            config.set("message.timeout.ms", DEFAULT_MESSAGE_TIMEOUT.as_millis().to_string());
        }
        let producer = config.create_with_context(DeliveryTracker).map_err(|e| {
            TaskError::kafka(format_args!("cannot create a producer for {brokers}"), &e)
        })?;
        Ok(SharedProducer { producer: Arc::new(producer), brokers: brokers.to_owned() })
    }

    /// Queues one record (waiting while librdkafka's queue is full) with `extra_headers` after
    /// its own; `partition` `None` lets the partitioner choose by key.
    pub fn send(
        &self,
        deliveries: &Arc<Deliveries>,
        topic: &str,
        partition: Option<i32>,
        record: &Record<'_>,
        extra_headers: &[(&str, &[u8])],
    ) -> Result<(), TaskError> {
        let sent = Sent {
            deliveries: deliveries.clone(),
            partition: record.partition,
            offset: record.offset,
        };
        let mut message = BaseRecord::with_opaque_to(topic, Box::new(sent));
        if let Some(key) = record.key.as_deref() {
            message = message.key(key);
        }
        if let Some(payload) = record.payload.as_deref() {
            message = message.payload(payload);
        }
        if let Some(p) = partition {
            message = message.partition(p);
        }
        if let Some(ts) = record.timestamp_ms {
            message = message.timestamp(ts);
        }
        if !record.headers.is_empty() || !extra_headers.is_empty() {
            let capacity = record.headers.len() + extra_headers.len();
            let mut headers = OwnedHeaders::new_with_capacity(capacity);
            for h in &record.headers {
                headers = headers.insert(KafkaHeader { key: &h.key, value: h.value.as_deref() });
            }
            for &(key, value) in extra_headers {
                headers = headers.insert(KafkaHeader { key, value: Some(value) });
            }
            message = message.headers(headers);
        }
        deliveries.sent.fetch_add(1, Ordering::Relaxed);
        loop {
            match self.producer.send(message) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    message = returned;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => {
                    deliveries.sent.fetch_sub(1, Ordering::Relaxed);
                    let record = format!("{}-{}@{}", record.topic, record.partition, record.offset);
                    let context = format_args!("producing record {record} to {topic}");
                    return Err(TaskError::kafka(context, &e));
                }
            }
        }
    }

    /// Waits until every record of `deliveries` is acknowledged; fails if any was not.
    pub fn flush(&self, deliveries: &Deliveries) -> Result<(), TaskError> {
        let sent = deliveries.sent.load(Ordering::Acquire);
        let deadline = std::time::Instant::now() + FLUSH_TIMEOUT;
        let mut guard = deliveries.first_error.lock().expect("delivery error");
        while deliveries.settled() < sent {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(TaskError::transient(format!(
                    "only {} of {sent} records acknowledged by {} after {FLUSH_TIMEOUT:?}",
                    deliveries.settled(),
                    self.brokers
                )));
            }
            guard = deliveries.reported.wait_timeout(guard, left).expect("delivery error").0;
        }
        let failed = deliveries.failed.load(Ordering::Acquire);
        if failed > 0 {
            let (kind, first) = match guard.clone() {
                Some(first) => (first.kind, first.message),
                None => (FailureKind::Transient, String::new()),
            };
            return Err(TaskError {
                kind,
                message: format!(
                    "{failed} of {sent} records were not delivered to {}: {first}",
                    self.brokers
                ),
            });
        }
        Ok(())
    }
}

/// The executor's shared producer for one cluster, made at the first task that needs it: by
/// then the limits of the topics it writes (`gates`) are read, and its `batch.size` fits them
/// (`admission::fit_batches`). Producer properties cannot change once it is made.
pub struct LazyProducer {
    config: ClientConfig,
    brokers: String,
    gates: Vec<Arc<TopicGate>>,
    made: OnceLock<SharedProducer>,
    making: Mutex<()>,
}

impl LazyProducer {
    pub fn new(config: ClientConfig, brokers: &str, gates: Vec<Arc<TopicGate>>) -> Self {
        LazyProducer {
            config,
            brokers: brokers.to_owned(),
            gates,
            made: OnceLock::new(),
            making: Mutex::new(()),
        }
    }

    /// The producer, made now if it is the first call. Blocks (reads topic configs): call it
    /// from a task's thread.
    pub fn get(&self) -> Result<SharedProducer, TaskError> {
        if let Some(made) = self.made.get() {
            return Ok(made.clone());
        }
        let _making = self.making.lock().expect("making the producer");
        if let Some(made) = self.made.get() {
            return Ok(made.clone());
        }
        let mut config = self.config.clone();
        let gates: Vec<&TopicGate> = self.gates.iter().map(Arc::as_ref).collect();
        fit_batches(&mut config, &gates);
        let made = SharedProducer::new(config, &self.brokers)?;
        Ok(self.made.get_or_init(|| made).clone())
    }

    /// Messages waiting in its queue; 0 before it is made.
    pub fn queued(&self) -> u64 {
        self.made.get().map_or(0, SharedProducer::queued)
    }
}
