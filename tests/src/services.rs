//! Makes sure the real Kafka broker and etcd server are up before a test uses them.
//!
//! Addresses come from `WEIR_KAFKA_BROKERS` / `WEIR_ETCD_ENDPOINTS`, or from the same port
//! variables `deploy/local/services.sh` reads (`WEIR_KAFKA_PORT`, `WEIR_ETCD_PORT`). When a
//! service does not answer, the script is run once (`start`) for the whole test process; if they
//! still do not answer, the test fails with what to do. A test never passes without them.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// Where the services listen.
#[derive(Debug, Clone)]
pub struct Services {
    pub kafka_brokers: String,
    pub etcd_endpoints: Vec<String>,
}

impl Services {
    fn from_env() -> Self {
        let kafka_brokers = std::env::var("WEIR_KAFKA_BROKERS").unwrap_or_else(|_| {
            format!("127.0.0.1:{}", std::env::var("WEIR_KAFKA_PORT").unwrap_or("9092".into()))
        });
        let etcd_endpoints = std::env::var("WEIR_ETCD_ENDPOINTS")
            .unwrap_or_else(|_| {
                format!(
                    "http://127.0.0.1:{}",
                    std::env::var("WEIR_ETCD_PORT").unwrap_or("2379".into())
                )
            })
            .split(',')
            .map(str::to_owned)
            .collect();
        Self { kafka_brokers, etcd_endpoints }
    }
}

/// The running services, started through `deploy/local/services.sh start` if needed.
///
/// Blocking (it may wait for a broker to boot); call it from a test's first line, before any
/// client is created. Only the addresses are cached: clients belong to each test's runtime.
pub fn ensure() -> &'static Services {
    static SERVICES: OnceLock<Services> = OnceLock::new();
    // On a thread of its own: the etcd probe runs a runtime, which cannot nest inside a test's.
    SERVICES.get_or_init(|| {
        std::thread::spawn(discover_or_start)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn discover_or_start() -> Services {
    let services = Services::from_env();
    let missing = unreachable_services(&services);
    if missing.is_empty() {
        return services;
    }
    if std::env::var_os("WEIR_TEST_NO_START").is_some() {
        panic!(
            "{} not reachable and WEIR_TEST_NO_START is set; start them with `{} start`",
            missing.join(" and "),
            script().display()
        );
    }
    start_with_script(&missing);
    let still_missing = unreachable_services(&services);
    assert!(
        still_missing.is_empty(),
        "{} still not reachable after `{} start`; see its logs (`{} status` names the directory)",
        still_missing.join(" and "),
        script().display(),
        script().display()
    );
    services
}

/// `deploy/local/services.sh` in this checkout.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/services.sh")
}

fn start_with_script(missing: &[String]) {
    eprintln!("weir-tests: {} not reachable; running services.sh start", missing.join(" and "));
    let status = Command::new("bash")
        .arg(script())
        .arg("start")
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
    assert!(
        status.success(),
        "`{} start` failed ({status}); run `{} install` first if this machine is new",
        script().display(),
        script().display()
    );
}

fn unreachable_services(services: &Services) -> Vec<String> {
    let mut missing = Vec::new();
    if let Err(e) = kafka_metadata(&services.kafka_brokers) {
        missing.push(format!("Kafka at {} ({e})", services.kafka_brokers));
    }
    if let Err(e) = etcd_status(&services.etcd_endpoints) {
        missing.push(format!("etcd at {} ({e})", services.etcd_endpoints.join(",")));
    }
    missing
}

/// A real metadata request, not a port probe: the broker must answer.
fn kafka_metadata(brokers: &str) -> Result<(), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        // Keep librdkafka from logging connection refusals while we only probe.
        .set("log_level", "0")
        .create()
        .map_err(|e| e.to_string())?;
    consumer.fetch_metadata(None, Duration::from_secs(3)).map(|_| ()).map_err(|e| e.to_string())
}

fn etcd_status(endpoints: &[String]) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(2));
        let mut client = etcd_client::Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| e.to_string())?;
        client.status().await.map(|_| ()).map_err(|e| e.to_string())
    })
}
