//! Makes sure the real Kafka broker and etcd server are up before a test uses them.
//!
//! Addresses come from `WEIR_KAFKA_BROKERS` / `WEIR_ETCD_ENDPOINTS`, or from the same port
//! variables `deploy/local/services.sh` reads (`WEIR_KAFKA_PORT`, `WEIR_ETCD_PORT`). When a
//! service does not answer, the script is run once (`start`) for the whole test process; if they
//! still do not answer, the test fails with what to do. A test never passes without them.
//!
//! The broker's SSL and SASL_SSL listeners, its CA and its SCRAM user ([`secure_kafka`]) come
//! from `WEIR_KAFKA_SSL_BROKERS`, `WEIR_KAFKA_SASL_SSL_BROKERS`, `WEIR_KAFKA_CA_FILE`,
//! `WEIR_KAFKA_SCRAM_USER` and `WEIR_KAFKA_SCRAM_PASSWORD_FILE`, or from what `services.sh env`
//! prints for the same environment.

use std::collections::BTreeMap;
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

/// The shared broker's secure listeners, as `deploy/local/services.sh` sets them up.
#[derive(Debug, Clone)]
pub struct SecureKafka {
    /// `host:port` of the SSL listener (no client certificate).
    pub ssl_brokers: String,
    /// `host:port` of the SASL_SSL listener (SCRAM-SHA-256 and SCRAM-SHA-512).
    pub sasl_ssl_brokers: String,
    /// The CA that signed the broker's certificate (PEM), for `ssl.ca.location`.
    pub ca_file: PathBuf,
    pub scram_user: String,
    /// Where the SCRAM user's password is kept (for `${file:...}`).
    pub scram_password_file: PathBuf,
    pub scram_password: String,
}

impl SecureKafka {
    /// librdkafka properties for the SASL_SSL listener with `mechanism`, as `[source.kafka]`
    /// or `[sink.kafka]` take them.
    pub fn sasl_properties(&self, mechanism: &str) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("security.protocol", "SASL_SSL".to_owned()),
            ("sasl.mechanism", mechanism.to_owned()),
            ("sasl.username", self.scram_user.clone()),
            ("sasl.password", self.scram_password.clone()),
            ("ssl.ca.location", self.ca_file.display().to_string()),
        ])
    }

    /// librdkafka properties for the SSL listener.
    pub fn ssl_properties(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("security.protocol", "SSL".to_owned()),
            ("ssl.ca.location", self.ca_file.display().to_string()),
        ])
    }
}

/// The shared broker's SSL and SASL_SSL listeners, checked to answer with the SCRAM user. A
/// broker started by an older `services.sh` (without them) is restarted through `services.sh
/// start`, unless `WEIR_TEST_NO_START` is set: then the test fails saying so.
pub fn secure_kafka() -> &'static SecureKafka {
    static SECURE: OnceLock<SecureKafka> = OnceLock::new();
    SECURE.get_or_init(|| {
        ensure();
        std::thread::spawn(|| {
            if let Some(ready) = secure_from_env().filter(|s| secure_answers(s).is_ok()) {
                return ready;
            }
            if std::env::var_os("WEIR_TEST_NO_START").is_some() {
                panic!(
                    "the broker's SSL and SASL_SSL listeners do not answer (or lack the SCRAM \
                     user) and WEIR_TEST_NO_START is set; restart the broker with `{} up`",
                    script().display()
                );
            }
            start_with_script(&["Kafka's SSL and SASL_SSL listeners".to_owned()]);
            let secure = secure_from_env().unwrap_or_else(|| {
                panic!("`{} env` names no SSL or SASL_SSL listener", script().display())
            });
            if let Err(e) = secure_answers(&secure) {
                panic!(
                    "the broker's secure listeners still do not answer after `{} start`: {e}",
                    script().display()
                );
            }
            secure
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// From the environment, or else from `services.sh env` (which reads the same port and
/// directory variables); `None` when either names no secure listener or the password file is
/// not there yet (the broker was never started by this script's current version).
fn secure_from_env() -> Option<SecureKafka> {
    let printed = Command::new("bash")
        .arg(script())
        .arg("env")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} env: {e}", script().display()));
    let from_script: BTreeMap<String, String> = String::from_utf8_lossy(&printed.stdout)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let var = |name: &str| std::env::var(name).ok().or_else(|| from_script.get(name).cloned());
    let scram_password_file = PathBuf::from(var("WEIR_KAFKA_SCRAM_PASSWORD_FILE")?);
    let scram_password = std::fs::read_to_string(&scram_password_file).ok()?.trim().to_owned();
    Some(SecureKafka {
        ssl_brokers: var("WEIR_KAFKA_SSL_BROKERS")?,
        sasl_ssl_brokers: var("WEIR_KAFKA_SASL_SSL_BROKERS")?,
        ca_file: PathBuf::from(var("WEIR_KAFKA_CA_FILE")?),
        scram_user: var("WEIR_KAFKA_SCRAM_USER")?,
        scram_password_file,
        scram_password,
    })
}

/// A metadata request on each secure listener, SASL_SSL with the SCRAM user.
fn secure_answers(secure: &SecureKafka) -> Result<(), String> {
    let listeners = [
        (&secure.ssl_brokers, secure.ssl_properties()),
        (&secure.sasl_ssl_brokers, secure.sasl_properties("SCRAM-SHA-512")),
    ];
    for (brokers, properties) in listeners {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers.as_str()).set("log_level", "0");
        for (key, value) in properties {
            config.set(key, value);
        }
        let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
        consumer
            .fetch_metadata(None, Duration::from_secs(5))
            .map_err(|e| format!("Kafka at {brokers}: {e}"))?;
    }
    Ok(())
}
