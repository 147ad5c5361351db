//! The Kafka side of the job's guarantee, as the driver sees it:
//! - the group `weir.{job}` holds the job's committed progress, so ordinary Kafka tools
//!   (`kafka-consumer-groups --describe`) show its lag. Under exactly-once the executors' task
//!   transactions write it; otherwise the driver writes it after each etcd commit.
//! - exactly-once needs the broker to allow the configured transaction timeout; checked at start.
//!
//! The group is never joined: its offsets are committed as a group without members, which Kafka
//! accepts while the group is empty.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tracing::warn;
use weir_common::TopicPartition;
use weir_common::batch::LaneId;
use weir_common::config::{Guarantee, JobConfig, SinkKind, SourceConfig};
use weir_common::failure::code_failure;
use weir_common::kafka_refusal::RefusalWatch;
use weir_common::lanes::LaneMap;

use crate::error::DriverError;
use crate::io::{JobGroup, Offsets, blocking};
use crate::source::{client_config, client_config_on, or_refused};

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);
/// `init_transactions` waits while the broker completes or aborts the fenced producer's open
/// transaction.
const FENCE_TIMEOUT: Duration = Duration::from_secs(30);

/// The group on the source cluster, shared with the blocking threads that read it.
#[derive(Clone)]
pub struct KafkaGroup(Arc<Client>);

struct Client {
    consumer: BaseConsumer<RefusalWatch>,
    name: String,
    brokers: String,
    /// Where the job's lane transactions are, when it writes Kafka transactions.
    transactions: Option<Transactions>,
}

/// The sink cluster of an exactly-once Kafka job: where its lanes' transactional ids live.
struct Transactions {
    job: String,
    brokers: String,
    properties: BTreeMap<String, String>,
}

/// Lanes fenced at once: each fence is a coordinator lookup and an `InitProducerId`.
const FENCING_THREADS: usize = 8;

pub fn group_name(job: &str) -> String {
    format!("weir.{job}")
}

impl KafkaGroup {
    pub fn new(config: &JobConfig) -> Result<Self, DriverError> {
        let transactional =
            config.sink.kind == SinkKind::Kafka && config.sink.guarantee == Guarantee::ExactlyOnce;
        let transactions = transactional.then(|| Transactions {
            job: config.job.name.clone(),
            brokers: config.sink.brokers(&config.source).to_owned(),
            properties: config.sink.kafka.clone(),
        });
        Self::build(&config.job.name, &config.source, transactions)
    }

    /// The group of job `job` on the source cluster `source`.
    pub fn for_job(job: &str, source: &SourceConfig) -> Result<Self, DriverError> {
        Self::build(job, source, None)
    }

    fn build(
        job: &str,
        source: &SourceConfig,
        transactions: Option<Transactions>,
    ) -> Result<Self, DriverError> {
        let name = group_name(job);
        let consumer = client_config(source)
            .set("group.id", &name)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create_with_context(RefusalWatch::default())
            .map_err(|e| {
                let context = format_args!("cannot create a client for group {name}");
                DriverError::kafka(&source.brokers, context, &e)
            })?;
        let brokers = source.brokers.clone();
        Ok(KafkaGroup(Arc::new(Client { consumer, name, brokers, transactions })))
    }

    /// Sets the group's offsets to `offsets` and waits for the broker's answer (an operator's
    /// reset; the job must not be running). Kafka accepts it only while the group has no
    /// members, which a Weir group never has.
    pub async fn move_to(&self, offsets: Offsets) -> Result<(), DriverError> {
        let client = self.0.clone();
        blocking(move || or_refused(client.move_to(&offsets), &client.consumer)).await
    }

