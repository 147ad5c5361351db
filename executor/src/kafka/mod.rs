//! The executor's Kafka clients: cached per-partition range readers and the shared producer.

pub mod group;
pub mod probe;
pub mod producer;
pub mod range_reader;

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

/// A client config from pass-through librdkafka properties plus the brokers; Weir's own settings
/// are set by the caller after this, so a user cannot turn off what correctness needs.
pub fn client_config(brokers: &str, properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (k, v) in properties {
        config.set(k, v);
    }
    config.set("bootstrap.servers", brokers);
    config
}
