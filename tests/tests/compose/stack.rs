//! One Compose project of `deploy/compose/compose.ha.yaml` for the suite: started on free
//! loopback ports with the suite's own job, driven through `deploy/compose/compose.sh` and the
//! Docker client of `deploy/docker/engine.sh`, and removed with its networks and volumes when
//! dropped, also when the test panics (its containers' logs are kept then).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use weir_common::health;
use weir_tests::job::free_port;

/// The job the suite runs on the stack.
pub const JOB: &str = "compose-faults";
pub const INPUT: &str = "compose-in";
pub const OUTPUT: &str = "compose-out";
pub const PARTITIONS: i32 = 8;

/// The job config the drivers mount; the Compose file's environment sets the brokers, etcd and
/// listen addresses.
const CONFIG: &str = r#"[job]
name = "compose-faults"
batch_interval = "500ms"

[source]
brokers = "kafka-1:9092"
topics = ["compose-in"]

[sink]
type = "kafka"
topic = "compose-out"
partitioning = "same-as-input"
guarantee = "exactly-once"
"#;

pub struct Stack {
    root: PathBuf,
    project: String,
    env: Vec<(String, String)>,
    pub kafka_ports: [u16; 3],
    pub etcd_port: u16,
    /// The status ports of driver-1 and driver-2 on 127.0.0.1.
    pub status_ports: [u16; 2],
    dir: PathBuf,
    etcd_login: Option<weir_tests::etcd::Login>,
}

