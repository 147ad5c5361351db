//! Secrets by reference: a `[source.kafka]` or `[sink.kafka]` value written `${env:NAME}` or
//! `${file:PATH}` (and `checkpoint.password`, which must be written so) is read where a client is
//! made, from that process's own environment or files. The config itself (what the driver logs,
//! shows and sends to executors) only ever holds the reference, so a password never travels and
//! each process can be given its own.
//!
//! Each process checks at start that the references it uses resolve (the driver the source's and
//! etcd's, an executor both Kafka sections), so a missing variable is an error naming the key,
//! not a refused login later.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::ConfigError;

/// The value `value` stands for: the variable or file it names, or itself when it names none.
/// A file's one trailing newline is dropped (`echo secret > file` writes one).
pub fn resolve(value: &str) -> Result<Cow<'_, str>, String> {
    let Some(reference) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) else {
        return Ok(Cow::Borrowed(value));
    };
    if let Some(name) = reference.strip_prefix("env:") {
        return std::env::var(name)
            .map(Cow::Owned)
            .map_err(|_| format!("environment variable {name} is not set"));
    }
    if let Some(path) = reference.strip_prefix("file:") {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let line =
            text.strip_suffix('\n').map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
        return Ok(Cow::Owned(line.to_owned()));
    }
    Err(format!("{value:?} is not a reference Weir reads; write ${{env:NAME}} or ${{file:PATH}}"))
}

/// Whether `value` is written as a reference (`${env:NAME}` or `${file:PATH}`), resolvable or not.
/// Equal bytes, compared in a time that does not depend on where they differ: for tokens.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

pub fn is_reference(value: &str) -> bool {
    value.strip_prefix("${").and_then(|v| v.strip_suffix('}')).is_some_and(|reference| {
        reference
            .strip_prefix("env:")
            .or_else(|| reference.strip_prefix("file:"))
            .is_some_and(|rest| !rest.is_empty())
    })
}

/// Checks that every reference among `properties` (the section `section`) resolves here.
pub fn check(section: &str, properties: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for (key, value) in properties {
        if let Err(reason) = resolve(value) {
            return Err(ConfigError::Invalid {
                key: format!("{section}.\"{key}\""),
                value: format!("{value:?}"),
                expected: format!("a reference that resolves here ({reason})"),
            });
        }
    }
    Ok(())
}

/// `properties` with their references resolved; a reference that does not resolve (checked at
/// start, so only if the environment changed since) is left as written, and the client refuses it.
pub fn resolved(
    properties: &BTreeMap<String, String>,
) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
    properties
        .iter()
        .map(|(key, value)| (key.as_str(), resolve(value).unwrap_or(Cow::Borrowed(value.as_str()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_from_the_environment_and_files() {
        // SAFETY: a variable of this test's own, set before any thread of it reads it.
        unsafe { std::env::set_var("WEIR_SECRETS_TEST_PASSWORD", "from-env") };
        assert_eq!(resolve("${env:WEIR_SECRETS_TEST_PASSWORD}").unwrap(), "from-env");
        let file = std::env::temp_dir().join(format!("weir-secret-{}", std::process::id()));
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(resolve(&format!("${{file:{}}}", file.display())).unwrap(), "from-file");
        std::fs::remove_file(&file).unwrap();
        assert_eq!(resolve("plain").unwrap(), "plain", "not a reference");
        assert_eq!(resolve("a${env:X}").unwrap(), "a${env:X}", "only whole values are references");
    }

    #[test]
    fn a_reference_that_does_not_resolve_is_named() {
        let properties = BTreeMap::from([(
            "sasl.password".to_owned(),
            "${env:WEIR_SECRETS_TEST_UNSET}".to_owned(),
        )]);
        let err = check("source.kafka", &properties).unwrap_err().to_string();
        assert!(err.contains("source.kafka.\"sasl.password\""), "{err}");
        assert!(err.contains("environment variable WEIR_SECRETS_TEST_UNSET is not set"), "{err}");
        let odd = BTreeMap::from([("k".to_owned(), "${vault:x}".to_owned())]);
        let err = check("sink.kafka", &odd).unwrap_err().to_string();
        assert!(err.contains("write ${env:NAME} or ${file:PATH}"), "{err}");
        // Left as written when it does not resolve.
        let kept: Vec<_> = resolved(&properties).map(|(_, v)| v.into_owned()).collect();
        assert_eq!(kept, ["${env:WEIR_SECRETS_TEST_UNSET}"]);
    }
}
