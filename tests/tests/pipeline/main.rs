//! The core pipeline end to end: the real `weir-driver` and `weir-executor` binaries against the
//! real Kafka and etcd, judged by an independent `read_committed` reader of the output topic and
//! by what etcd holds.

mod bad_input;
mod delivery;
mod etcd_security;
mod executor_http;
mod executor_token;
mod guarantees;
mod idle_peers;
mod in_process;
mod kafka_cases;
mod kafka_security;
mod lanes;
mod restarts;
mod secrets;
mod tls;
mod untrusted_driver;
mod unwritable;
mod user_transform;
