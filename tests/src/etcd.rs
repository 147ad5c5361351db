//! etcd helpers for tests: a connected client, and a per-test key prefix.

use std::time::Duration;

use crate::services;
use crate::supervisor::Supervisor;

/// A client connected to the test etcd. Fails the test with the address when it cannot connect.
pub async fn client() -> etcd_client::Client {
    client_at(&services::ensure().etcd_endpoints).await
}

/// A client connected to the etcd at `endpoints`.
pub async fn client_at(endpoints: &[String]) -> etcd_client::Client {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(10));
    etcd_client::Client::connect(endpoints, Some(options))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to etcd at {endpoints:?}: {e}"))
}

/// `/weir-test/{name}/`: every key a test writes lives under its own prefix.
pub fn prefix(name: &str) -> String {
    format!("/weir-test/{name}/")
}

/// An etcd server of a test's own (Debian's `etcd`, one member on free loopback ports, its data
/// in the test's log directory), run under the test's [`Supervisor`] so that the test can pause,
/// kill and restart it without touching the etcd other tests share. The supervisor kills it when
/// the test ends.
pub struct PrivateEtcd {
    pub name: String,
    pub endpoint: String,
    peer: String,
    data_dir: std::path::PathBuf,
}

impl PrivateEtcd {
    /// Starts it as the supervisor's child `name` and waits until it answers.
    pub async fn start(supervisor: &mut Supervisor, name: &str) -> Self {
        let (client, peer) = (crate::job::free_port(), crate::job::free_port());
        let etcd = PrivateEtcd {
            name: name.to_owned(),
            endpoint: format!("http://127.0.0.1:{client}"),
            peer: format!("http://127.0.0.1:{peer}"),
            data_dir: supervisor.log_dir().join(format!("{name}.data")),
        };
        etcd.restart(supervisor).await;
        etcd
    }

    /// Starts it again on the same ports and data (after a kill), and waits until it answers.
    pub async fn restart(&self, supervisor: &mut Supervisor) {
        let mut command = std::process::Command::new("etcd");
        command
            .args(["--name", &self.name, "--data-dir"])
            .arg(&self.data_dir)
            .args([
                "--listen-client-urls",
                &self.endpoint,
                "--advertise-client-urls",
                &self.endpoint,
            ])
            .args(["--listen-peer-urls", &self.peer, "--initial-advertise-peer-urls", &self.peer])
            .args(["--initial-cluster", &format!("{}={}", self.name, self.peer)]);
        supervisor.spawn(&self.name, command);
        let started = std::time::Instant::now();
        loop {
            let options = etcd_client::ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(1))
                .with_timeout(Duration::from_secs(1));
            let endpoints = [self.endpoint.clone()];
            if let Ok(mut c) = etcd_client::Client::connect(endpoints, Some(options)).await
                && c.status().await.is_ok()
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "etcd {} did not start",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint.clone()]
    }
}
