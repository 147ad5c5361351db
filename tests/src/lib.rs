//! Weir's integration harness. Everything here runs against the real Kafka broker and the real
//! etcd server that `deploy/local/services.sh` starts, and the real binaries as child processes.
//!
//! - [`services`]: makes sure Kafka and etcd answer (starting them through the script if not).
//! - [`names`]: unique job and topic names per test.
//! - [`kafka`]: create topics, produce known records, read back with `read_committed`.
//! - [`etcd`]: a connected client and per-test key prefixes.
//! - [`group`]: the job's Kafka consumer group, as Kafka's own tools show it.
//! - [`job`]: a job under test: topics, config, driver and executors, its etcd progress.
//! - [`supervisor`]: child processes that are killed when the test ends, even on panic.
//! - [`binaries`]: where `cargo build` put `weir-driver` and `weir-executor`.
//! - [`metrics`]: a sample's value in a process's `/metrics`.
//! - [`oracle`]: judges what a reader saw in the output against what was produced (lost,
//!   duplicated, out of order, unexpected), per input partition.
//! - [`scenario`]: the fault harness: a job under a guarantee, input flowing, a schedule of
//!   faults with each recovery timed, then the oracle's verdict.

pub mod binaries;
pub mod certs;
pub mod etcd;
pub mod group;
pub mod job;
pub mod kafka;
pub mod kafka_broker;
pub mod metrics;
pub mod names;
pub mod oracle;
pub mod scenario;
pub mod services;
pub mod supervisor;
