//! `ConfigError`: every way a job config can be refused. Each message starts with the dotted key
//! it concerns (or the file, variable or `--set` argument), then the value and what was expected.
//! No config error is retryable: the operator must change the config.

use std::path::PathBuf;
use std::time::Duration;

use super::duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("config file {}: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    /// The TOML text does not parse; `message` holds the toml crate's line and column report.
    #[error("{origin}: {message}")]
    Syntax { origin: String, message: String },
    /// An environment variable or `--set` argument that cannot be read as an override.
    #[error("{origin}: {problem}")]
    Override { origin: String, problem: &'static str },
    /// An override sets a key inside a value that is not a table.
    #[error(
        "{key}: is not a table but a value of type {found}, so {origin} cannot set a key in it"
    )]
    NotATable { key: String, found: &'static str, origin: String },
    /// A required key is absent.
    #[error("{key}: missing")]
    Missing { key: String },
    /// A key this build does not know.
    #[error("{key}: unknown key; {expected}")]
    UnknownKey { key: String, expected: String },
    /// A value of the wrong type or shape, as the deserializer reports it.
    #[error("{key}: {message}")]
    Parse { key: String, message: String },
    /// A value that has the right type but is out of bounds or malformed.
    #[error("{key}: got {value}, expected {expected}")]
    Invalid { key: String, value: String, expected: String },
    /// A rule between keys: both given, neither given, or one that contradicts another.
    #[error("{key}: {rule}")]
    Rule { key: String, rule: String },
    #[error(
        "driver.heartbeat_interval: {:?} is more than half of driver.executor_timeout ({:?}); an executor must be able to miss a heartbeat before it is declared lost",
        duration::format(*heartbeat),
        duration::format(*timeout)
    )]
    HeartbeatTooSlow { heartbeat: Duration, timeout: Duration },
}

impl ConfigError {
    /// From a deserialization error and the path `serde_path_to_error` tracked. Missing and
    /// unknown keys get their own variants so the message names the key itself.
    pub(super) fn from_serde(error: serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
        let path = error.path().to_string();
        let message = error.inner().message().to_owned();
        if let Some(field) = backticked(&message, "missing field `") {
            let key = if path == "." { field.to_owned() } else { format!("{path}.{field}") };
            return ConfigError::Missing { key };
        }
        if let Some(field) = backticked(&message, "unknown field `") {
            let expected = message[("unknown field `".len() + field.len() + 1)..]
                .trim_start_matches(", ")
                .to_owned();
            // Inside an internally tagged enum the path stops at the enum: add the key.
            let key = match path.as_str() {
                "." => field.to_owned(),
                _ if path.rsplit('.').next() == Some(field) => path,
                _ => format!("{path}.{field}"),
            };
            return ConfigError::UnknownKey { key, expected };
        }
        ConfigError::Parse { key: path, message }
    }
}

/// `"missing field `name`"` with prefix `"missing field `"` -> `"name"`.
fn backticked<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message.strip_prefix(prefix)?.split('`').next()
}
