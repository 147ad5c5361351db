//! A job's executor-side state, built from the driver's effective config: the transform pipeline,
//! the sink, the dead-letter writer, the consumer cache, the shared producers and the gates that
//! know the limits of the topics the sink writes. Built once per config and reused by every task
//! and across reconnects (so caches stay warm); rebuilt only if the config changes. Building
//! never waits on Kafka: producers and topic limits are made and read at the first task that
//! needs them, on its thread.

use std::sync::Arc;

use weir_common::config::{Guarantee, JobConfig, Partitioning, SinkKind, secrets};
use weir_common::transform::{OnRecordError, Pipeline, TransformRegistry};

use crate::error::TaskError;
use crate::kafka::client_config;
use crate::kafka::group::GroupProgress;
use crate::kafka::lane_reader::ConsumerCache;
use crate::kafka::producer::LazyProducer;
use crate::metrics::TransactionCounters;
use crate::sink::Sink;
use crate::sink::admission::{KafkaLimits, LimitReader, ProducerLimits, TopicGate};
use crate::sink::dead_letters::DeadLetters;
use crate::sink::file::FileSink;
use crate::sink::kafka::KafkaSink;
use crate::sink::stdout::StdoutSink;
use crate::sink::transactional::{TransactionalSettings, TransactionalSink};

pub struct JobContext {
    pub config_toml: String,
    pub config: JobConfig,
    pub pipeline: Pipeline,
    pub sink: Box<dyn Sink>,
    /// The Kafka sink's output topic and what it accepts: a task checks every record against
    /// it before writing, and a refused record follows `on_record_error`.
    pub output_gate: Option<Arc<TopicGate>>,
    /// Dead letters outside the sink's own unit of work (every sink but the transactional one).
    pub dead_letters: Option<DeadLetters>,
    pub on_record_error: OnRecordError,
    pub consumers: ConsumerCache,
    /// The idempotent producer the sink and the dead letters share, or the dead letters' own
    /// (the exactly-once sink's lane producers are the sink's own).
    producer: Option<Arc<LazyProducer>>,
}

