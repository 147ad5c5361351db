//! A Kafka broker of a test's own: the same jars, config and KRaft mode as the shared test broker
//! (`deploy/local/services.sh kafka-foreground`), on free loopback ports with its data in the
//! test's log directory, run under the test's [`Supervisor`]. A test may kill it and start it
//! again without touching the broker other tests share; the supervisor kills it when the test
//! ends.

use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::supervisor::Supervisor;
use crate::{job, kafka, services};

/// How long a start (the first formats the storage: two JVM starts) may take.
const START_LIMIT: Duration = Duration::from_secs(120);

pub struct PrivateKafka {
    pub name: String,
    /// `127.0.0.1:port`, for `source.brokers` and the test's clients.
    pub brokers: String,
    port: u16,
    controller_port: u16,
    data_dir: std::path::PathBuf,
}

impl PrivateKafka {
    /// Starts it as the supervisor's child `name` and waits until it answers metadata requests.
    pub async fn start(supervisor: &mut Supervisor, name: &str) -> Self {
        services::ensure(); // the jars are installed with the shared services
        let (port, controller_port) = (job::free_port(), job::free_port());
        let broker = PrivateKafka {
            name: name.to_owned(),
            brokers: format!("127.0.0.1:{port}"),
            port,
            controller_port,
            data_dir: supervisor.log_dir().join(format!("{name}.data")),
        };
        broker.restart(supervisor).await;
        broker
    }

    /// Starts it again on the same ports and data (after a kill), and waits until it answers.
    pub async fn restart(&self, supervisor: &mut Supervisor) {
        let mut command = Command::new("bash");
        command
            .arg(services::script())
            .arg("kafka-foreground")
            .env("WEIR_KAFKA_PORT", self.port.to_string())
            .env("WEIR_KAFKA_CONTROLLER_PORT", self.controller_port.to_string())
            .env("WEIR_DATA_DIR", &self.data_dir)
            .env("WEIR_KAFKA_HEAP", "256m");
        supervisor.spawn(&self.name, command);
        let started = Instant::now();
        while !self.answers().await {
            assert!(
                supervisor.is_running(&self.name),
                "broker {} exited at start: {}",
                self.name,
                supervisor.log(&self.name)
            );
            assert!(started.elapsed() < START_LIMIT, "broker {} did not start", self.name);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn answers(&self) -> bool {
        let config = kafka::client_config_on(&self.brokers);
        tokio::task::spawn_blocking(move || {
            let Ok(client) = config.create::<BaseConsumer>() else { return false };
            client
                .fetch_metadata(None, Duration::from_secs(1))
                .is_ok_and(|m| !m.brokers().is_empty())
        })
        .await
        .unwrap_or(false)
    }
}
