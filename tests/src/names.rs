//! Unique names per test, so tests share one broker and one etcd without seeing each other's
//! topics, groups, transactional ids or keys, and so reruns never meet leftovers.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// `{prefix}-{pid}-{millis}-{n}`: unique across concurrent tests and across runs. Only
/// characters that are legal in a Kafka topic, an etcd key and a transactional id.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let prefix: String = prefix
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .collect();
    format!("{prefix}-{}-{millis}-{n}", std::process::id())
}

/// The names one test uses: a job name and topics derived from it.
#[derive(Debug, Clone)]
pub struct TestNames {
    pub job: String,
}

impl TestNames {
    pub fn new(test: &str) -> Self {
        Self { job: unique(test) }
    }

    /// A topic that belongs to this test, e.g. `topic("in")`.
    pub fn topic(&self, role: &str) -> String {
        format!("{}.{role}", self.job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_differ_and_are_clean() {
        let a = unique("smoke test/1");
        let b = unique("smoke test/1");
        assert_ne!(a, b);
        assert!(a.starts_with("smoke-test-1-"), "{a}");
        let names = TestNames::new("t");
        assert_eq!(names.topic("in"), format!("{}.in", names.job));
    }
}
