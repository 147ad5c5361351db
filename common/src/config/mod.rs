//! The job config: its types and defaults (`model`), loading with the precedence defaults < TOML
//! file < `WEIR__SECTION__KEY` environment < `--set key=value` (`load`), the start-up checks
//! (`validate`), and the TOML the driver logs and sends to executors. Invariant: a `JobConfig`
//! returned by [`JobConfig::load`] or [`JobConfig::from_toml_str`] has passed
//! [`JobConfig::validate`], and `from_toml_str(&c.to_toml_string()) == Ok(c)`.
//!
//! `docs/configuration.md` describes every key; keep it in step with this module.

mod de;
pub mod duration;
mod error;
mod load;
mod model;
pub mod secrets;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

pub use error::ConfigError;
pub use model::{
    CheckpointConfig, DEFAULT_INITIAL_RATE_PER_PARTITION, DEFAULT_LANES, DriverSection, DriverTls,
    EtcdTls, Guarantee, JobConfig, JobSection, MAX_LANES, OnDataLoss, Partitioning, SinkConfig,
    SinkKind, SourceConfig, StartingOffsets,
};

/// Substrings of Kafka property names whose values are masked in logs.
const SECRET_MARKERS: [&str; 6] =
    ["password", "secret", "jaas", "token", "sasl.oauthbearer", "ssl.key.pem"];

impl JobConfig {
    /// Defaults < TOML file < `WEIR__SECTION__KEY` environment variables < `--set key=value`
    /// overrides, then [`validate`](Self::validate). Pass `std::env::vars()` as `env`; variables
    /// not starting with `WEIR__` are ignored.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[String],
    ) -> Result<JobConfig, ConfigError> {
        load::load(path, env, overrides)
    }

    /// Parses and validates a complete config given as TOML text (how executors receive the
    /// driver's effective config).
    pub fn from_toml_str(text: &str) -> Result<JobConfig, ConfigError> {
        load::from_toml_str(text)
    }

    /// The effective config as TOML, defaults written out.
    pub fn to_toml_string(&self) -> String {
        toml::to_string(self).expect("a JobConfig always serializes to TOML")
    }

    /// [`to_toml_string`](Self::to_toml_string) for logs: values of `source.kafka` and
    /// `sink.kafka` properties whose names contain password, secret, jaas, token,
    /// sasl.oauthbearer or ssl.key.pem are written as `"****"`, and so are passwords inside URLs
    /// (`checkpoint.etcd`, `driver.advertise`).
    pub fn masked_toml(&self) -> String {
        let mut masked = self.clone();
        mask(&mut masked.source.kafka);
        mask(&mut masked.sink.kafka);
        for endpoint in &mut masked.checkpoint.etcd {
            *endpoint = mask_url_password(endpoint);
        }
        masked.driver.advertise = masked.driver.advertise.as_deref().map(mask_url_password);
        masked.to_toml_string()
    }

    /// The start-up checks: bounds on values and the rules between keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::validate(self)
    }

    /// Topic names the job reads that are fixed in config (`source.topics`); empty when a
    /// pattern is used.
    pub fn source_topics(&self) -> &[String] {
        &self.source.topics
    }
}

impl CheckpointConfig {
    /// The start-up checks of `[checkpoint]` alone (for `weirctl`, which may have no whole config).
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::checkpoint(self)
    }
}

/// `scheme://user:password@host` with the password written `****`; other text unchanged.
pub fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((userinfo, host)) = rest.split_once('@') else { return url.to_owned() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:****@{host}"),
        None => url.to_owned(),
    }
}

fn mask(properties: &mut BTreeMap<String, String>) {
    for (name, value) in properties.iter_mut() {
        let name = name.to_ascii_lowercase();
        if SECRET_MARKERS.iter().any(|marker| name.contains(marker)) {
            *value = "****".to_owned();
        }
    }
}