    /// Deletes the group (`weirctl job delete --group`). A group that does not exist is not an
    /// error.
    pub async fn delete(&self, source: &SourceConfig) -> Result<(), DriverError> {
        let brokers = &source.brokers;
        let admin: AdminClient<DefaultClientContext> = client_config(source)
            .create()
            .map_err(|e| DriverError::kafka(brokers, "admin client", &e))?;
        let options = AdminOptions::new().request_timeout(Some(KAFKA_TIMEOUT));
        let results =
            admin.delete_groups(&[self.0.name.as_str()], &options).await.map_err(|e| {
                DriverError::kafka(brokers, format_args!("deleting group {}", self.0.name), &e)
            })?;
        for result in results {
            if let Err((group, code)) = result
                && code != rdkafka::types::RDKafkaErrorCode::GroupIdNotFound
            {
                return Err(DriverError::Kafka {
                    brokers: brokers.clone(),
                    message: format!("deleting group {group}: {code}"),
                    kind: code_failure(code),
                });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl JobGroup for KafkaGroup {
    fn name(&self) -> &str {
        &self.0.name
    }

    async fn committed(&self, partitions: Vec<TopicPartition>) -> Result<Offsets, DriverError> {
        let client = self.0.clone();
        blocking(move || or_refused(client.committed(&partitions), &client.consumer)).await
    }

    fn publish(&self, next_offsets: &Offsets) {
        self.0.publish(next_offsets)
    }

    async fn fence_lanes(&self, lanes: Vec<LaneId>) -> Result<(), DriverError> {
        let client = self.0.clone();
        blocking(move || match &client.transactions {
            Some(transactions) => transactions.fence(&lanes),
            None => Ok(()),
        })
        .await
    }
}

impl Transactions {
    /// `init_transactions` with each lane's transactional id, a few at a time: the broker bumps
    /// the id's epoch (so an older producer of the lane can no longer commit) and aborts its open
    /// transaction, if any. The producers are dropped at once.
    fn fence(&self, lanes: &[LaneId]) -> Result<(), DriverError> {
        let chunk = lanes.len().div_ceil(FENCING_THREADS).max(1);
        std::thread::scope(|scope| {
            let fencers: Vec<_> = lanes
                .chunks(chunk)
                .map(|lanes| scope.spawn(move || lanes.iter().try_for_each(|&l| self.fence_one(l))))
                .collect();
            fencers.into_iter().try_for_each(|fencer| {
                fencer.join().unwrap_or_else(|_| {
                    Err(DriverError::Internal("a fencing thread panicked".into()))
                })
            })
        })
    }

    fn fence_one(&self, lane: LaneId) -> Result<(), DriverError> {
        let id = LaneMap::transactional_id(&self.job, lane);
        let producer: BaseProducer = client_config_on(&self.brokers, &self.properties)
            .set("transactional.id", &id)
            .create()
            .map_err(|e| {
                DriverError::kafka(&self.brokers, format_args!("a producer for {id}"), &e)
            })?;
        producer.init_transactions(FENCE_TIMEOUT).map_err(|e| {
            DriverError::kafka(&self.brokers, format_args!("fencing lane {lane} ({id})"), &e)
        })
    }
}

impl Client {
    fn committed(&self, partitions: &[TopicPartition]) -> Result<Offsets, DriverError> {
        let mut list = TopicPartitionList::new();
        for tp in partitions {
            list.add_partition(&tp.topic, tp.partition);
        }
        let committed = self.consumer.committed_offsets(list, KAFKA_TIMEOUT).map_err(|e| {
            let context = format_args!("reading the offsets of group {}", self.name);
            DriverError::kafka(&self.brokers, context, &e)
        })?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(at) => Some((TopicPartition::new(e.topic(), e.partition()), at)),
                _ => None,
            })
            .collect())
    }

    fn move_to(&self, offsets: &Offsets) -> Result<(), DriverError> {
        let mut list = TopicPartitionList::new();
        for (tp, &offset) in offsets {
            list.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(offset)).map_err(
                |e| DriverError::kafka(&self.brokers, format_args!("offset {offset} of {tp}"), &e),
            )?;
        }
        self.consumer.commit(&list, CommitMode::Sync).map_err(|e| {
            let context = format_args!("moving the offsets of group {}", self.name);
            DriverError::kafka(&self.brokers, context, &e)
        })
    }

    /// Publishes the committed progress (at-least-once and at-most-once). Best effort and
    /// asynchronous: etcd is the authority, the group only shows lag; a failure is logged.
    fn publish(&self, next_offsets: &BTreeMap<TopicPartition, i64>) {
        let mut list = TopicPartitionList::new();
        for (tp, &offset) in next_offsets {
            if list.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(offset)).is_err() {
                continue;
            }
        }
        if let Err(e) = self.consumer.commit(&list, CommitMode::Async) {
            warn!(group = %self.name, error = %e, "Could not publish the progress to the group");
        }
        // Serves the commit's callback queue, so the client does not accumulate events.
        let _ = self.consumer.poll(Duration::ZERO);
    }
}

/// Exactly-once: the broker aborts any transaction older than `transaction.max.timeout.ms`
/// and refuses producers asking for more, so a `sink.transaction_timeout` above it could never
/// work. Reads the broker's setting and names both values when it is too small.
pub async fn check_transaction_timeout(config: &JobConfig) -> Result<(), DriverError> {
    let brokers = &config.source.brokers;
    let kafka = |context: &str, e: &KafkaError| DriverError::kafka(brokers, context, e);
    let waiting = |message: String| DriverError::kafka_transient(brokers, message);
    // The metadata through a consumer, whose queue tells a cluster that refuses the job's
    // client (`or_refused`) from one that does not answer; an admin client's is not served.
    let metadata_client: BaseConsumer<RefusalWatch> = client_config(&config.source)
        .create_with_context(RefusalWatch::default())
        .map_err(|e| kafka("metadata client", &e))?;
    let metadata = metadata_client
        .fetch_metadata(None, KAFKA_TIMEOUT)
        .map_err(|e| kafka("cluster metadata", &e));
    let Some(broker) = or_refused(metadata, &metadata_client)?.brokers().first().map(|b| b.id())
    else {
        return Err(waiting("the cluster lists no broker".into()));
    };
    let admin: AdminClient<DefaultClientContext> =
        client_config(&config.source).create().map_err(|e| kafka("admin client", &e))?;
    let describing = format!("describing broker {broker}'s config");
    let options = AdminOptions::new().request_timeout(Some(KAFKA_TIMEOUT));
    let results = admin
        .describe_configs([&ResourceSpecifier::Broker(broker)], &options)
        .await
        .map_err(|e| kafka(&describing, &e))?;
    let resource = results
        .into_iter()
        .next()
        .ok_or_else(|| waiting(format!("no config for broker {broker}")))?
        .map_err(|code| DriverError::Kafka {
            brokers: brokers.clone(),
            message: format!("{describing}: {code}"),
            kind: code_failure(code),
        })?;
    let max_ms = resource
        .get("transaction.max.timeout.ms")
        .and_then(|entry| entry.value.as_deref())
        .and_then(|value| value.parse::<u64>().ok())
        .ok_or_else(|| waiting(format!("broker {broker} reports no transaction.max.timeout.ms")))?;
    let wanted = config.sink.transaction_timeout;
    if wanted.as_millis() > u128::from(max_ms) {
        return Err(DriverError::Unfit(format!(
            "sink.transaction_timeout ({}) is above the broker's transaction.max.timeout.ms \
             ({max_ms} ms on broker {broker}); lower it, or raise the broker's limit",
            weir_common::config::duration::format(wanted)
        )));
    }
    Ok(())
}
