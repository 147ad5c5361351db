//! The file sink: one file per range of a task, named by the range, holding each output record's
//! payload on its own line. Written under a temporary name, synced, then renamed, so a file with
//! the final name is always complete, and a re-run of the same range replaces it whole.
//!
//! File name: `{topic}-{partition}-{from:020}-{until:020}.jsonl` in `sink.path`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use weir_common::protocol::TaskId;
use weir_common::{OffsetRange, Record};

use super::dead_letters::no_dead_letter_topic;
use super::{Begun, Sink, TaskOutput};
use crate::error::TaskError;

pub struct FileSink {
    dir: PathBuf,
}

impl FileSink {
    pub fn new(dir: PathBuf) -> Result<Self, TaskError> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| TaskError::config(format!("sink.path {}: {e}", dir.display())))?;
        Ok(FileSink { dir })
    }
}

pub fn file_name(range: &OffsetRange) -> String {
    format!(
        "{}-{}-{:020}-{:020}.jsonl",
        range.topic(),
        range.partition(),
        range.from(),
        range.until()
    )
}

struct Part {
    range: OffsetRange,
    writer: BufWriter<File>,
    temporary: PathBuf,
    target: PathBuf,
}

impl Sink for FileSink {
    fn begin(&self, task: TaskId, ranges: &[OffsetRange]) -> Result<Begun<'_>, TaskError> {
        let mut parts = Vec::with_capacity(ranges.len());
        for range in ranges {
            // Ranges from the wire are checked already; a file name is where a bad one would
            // do harm, so it is checked again here.
            if !weir_common::offset_range::is_kafka_topic_name(range.topic()) {
                let topic = range.topic();
                return Err(TaskError::config(format!(
                    "topic {topic:?} is not a Kafka topic name: refusing to name a file after it"
                )));
            }
            let name = file_name(range);
            let temporary = self.dir.join(format!(".{name}.attempt-{}.tmp", task.attempt));
            let file = File::create(&temporary).map_err(|e| io_error(&temporary, e))?;
            let writer = BufWriter::new(file);
            parts.push(Part {
                range: range.clone(),
                writer,
                temporary,
                target: self.dir.join(name),
            });
        }
        Ok(Begun::Write(Box::new(FileOutput { parts })))
    }
}

/// A task has a handful of ranges: a linear search beats hashing a key per record.
struct FileOutput {
    parts: Vec<Part>,
}

fn io_error(path: &Path, e: std::io::Error) -> TaskError {
    TaskError::transient(format!("file sink {}: {e}", path.display()))
}

impl TaskOutput for FileOutput {
    fn write(&mut self, record: &Record<'_>) -> Result<u64, TaskError> {
        let part = self
            .parts
            .iter_mut()
            .find(|p| p.range.partition() == record.partition && p.range.topic() == record.topic)
            .ok_or_else(|| {
                let at = format!("{}-{}@{}", record.topic, record.partition, record.offset);
                TaskError::data(format!("record {at} is outside the task's ranges"))
            })?;
        let payload = record.payload.as_deref().unwrap_or_default();
        part.writer
            .write_all(payload)
            .and_then(|()| part.writer.write_all(b"\n"))
            .map_err(|e| io_error(&part.temporary, e))?;
        Ok(payload.len() as u64 + 1)
    }

    fn write_dead_letter(&mut self, record: &Record<'_>, _reason: &str) -> Result<(), TaskError> {
        Err(no_dead_letter_topic(record))
    }

    fn finish(self: Box<Self>) -> Result<(), TaskError> {
        for part in self.parts {
            let file =
                part.writer.into_inner().map_err(|e| io_error(&part.temporary, e.into_error()))?;
            file.sync_all().map_err(|e| io_error(&part.temporary, e))?;
            std::fs::rename(&part.temporary, &part.target)
                .map_err(|e| io_error(&part.target, e))?;
        }
        Ok(())
    }
}