impl JobContext {
    /// Builds the context; an error here is the config's fault, so tasks fail non-retryably.
    /// The exactly-once sink counts its transactions in `transactions`.
    pub fn build(
        config_toml: &str,
        registry: &TransformRegistry,
        transactions: TransactionCounters,
    ) -> Result<Arc<Self>, TaskError> {
        let config = JobConfig::from_toml_str(config_toml)
            .map_err(|e| TaskError::config(format!("the driver's config is invalid here: {e}")))?;
        // Secret references resolve from this executor's own environment and files.
        secrets::check("source.kafka", &config.source.kafka)
            .and_then(|()| secrets::check("sink.kafka", &config.sink.kafka))
            .map_err(|e| TaskError::config(format!("on this executor: {e}")))?;
        let pipeline = Pipeline::build(&config.transform, registry)
            .map_err(|e| TaskError::config(e.to_string()))?;
        let source = &config.source;
        let sink_brokers = config.sink.brokers(source).to_owned();
        let on_record_error = config.transform.on_record_error;
        let exactly_once = config.sink.guarantee == Guarantee::ExactlyOnce;
        let kafka_sink = config.sink.kind == SinkKind::Kafka;
        // Dead letters go to the sink's cluster when the sink is Kafka, else the source's, with
        // its properties (a file or stdout sink has no `[sink.kafka]`: the source's security
        // settings are the ones that cluster takes).
        let dead_letter_brokers = if kafka_sink { &sink_brokers } else { &source.brokers };
        let dead_letter_properties = if kafka_sink { &config.sink.kafka } else { &source.kafka };
        let producer_limits = ProducerLimits::of(&config.sink.kafka);
        let limits_on = |brokers: &str, properties| -> Arc<dyn LimitReader> {
            Arc::new(KafkaLimits::new(client_config(brokers, properties), brokers))
        };
        // One reader (one admin client, made at its first read) per cluster.
        let sink_limits = limits_on(&sink_brokers, &config.sink.kafka);
        let output_gate = match (kafka_sink, &config.sink.topic) {
            (false, _) => None,
            (true, None) => return Err(TaskError::config("sink.topic: missing")),
            (true, Some(topic)) => {
                let reader = sink_limits.clone();
                let partitioning = config.sink.partitioning;
                Some(Arc::new(TopicGate::new(topic, partitioning, producer_limits, reader)))
            }
        };
        let dead_letter_gate = match (on_record_error, &config.transform.dead_letter_topic) {
            (OnRecordError::DeadLetter, Some(topic)) => {
                let reader = if kafka_sink {
                    sink_limits.clone()
                } else {
                    limits_on(dead_letter_brokers, dead_letter_properties)
                };
                Some(Arc::new(TopicGate::new(topic, Partitioning::Key, producer_limits, reader)))
            }
            _ => None,
        };
        // One shared producer: the sink's (when it is Kafka but not exactly-once), which also
        // writes the dead letters, or the dead letters' own.
        let shared_gates: Vec<Arc<TopicGate>> = match (&output_gate, exactly_once) {
            (Some(output), false) => {
                [Some(output), dead_letter_gate.as_ref()].into_iter().flatten().cloned().collect()
            }
            (Some(_), true) => Vec::new(),
            (None, _) => dead_letter_gate.iter().cloned().collect(),
        };
        let producer = (!shared_gates.is_empty()).then(|| {
            let brokers = if kafka_sink { &sink_brokers } else { dead_letter_brokers };
            let config = client_config(brokers, dead_letter_properties);
            Arc::new(LazyProducer::new(config, brokers, shared_gates))
        });
        let sink: Box<dyn Sink> = match config.sink.kind {
            SinkKind::Kafka => {
                let output_gate = output_gate.clone().expect("a Kafka sink has a topic");
                let topic = output_gate.topic().to_owned();
                let partitioning = config.sink.partitioning;
                if exactly_once {
                    // Validation keeps the sink on the source's cluster: the group's offsets
                    // and the output share one transaction.
                    let group = format!("weir.{}", config.job.name);
                    let group_config = client_config(&sink_brokers, &source.kafka);
                    Box::new(TransactionalSink::new(TransactionalSettings {
                        job: config.job.name.clone(),
                        producer_config: client_config(&sink_brokers, &config.sink.kafka),
                        brokers: sink_brokers.clone(),
                        topic,
                        partitioning,
                        output_gate,
                        // Dead letters go inside each task's transaction.
                        dead_letter_gate: dead_letter_gate.clone(),
                        transaction_timeout: config.sink.transaction_timeout,
                        group: GroupProgress::new(group_config, &group)?,
                        counters: transactions,
                    }))
                } else {
                    let producer = producer.clone().expect("the sink's shared producer");
                    Box::new(KafkaSink::new(producer, topic, partitioning))
                }
            }
            SinkKind::File => {
                let dir = config
                    .sink
                    .path
                    .clone()
                    .ok_or_else(|| TaskError::config("sink.path: missing"))?;
                Box::new(FileSink::new(dir)?)
            }
            SinkKind::Stdout => Box::new(StdoutSink),
        };
        let dead_letters = match (dead_letter_gate, &producer) {
            (Some(gate), Some(producer)) if !(kafka_sink && exactly_once) => {
                Some(DeadLetters::new(producer.clone(), gate))
            }
            _ => None,
        };
        let mut consumer_config = client_config(&source.brokers, &source.kafka);
        if consumer_config.get("group.id").is_none() {
            // librdkafka wants a group for `assign`; nothing is ever committed to it.
            consumer_config.set("group.id", format!("weir.{}.readers", config.job.name));
        }
        let consumers = ConsumerCache::new(consumer_config, source.on_data_loss);
        Ok(Arc::new(JobContext {
            config_toml: config_toml.to_owned(),
            config,
            pipeline,
            sink,
            output_gate,
            dead_letters,
            on_record_error,
            consumers,
            producer,
        }))
    }

    /// Messages waiting in the queues of every producer of this job: the shared one and the
    /// sink's own.
    pub fn queued_messages(&self) -> u64 {
        self.sink.queued_messages() + self.producer.as_ref().map_or(0, |p| p.queued())
    }
}
