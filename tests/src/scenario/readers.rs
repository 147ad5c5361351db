//! How a scenario reads its output for the oracle: the output topic through `read_committed`
//! ([`read_kafka`]), or a file sink's finished files ([`read_files`]), one stream per partition.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::kafka;
use crate::oracle::{Observed, Stream};

/// The output topic as a `read_committed` reader sees it: one stream per output partition.
pub async fn read_kafka(topic: &str) -> Observed {
    read_kafka_on(&crate::services::ensure().kafka_brokers, topic).await
}

/// [`read_kafka`] on the cluster at `brokers` (a test's own broker).
pub async fn read_kafka_on(brokers: &str, topic: &str) -> Observed {
    let mut observed = Observed::default();
    for (partition, records) in
        kafka::read_topic_on(brokers, topic, kafka::Isolation::ReadCommitted).await
    {
        let mut ids = Vec::with_capacity(records.len());
        for record in &records {
            match record.id() {
                Some(id) => ids.push(id),
                None => observed.unreadable += 1,
            }
        }
        observed.streams.push(Stream::new(format!("{topic}-{partition}"), ids));
    }
    observed
}

/// A file sink's finished files, one stream per input partition holding its files in offset
/// order, each line's `"id"`. Temporary files (a leading `.`) are not output yet and are
/// skipped. A file whose name does not parse becomes a stream of its own (and a note).
pub fn read_files(dir: &Path) -> (Observed, Vec<String>) {
    let mut notes = Vec::new();
    // (topic, partition) -> its files as (from, until, path), to be sorted by offset.
    type Files = Vec<(i64, i64, PathBuf)>;
    let mut ranges: BTreeMap<(String, i32), Files> = BTreeMap::new();
    let mut odd: Vec<PathBuf> = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // No file at all: everything is lost, which the verdict says.
        Err(e) => return (Observed::default(), vec![format!("{}: {e}", dir.display())]),
    };
    for entry in entries {
        let entry = entry.expect("read sink directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            notes.push(format!("sink directory holds {name}, not a file"));
            continue;
        }
        match parse_file_name(&name) {
            Some((topic, partition, from, until)) => {
                ranges.entry((topic, partition)).or_default().push((from, until, entry.path()))
            }
            None => {
                notes.push(format!("sink file {name} is not named topic-partition-from-until"));
                odd.push(entry.path());
            }
        }
    }
    let mut observed = Observed::default();
    let mut read = |name: String, paths: &[PathBuf]| {
        let mut ids = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            for line in text.lines().filter(|line| !line.is_empty()) {
                match line_id(line) {
                    Some(id) => ids.push(id),
                    None => observed.unreadable += 1,
                }
            }
        }
        observed.streams.push(Stream::new(name, ids));
    };
    for ((topic, partition), mut files) in ranges {
        files.sort();
        let paths: Vec<PathBuf> = files.into_iter().map(|(_, _, path)| path).collect();
        read(format!("files of {topic}-{partition}"), &paths);
    }
    odd.sort();
    for path in odd {
        read(path.display().to_string(), std::slice::from_ref(&path));
    }
    (observed, notes)
}

/// `{topic}-{partition}-{from:020}-{until:020}.jsonl`, read from the right (topic names hold
/// `-` too).
fn parse_file_name(name: &str) -> Option<(String, i32, i64, i64)> {
    let stem = name.strip_suffix(".jsonl")?;
    let mut parts = stem.rsplitn(4, '-');
    let until = parts.next()?.parse().ok()?;
    let from = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    let topic = parts.next().filter(|t| !t.is_empty())?;
    Some((topic.to_owned(), partition, from, until))
}

/// The id of a `{"id":N}` line.
fn line_id(line: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(line).ok()?.get("id")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_parse_from_the_right() {
        let name = format!("my-job-1.in-3-{:020}-{:020}.jsonl", 120, 340);
        assert_eq!(parse_file_name(&name), Some(("my-job-1.in".to_owned(), 3, 120, 340)));
        assert_eq!(parse_file_name("x-1-2.jsonl"), None);
        assert_eq!(parse_file_name("t-0-1-2.txt"), None);
        assert_eq!(line_id(r#"{"id":17}"#), Some(17));
        assert_eq!(line_id("garbage"), None);
    }

    #[test]
    fn files_are_read_per_partition_in_offset_order() {
        let dir = std::env::temp_dir().join(crate::names::unique("weir-read-files"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |p: i32, from: i64, until: i64| format!("t.in-{p}-{from:020}-{until:020}.jsonl");
        std::fs::write(dir.join(file(0, 2, 4)), "{\"id\":4}\n{\"id\":6}\n").unwrap();
        std::fs::write(dir.join(file(0, 0, 2)), "{\"id\":0}\n{\"id\":2}\n").unwrap();
        std::fs::write(dir.join(file(1, 0, 1)), "{\"id\":1}\nnot json\n").unwrap();
        std::fs::write(dir.join(format!(".{}.attempt-1.tmp", file(1, 1, 2))), "{\"id\":3}\n")
            .unwrap();
        let (observed, notes) = read_files(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(observed.unreadable, 1);
        assert_eq!(
            observed.streams,
            [
                Stream::new("files of t.in-0", vec![0, 2, 4, 6]),
                Stream::new("files of t.in-1", vec![1])
            ]
        );
    }
}
