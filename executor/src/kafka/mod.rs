//! The executor's Kafka clients: a consumer per lane (`lane_reader`) and the shared producer.

pub mod group;
pub mod lane_reader;
pub mod probe;
pub mod producer;

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

/// A client config from pass-through librdkafka properties (`${env:..}` and `${file:..}` values
/// resolved here, in this process) plus the brokers; Weir's own settings are set by the caller
/// after this, so a user cannot turn off what correctness needs.
pub fn client_config(brokers: &str, properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (k, v) in weir_common::config::secrets::resolved(properties) {
        config.set(k, v);
    }
    config.set("bootstrap.servers", brokers);
    config
}

/// librdkafka properties that make the client load or run code: a library (`plugin.library.paths`,
/// an OpenSSL engine), OpenSSL providers, or a shell command (`sasl.kerberos.kinit.cmd`). The
/// config comes from the driver; an executor runs what it names only when its own flag allows it.
const CODE_LOADING: [&str; 4] =
    ["plugin.library.paths", "ssl.engine.location", "ssl.providers", "sasl.kerberos.kinit.cmd"];

/// The first property of `properties` (`section` names where it is) that loads or runs code.
pub fn code_loading_property(
    section: &str,
    properties: &BTreeMap<String, String>,
) -> Option<String> {
    properties
        .keys()
        .find(|key| CODE_LOADING.contains(&key.as_str()))
        .map(|key| format!("{section}.\"{key}\""))
}
