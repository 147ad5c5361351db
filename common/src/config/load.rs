//! Loading: the TOML file, then `WEIR__SECTION__KEY` environment variables, then `--set key=value`
//! arguments are merged into one TOML table, which is deserialized once (defaults fill what is
//! left) and validated. Deserialization goes through `serde_path_to_error`, so every error names
//! the full dotted key.

use std::path::Path;

use toml::{Table, Value};

use super::{ConfigError, JobConfig, SinkKind};

const ENV_PREFIX: &str = "WEIR__";

pub(super) fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[String],
) -> Result<JobConfig, ConfigError> {
    let mut table = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|error| ConfigError::Read { path: path.to_owned(), error })?;
            parse_table(&text, || format!("config file {}", path.display()))?
        }
        None => Table::new(),
    };
    for (name, text) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
        let key = env_key(rest).ok_or_else(|| ConfigError::Override {
            origin: name.clone(),
            problem: "expected WEIR__SECTION__KEY with non-empty parts between double underscores",
        })?;
        set(&mut table, &key, value_of(&key, &text), &name)?;
    }
    for argument in overrides {
        let origin = format!("--set {argument}");
        let (key, text) = argument.split_once('=').ok_or_else(|| ConfigError::Override {
            origin: origin.clone(),
            problem: "expected key=value, like --set job.batch_interval=2s",
        })?;
        let key = set_key(key).ok_or_else(|| ConfigError::Override {
            origin: origin.clone(),
            problem: "expected a dotted key with non-empty parts, like job.batch_interval",
        })?;
        set(&mut table, &key, value_of(&key, text), &origin)?;
    }
    from_table(table)
}

pub(super) fn from_toml_str(text: &str) -> Result<JobConfig, ConfigError> {
    from_table(parse_table(text, || "config".to_owned())?)
}

fn parse_table(text: &str, origin: impl FnOnce() -> String) -> Result<Table, ConfigError> {
    text.parse::<Table>().map_err(|error| ConfigError::Syntax {
        origin: origin(),
        message: error.to_string().trim_end().to_owned(),
    })
}

/// Deserializes, fills the sink's brokers from the source's, and validates.
fn from_table(table: Table) -> Result<JobConfig, ConfigError> {
    let mut config: JobConfig =
        serde_path_to_error::deserialize(table).map_err(ConfigError::from_serde)?;
    if config.sink.kind == SinkKind::Kafka && config.sink.brokers.is_none() {
        config.sink.brokers = Some(config.source.brokers.clone());
    }
    config.validate()?;
    Ok(config)
}

/// `SOURCE__KAFKA__FETCH_MAX_BYTES` -> `["source", "kafka", "fetch.max.bytes"]`: parts are
/// lowercased, and below a `kafka` table the rest is one property name with `_` read as `.`.
fn env_key(rest: &str) -> Option<Vec<String>> {
    let parts: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
    if parts.iter().any(String::is_empty) {
        return None;
    }
    Some(match kafka_table(&parts) {
        Some(table) => {
            let property = parts[2..].join(".").replace('_', ".");
            table.iter().map(|part| part.to_string()).chain([property]).collect()
        }
        None => parts,
    })
}

/// `source.kafka.fetch.max.bytes` -> `["source", "kafka", "fetch.max.bytes"]`.
fn set_key(key: &str) -> Option<Vec<String>> {
    let parts: Vec<String> = key.trim().split('.').map(str::to_owned).collect();
    if parts.iter().any(String::is_empty) {
        return None;
    }
    Some(match kafka_table(&parts) {
        Some(table) => {
            table.iter().map(|part| part.to_string()).chain([parts[2..].join(".")]).collect()
        }
        None => parts,
    })
}

/// When `parts` names a property below `source.kafka` or `sink.kafka`, that table's path.
fn kafka_table(parts: &[String]) -> Option<[&str; 2]> {
    match parts {
        [section, kafka, _, ..]
            if kafka == "kafka" && (section == "source" || section == "sink") =>
        {
            Some([section.as_str(), "kafka"])
        }
        _ => None,
    }
}

/// An override's value: a Kafka property stays text; anything else is read as a TOML value when
/// it is one (`5`, `true`, `["a"]`, `{ timestamp_ms = 1 }`) and as a string otherwise (`1s`).
fn value_of(key: &[String], text: &str) -> Value {
    if kafka_table(key).is_some() {
        return Value::String(text.to_owned());
    }
    match format!("v = {text}").parse::<Table>() {
        Ok(mut table) if table.len() == 1 => table.remove("v").expect("the one key is v"),
        _ => Value::String(text.to_owned()),
    }
}

/// Sets `key` in `table`, creating the tables on the way.
fn set(table: &mut Table, key: &[String], value: Value, origin: &str) -> Result<(), ConfigError> {
    let (last, parents) = key.split_last().expect("keys have at least one part");
    let mut current = table;
    for (depth, part) in parents.iter().enumerate() {
        let entry = current.entry(part.clone()).or_insert_with(|| Value::Table(Table::new()));
        current = match entry {
            Value::Table(inner) => inner,
            other => {
                return Err(ConfigError::NotATable {
                    key: key[..=depth].join("."),
                    found: other.type_str(),
                    origin: origin.to_owned(),
                });
            }
        };
    }
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|part| part.to_string()).collect()
    }

    #[test]
    fn env_keys_split_on_double_underscores() {
        assert_eq!(env_key("JOB__BATCH_INTERVAL"), Some(strings(&["job", "batch_interval"])));
        assert_eq!(
            env_key("SOURCE__KAFKA__FETCH_MAX_BYTES"),
            Some(strings(&["source", "kafka", "fetch.max.bytes"]))
        );
        assert_eq!(env_key("JOB____NAME"), None);
        assert_eq!(env_key(""), None);
    }

    #[test]
    fn set_keys_keep_kafka_property_names_whole() {
        assert_eq!(set_key("sink.kafka.linger.ms"), Some(strings(&["sink", "kafka", "linger.ms"])));
        assert_eq!(set_key("driver.grpc_listen"), Some(strings(&["driver", "grpc_listen"])));
        assert_eq!(set_key("job..name"), None);
    }

    #[test]
    fn values_are_toml_when_they_parse_and_text_otherwise() {
        let key = strings(&["job", "x"]);
        assert_eq!(value_of(&key, "5"), Value::Integer(5));
        assert_eq!(value_of(&key, r#"["a","b"]"#), Value::Array(vec!["a".into(), "b".into()]));
        assert_eq!(value_of(&key, "1s"), Value::String("1s".into()));
        assert_eq!(value_of(&key, "127.0.0.1:9092"), Value::String("127.0.0.1:9092".into()));
        assert_eq!(value_of(&key, "1\nx = 2"), Value::String("1\nx = 2".into()));
        let property = strings(&["source", "kafka", "fetch.max.bytes"]);
        assert_eq!(value_of(&property, "1048576"), Value::String("1048576".into()));
    }
}
