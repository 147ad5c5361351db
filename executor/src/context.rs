//! A job's executor-side state, built from the driver's effective config: the transform pipeline,
//! the sink, the dead-letter writer and the consumer cache. Built once per config and reused by
//! every task and across reconnects (so caches stay warm); rebuilt only if the config changes.

use std::sync::Arc;

use weir_common::config::{JobConfig, SinkKind};
use weir_common::transform::{OnRecordError, Pipeline, TransformRegistry};

use crate::error::TaskError;
use crate::kafka::client_config;
use crate::kafka::producer::SharedProducer;
use crate::kafka::range_reader::ConsumerCache;
use crate::sink::Sink;
use crate::sink::file::FileSink;
use crate::sink::kafka::{DeadLetters, KafkaSink};
use crate::sink::stdout::StdoutSink;

pub struct JobContext {
    pub config_toml: String,
    pub config: JobConfig,
    pub pipeline: Pipeline,
    pub sink: Box<dyn Sink>,
    pub dead_letters: Option<DeadLetters>,
    pub on_record_error: OnRecordError,
    pub consumers: ConsumerCache,
}

impl JobContext {
    /// Builds the context; an error here is the config's fault, so tasks fail non-retryably.
    pub fn build(config_toml: &str, registry: &TransformRegistry) -> Result<Arc<Self>, TaskError> {
        let config = JobConfig::from_toml_str(config_toml)
            .map_err(|e| TaskError::fatal(format!("the driver's config is invalid here: {e}")))?;
        let pipeline = Pipeline::build(&config.transform, registry)
            .map_err(|e| TaskError::fatal(e.to_string()))?;
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
        let sink: Box<dyn Sink> = match config.sink.kind {
            SinkKind::Kafka => {
                let topic = config
                    .sink
                    .topic
                    .clone()
                    .ok_or_else(|| TaskError::fatal("sink.topic: missing"))?;
                Box::new(KafkaSink::new(
                    producer_for(&sink_brokers)?,
                    topic,
                    config.sink.partitioning,
                ))
            }
            SinkKind::File => {
                let dir = config
                    .sink
                    .path
                    .clone()
                    .ok_or_else(|| TaskError::fatal("sink.path: missing"))?;
                Box::new(FileSink::new(dir)?)
            }
            SinkKind::Stdout => Box::new(StdoutSink),
        };
        let on_record_error = config.transform.on_record_error;
        let dead_letters = match (&config.transform.dead_letter_topic, on_record_error) {
            (Some(topic), OnRecordError::DeadLetter) => {
                // Dead letters go to the sink's cluster when the sink is Kafka, else the source's.
                let producer = if config.sink.kind == SinkKind::Kafka {
                    producer_for(&sink_brokers)?
                } else {
                    SharedProducer::new(
                        client_config(&source.brokers, &config.sink.kafka),
                        &source.brokers,
                    )?
                };
                Some(DeadLetters::new(producer, topic.clone()))
            }
            _ => None,
        };
        let mut consumer_config = client_config(&source.brokers, &source.kafka);
        if consumer_config.get("group.id").is_none() {
            // librdkafka wants a group for `assign`; nothing is ever committed to it.
            consumer_config.set("group.id", format!("weir.{}.readers", config.job.name));
        }
        let consumers = ConsumerCache::new(consumer_config);
        Ok(Arc::new(JobContext {
            config_toml: config_toml.to_owned(),
            config,
            pipeline,
            sink,
            dead_letters,
            on_record_error,
            consumers,
        }))
    }
}
