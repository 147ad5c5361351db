//! etcd helpers for tests: a connected client (plain, or logged in to an etcd with TLS and
//! users), a per-test key prefix, and an etcd of a test's own, plain or secured.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::certs::{CertFiles, TestCa};
use crate::services;
use crate::supervisor::Supervisor;

/// A client connected to the test etcd. Fails the test with the address when it cannot connect.
pub async fn client() -> etcd_client::Client {
    client_at(&services::ensure().etcd_endpoints).await
}

/// A client connected to the etcd at `endpoints`.
pub async fn client_at(endpoints: &[String]) -> etcd_client::Client {
    client_with(endpoints, None).await
}

/// A client connected to the etcd at `endpoints`, with `login`'s TLS and user when given (a
/// secured [`PrivateEtcd`]'s root).
pub async fn client_with(endpoints: &[String], login: Option<&Login>) -> etcd_client::Client {
    let options = login
        .map_or_else(etcd_client::ConnectOptions::new, Login::options)
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(10));
    etcd_client::Client::connect(endpoints, Some(options))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to etcd at {endpoints:?}: {e}"))
}

/// How a client logs in to an etcd with TLS and authentication: the CA of its certificate, a
/// client certificate, a user and password.
#[derive(Clone)]
pub struct Login {
    pub ca: PathBuf,
    pub cert: Option<CertFiles>,
    pub user: Option<(String, String)>,
}

impl Login {
    /// The etcd-client options (no timeouts), the files read now.
    pub fn options(&self) -> etcd_client::ConnectOptions {
        let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let mut tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(&self.ca)));
        if let Some(cert) = &self.cert {
            let identity = etcd_client::Identity::from_pem(read(&cert.cert), read(&cert.key));
            tls = tls.identity(identity);
        }
        let options = etcd_client::ConnectOptions::new().with_tls(tls);
        match &self.user {
            Some((user, password)) => options.with_user(user, password),
            None => options,
        }
    }
}

/// The password of the `root` user of a secured [`PrivateEtcd`].
pub const ROOT_PASSWORD: &str = "weir-test-root";

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
    /// TLS and authentication, when started with [`PrivateEtcd::start_secured`].
    pub secured: Option<Secured>,
}

/// How a secured [`PrivateEtcd`] runs: TLS with its server certificate, client certificates
/// required (`--client-cert-auth`) and authentication on, with a `root` user.
pub struct Secured {
    /// Signs etcd's server certificate and the clients' certificates; issue them with it.
    pub ca: TestCa,
    server: CertFiles,
    /// `--auth-token-ttl`: how long an unused token stays valid.
    token_ttl: Duration,
    /// `root` with its certificate and [`ROOT_PASSWORD`]: for the harness's reads and the
    /// test's set-up of users and roles.
    pub root: Login,
}

impl PrivateEtcd {
    /// Starts it as the supervisor's child `name` and waits until it answers.
    pub async fn start(supervisor: &mut Supervisor, name: &str) -> Self {
        let etcd = Self::new(supervisor, name, "http", None);
        etcd.restart(supervisor).await;
        etcd
    }

    /// Starts it with TLS (a CA of its own in the test's directory), client certificates
    /// required, and authentication on: a `root` user (role `root`, password
    /// [`ROOT_PASSWORD`], a certificate) is created and `auth enable` run, so every later
    /// client must log in. Tokens not used for `token_ttl` expire (`--auth-token-ttl`).
    pub async fn start_secured(
        supervisor: &mut Supervisor,
        name: &str,
        token_ttl: Duration,
    ) -> Self {
        let ca = TestCa::new(&supervisor.log_dir().join(format!("{name}-certs")), "etcd-ca");
        let server = ca.server_and_client(name);
        let root = Login {
            ca: ca.cert.clone(),
            cert: Some(ca.client("root")),
            user: Some(("root".to_owned(), ROOT_PASSWORD.to_owned())),
        };
        let secured = Secured { ca, server, token_ttl, root };
        let etcd = Self::new(supervisor, name, "https", Some(secured));
        etcd.restart(supervisor).await;
        // Before `auth enable` the root certificate alone gets in.
        let root = etcd.secured.as_ref().map(|s| Login { user: None, ..s.root.clone() });
        let mut client = client_with(&etcd.endpoints(), root.as_ref()).await;
        client.user_add("root", ROOT_PASSWORD, None).await.expect("etcd: add root");
        client.user_grant_role("root", "root").await.expect("etcd: grant root");
        client.auth_enable().await.expect("etcd: auth enable");
        etcd
    }

    fn new(supervisor: &Supervisor, name: &str, scheme: &str, secured: Option<Secured>) -> Self {
        let (client, peer) = (crate::job::free_port(), crate::job::free_port());
        PrivateEtcd {
            name: name.to_owned(),
            endpoint: format!("{scheme}://127.0.0.1:{client}"),
            peer: format!("http://127.0.0.1:{peer}"),
            data_dir: supervisor.log_dir().join(format!("{name}.data")),
            secured,
        }
    }

    /// A client logged in as `root` (secured) or plain.
    pub async fn root_client(&self) -> etcd_client::Client {
        client_with(&self.endpoints(), self.secured.as_ref().map(|s| &s.root)).await
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
        if let Some(secured) = &self.secured {
            command
                .arg("--cert-file")
                .arg(&secured.server.cert)
                .arg("--key-file")
                .arg(&secured.server.key)
                .arg("--trusted-ca-file")
                .arg(&secured.ca.cert)
                .arg("--client-cert-auth")
                .args(["--auth-token-ttl", &secured.token_ttl.as_secs().max(1).to_string()]);
        }
        supervisor.spawn(&self.name, command);
        let started = std::time::Instant::now();
        // The status needs no user: the root certificate is enough, with authentication on or not.
        let login = self.secured.as_ref().map(|s| Login { user: None, ..s.root.clone() });
        loop {
            let options = login
                .as_ref()
                .map_or_else(etcd_client::ConnectOptions::new, Login::options)
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
