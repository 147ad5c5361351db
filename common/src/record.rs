//! The record that flows from the range reader through the transform into a sink.
//!
//! Key, payload and header values borrow from the Kafka client's buffer when they can (`Cow`), so
//! an identity pipeline copies nothing until the producer hands the bytes to librdkafka.

use std::borrow::Cow;

/// One Kafka record on its way through a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Source topic, partition and offset: where the record came from (for dead letters, file
    /// names and the "same partition as input" sink mode). Transforms must not change them.
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Cow<'a, [u8]>>,
    pub payload: Option<Cow<'a, [u8]>>,
    pub headers: Vec<Header<'a>>,
    /// Milliseconds since the epoch, as the source record carried it (create or log-append time).
    pub timestamp_ms: Option<i64>,
}

/// One record header; Kafka allows a header without a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    pub key: Cow<'a, str>,
    pub value: Option<Cow<'a, [u8]>>,
}

impl<'a> Record<'a> {
    /// A record with only a payload, for tests and examples.
    pub fn with_payload(topic: &'a str, partition: i32, offset: i64, payload: &'a [u8]) -> Self {
        Record {
            topic,
            partition,
            offset,
            key: None,
            payload: Some(Cow::Borrowed(payload)),
            headers: Vec::new(),
            timestamp_ms: None,
        }
    }
}
