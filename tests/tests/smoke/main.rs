//! Smoke tests of the foundation against the real services: Kafka ranges, etcd guarded writes,
//! Kafka transactions as a `read_committed` reader sees them, and the process supervisor.
//! One test binary, so the workspace links one executable for all of them.

mod etcd_guarded_write;
mod kafka_range;
mod kafka_transactions;
mod supervisor;
