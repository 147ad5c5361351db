//! A job's executor-side state, built from the driver's effective config: the transform pipeline,
//! the sink, the dead-letter writer, the consumer cache and the shared producers. Built once per
//! config and reused by every task and across reconnects (so caches stay warm); rebuilt only if
//! the config changes.

use std::sync::Arc;

use weir_common::config::{Guarantee, JobConfig, SinkKind};
use weir_common::transform::{OnRecordError, Pipeline, TransformRegistry};

use crate::error::TaskError;
use crate::kafka::client_config;
use crate::kafka::group::GroupProgress;
use crate::kafka::producer::SharedProducer;
use crate::kafka::range_reader::ConsumerCache;
use crate::metrics::TransactionCounters;
use crate::sink::Sink;
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
    /// Dead letters outside the sink's own unit of work (every sink but the transactional one).
    pub dead_letters: Option<DeadLetters>,
    pub on_record_error: OnRecordError,
    pub consumers: ConsumerCache,
    /// The idempotent producers the sink and the dead letters share, each once (the
    /// exactly-once sink's lane producers are the sink's own).
    producers: Vec<SharedProducer>,
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
        let pipeline = Pipeline::build(&config.transform, registry)
            .map_err(|e| TaskError::config(e.to_string()))?;
        let source = &config.source;
        let sink_brokers = config.sink.brokers(source).to_owned();
        // One producer per cluster, shared by the sink and the dead letters when they match.
        let mut sink_producer = None;
        let mut producer_for = |brokers: &str| -> Result<SharedProducer, TaskError> {
            if let Some(p) = &sink_producer {
                return Ok(SharedProducer::clone(p));
            }
            let p = SharedProducer::new(client_config(brokers, &config.sink.kafka), brokers)?;
            sink_producer = Some(p.clone());
            Ok(p)
        };
        let on_record_error = config.transform.on_record_error;
        let mut dead_letter_topic = match on_record_error {
            OnRecordError::DeadLetter => config.transform.dead_letter_topic.clone(),
            _ => None,
        };
        let exactly_once = config.sink.guarantee == Guarantee::ExactlyOnce;
        let sink: Box<dyn Sink> = match config.sink.kind {
            SinkKind::Kafka => {
                let topic = config
                    .sink
                    .topic
                    .clone()
                    .ok_or_else(|| TaskError::config("sink.topic: missing"))?;
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
                        partitioning: config.sink.partitioning,
                        // Dead letters go inside each task's transaction.
                        dead_letter_topic: dead_letter_topic.take(),
                        transaction_timeout: config.sink.transaction_timeout,
                        group: GroupProgress::new(group_config, &group)?,
                        counters: transactions,
                    }))
                } else {
                    Box::new(KafkaSink::new(
                        producer_for(&sink_brokers)?,
                        topic,
                        config.sink.partitioning,
                    ))
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
        let mut dead_letters_own_producer = None;
        let dead_letters = match dead_letter_topic {
            Some(topic) => {
                // Dead letters go to the sink's cluster when the sink is Kafka, else the source's.
                let producer = if config.sink.kind == SinkKind::Kafka {
                    producer_for(&sink_brokers)?
                } else {
                    let own = SharedProducer::new(
                        client_config(&source.brokers, &config.sink.kafka),
                        &source.brokers,
                    )?;
                    dead_letters_own_producer = Some(own.clone());
                    own
                };
                Some(DeadLetters::new(producer, topic))
            }
            None => None,
        };
        let producers = sink_producer.into_iter().chain(dead_letters_own_producer).collect();
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
            dead_letters,
            on_record_error,
            consumers,
            producers,
        }))
    }

    /// Messages waiting in the queues of every producer of this job: the shared ones and the
    /// sink's own.
    pub fn queued_messages(&self) -> u64 {
        self.sink.queued_messages() + self.producers.iter().map(SharedProducer::queued).sum::<u64>()
    }
}