impl Stack {
    /// Builds the images (cached), writes the job config and starts the HA file without the
    /// demo's producer; returns when driver-1 leads.
    pub fn up() -> Stack {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let project = format!("weir-faults-{}", std::process::id());
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&project);
        std::fs::create_dir_all(&dir).expect("the suite's directory");
        let config = dir.join("job.toml");
        std::fs::write(&config, CONFIG).expect("the job config");
        let kafka_ports = [free_port(), free_port(), free_port()];
        let (etcd_port, status_ports) = (free_port(), [free_port(), free_port()]);
        let env = vec![
            ("WEIR_COMPOSE_PROJECT".into(), project.clone()),
            ("WEIR_COMPOSE_JOB_CONFIG".into(), config.display().to_string()),
            ("WEIR_COMPOSE_JOB".into(), JOB.into()),
            ("WEIR_COMPOSE_TOPICS".into(), format!("{INPUT}:{PARTITIONS} {OUTPUT}:{PARTITIONS}")),
            ("WEIR_COMPOSE_KAFKA_PORT_1".into(), kafka_ports[0].to_string()),
            ("WEIR_COMPOSE_KAFKA_PORT_2".into(), kafka_ports[1].to_string()),
            ("WEIR_COMPOSE_KAFKA_PORT_3".into(), kafka_ports[2].to_string()),
            ("WEIR_COMPOSE_ETCD_PORT".into(), etcd_port.to_string()),
            ("WEIR_COMPOSE_STATUS_PORT".into(), status_ports[0].to_string()),
            ("WEIR_COMPOSE_STANDBY_STATUS_PORT".into(), status_ports[1].to_string()),
        ];
        let mut stack = Stack {
            root,
            project,
            env,
            kafka_ports,
            etcd_port,
            status_ports,
            dir,
            etcd_login: None,
        };
        stack.script("deploy/docker/images.sh", &["build"]);
        stack.compose(&["up", "-d", "--scale", "producer=0"]);
        stack.log_in();
        stack
    }

    /// The stack is secure: the suite reads, as an operator with access to the host would, the
    /// deployment's CA, etcd's root password and the Kafka user's password from the secrets
    /// volume (through etcd-1, which mounts it), and uses them for its own clients.
    fn log_in(&mut self) {
        let etcd_1 = self.container("etcd-1");
        let secret = |path: &str| {
            self.docker(&["exec", "-u", "0", &etcd_1, "cat", &format!("/run/weir/secrets/{path}")])
                .trim()
                .to_owned()
        };
        let ca = self.dir.join("ca.pem");
        std::fs::write(&ca, secret("ca.pem") + "\n").expect("the CA file");
        let (root, kafka) = (secret("root/etcd-root-password"), secret("weir/kafka-password"));
        weir_tests::kafka::use_client_properties(vec![
            ("security.protocol".into(), "SASL_SSL".into()),
            ("sasl.mechanism".into(), "SCRAM-SHA-512".into()),
            ("sasl.username".into(), "weir".into()),
            ("sasl.password".into(), kafka),
            ("ssl.ca.location".into(), ca.display().to_string()),
        ]);
        self.etcd_login =
            Some(weir_tests::etcd::Login { ca, cert: None, user: Some(("root".into(), root)) });
    }

    /// A client of the stack's etcd, through etcd-1's published port, as its root user.
    pub async fn etcd_client(&self) -> etcd_client::Client {
        weir_tests::etcd::client_with(&self.etcd(), self.etcd_login.as_ref()).await
    }

    /// The brokers' listeners for the host.
    pub fn brokers(&self) -> String {
        self.kafka_ports.map(|p| format!("127.0.0.1:{p}")).join(",")
    }

    pub fn etcd(&self) -> Vec<String> {
        vec![format!("https://127.0.0.1:{}", self.etcd_port)]
    }

    fn script(&self, script: &str, args: &[&str]) -> Output {
        let mut command = Command::new("bash");
        command.arg(self.root.join(script)).args(args).current_dir(&self.root);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let output = command.output().unwrap_or_else(|e| panic!("bash {script}: {e}"));
        assert!(
            output.status.success(),
            "{script} {args:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// `docker-compose` on the HA file and this project.
    pub fn compose(&self, args: &[&str]) -> String {
        let mut all = vec!["dc", "--ha"];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&self.script("deploy/compose/compose.sh", &all).stdout).into()
    }

    /// The Docker client that suits the daemon.
    pub fn docker(&self, args: &[&str]) -> String {
        let mut all = vec!["docker"];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&self.script("deploy/docker/engine.sh", &all).stdout).into()
    }

    /// The ids of a service's containers, oldest first.
    pub fn containers(&self, service: &str) -> Vec<String> {
        self.compose(&["ps", "-q", service]).lines().map(str::to_owned).collect()
    }

    pub fn container(&self, service: &str) -> String {
        let ids = self.containers(service);
        assert_eq!(ids.len(), 1, "{service}: one container expected, found {ids:?}");
        ids.into_iter().next().unwrap()
    }

    /// The project's network `name` (`weir` or `etcd`).
    pub fn network(&self, name: &str) -> String {
        format!("{}_{name}", self.project)
    }

    /// Kills the container's main process from the host, as a crash would: its restart policy
    /// starts it again (`docker kill` would count as an operator's stop).
    pub fn crash(&self, container: &str) {
        let pid = self.docker(&["inspect", "-f", "{{.State.Pid}}", container]);
        let pid: i32 = pid.trim().parse().expect("container pid");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)
            .expect("kill -9 the container's process");
    }

    /// What a driver's `/readyz` answers (`leading job ...`, `standby: ...`), or why none.
    pub async fn readyz(&self, driver: usize) -> String {
        let base = format!("127.0.0.1:{}", self.status_ports[driver]);
        match health::get(&base, "/readyz", Duration::from_secs(2)).await {
            Ok((_, body)) => body.trim().to_owned(),
            Err(e) => e,
        }
    }

    pub async fn leads(&self, driver: usize) -> bool {
        self.readyz(driver).await.starts_with("leading job")
    }

    /// Which driver (0 or 1) leads, waiting up to `limit` for one to.
    pub async fn leader(&self, limit: Duration) -> usize {
        let started = Instant::now();
        loop {
            for driver in 0..2 {
                if self.leads(driver).await {
                    return driver;
                }
            }
            assert!(started.elapsed() < limit, "no driver leads after {limit:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The leading driver's `/metrics`.
    pub async fn metrics(&self, driver: usize) -> String {
        let base = format!("127.0.0.1:{}", self.status_ports[driver]);
        health::get(&base, "/metrics", Duration::from_secs(2))
            .await
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// A driver's `/api/status`, or why there is none (for a failure's message).
    pub async fn api_status(&self, driver: usize) -> String {
        let base = format!("127.0.0.1:{}", self.status_ports[driver]);
        match health::get(&base, "/api/status", Duration::from_secs(5)).await {
            Ok((code, body)) => format!("driver-{} ({code}): {body}", driver + 1),
            Err(e) => format!("driver-{}: {e}", driver + 1),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.dir.join("containers.log");
            if let Ok(output) = Command::new("bash")
                .arg(self.root.join("deploy/compose/compose.sh"))
                .args(["dc", "--ha", "logs", "--no-color", "--timestamps"])
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .output()
            {
                let _ = std::fs::write(&log, &output.stdout);
                eprintln!("the containers' logs: {}", log.display());
            }
        }
        let down = Command::new("bash")
            .arg(self.root.join("deploy/compose/compose.sh"))
            .args(["dc", "--ha", "down", "-v", "--remove-orphans", "-t", "10"])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output();
        match down {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "removing project {} failed:\n{}",
                self.project,
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(e) => eprintln!("removing project {} failed: {e}", self.project),
        }
    }
}
