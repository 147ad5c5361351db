//! Weir's integration harness. Everything here runs against the real Kafka broker and the real
//! etcd server that `deploy/local/services.sh` starts, and the real binaries as child processes.
//!
//! - [`services`]: makes sure Kafka and etcd answer (starting them through the script if not).
//! - [`names`]: unique job and topic names per test.
//! - [`kafka`]: create topics, produce known records, read back with `read_committed`.
//! - [`etcd`]: a connected client and per-test key prefixes.
//! - [`job`]: a job under test: topics, config, driver and executors, its etcd progress.
//! - [`supervisor`]: child processes that are killed when the test ends, even on panic.
//! - [`binaries`]: where `cargo build` put `weir-driver` and `weir-executor`.

pub mod binaries;
pub mod etcd;
pub mod job;
pub mod kafka;
pub mod names;
pub mod services;
pub mod supervisor;
