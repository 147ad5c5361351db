//! How every Weir process reaches etcd: the endpoints, TLS and a user (the driver's and
//! `weirctl`'s from `[checkpoint]`, an executor's from its `--etcd-*` flags) made into one
//! etcd-client connection; and the one reading of etcd's refusals that no wait can mend (a wrong
//! password, a missing permission).
//!
//! Invariants: an `https://` endpoint is spoken to only with the configured CA (no system roots,
//! no fallback to plaintext); the password is read from its secret reference each time a client
//! is made and kept in no config; a client with a user renews its token itself when etcd lets it
//! expire (`--auth-token-ttl`, or an etcd restart), so only refused credentials end a process.

use std::fmt;
use std::path::{Path, PathBuf};

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

use crate::config::{CheckpointConfig, EtcdTls, secrets};

/// How often an etcd connection is pinged, and how long a ping may go unanswered before the
/// connection is dropped: a vanished member is noticed within about 4 s.
const KEEP_ALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
const KEEP_ALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Where a process's etcd is and how it logs in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EtcdAccess {
    pub endpoints: Vec<String>,
    /// TLS to etcd; `None`: plaintext, and then every endpoint is `http://`.
    pub tls: Option<EtcdTls>,
    pub user: Option<String>,
    /// `user`'s password, as a secret reference (`${env:NAME}`, `${file:PATH}`).
    pub password: Option<String>,
}

/// The part of an [`EtcdAccess`] that cannot be used, so each caller names its own key or flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessPart {
    Endpoints,
    Ca,
    Cert,
    Key,
    Password,
}

impl AccessPart {
    /// The job config's key for it.
    pub fn config_key(self) -> &'static str {
        match self {
            AccessPart::Endpoints => "checkpoint.etcd",
            AccessPart::Ca => "checkpoint.tls.ca",
            AccessPart::Cert => "checkpoint.tls.cert",
            AccessPart::Key => "checkpoint.tls.key",
            AccessPart::Password => "checkpoint.password",
        }
    }

    /// The executor's and `weirctl`'s flag for it.
    pub fn flag(self) -> &'static str {
        match self {
            AccessPart::Endpoints => "--etcd",
            AccessPart::Ca => "--etcd-ca",
            AccessPart::Cert => "--etcd-cert",
            AccessPart::Key => "--etcd-key",
            AccessPart::Password => "--etcd-password-file",
        }
    }
}

/// An access that cannot be used as given: a file that cannot be read, a password reference
/// that does not resolve. Never retryable: the operator must fix the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct AccessError {
    pub part: AccessPart,
    pub reason: String,
}

impl EtcdAccess {
    /// The driver's and `weirctl`'s access: `[checkpoint]`.
    pub fn from_config(checkpoint: &CheckpointConfig) -> Self {
        EtcdAccess {
            endpoints: checkpoint.etcd.clone(),
            tls: checkpoint.tls.clone(),
            user: checkpoint.user.clone(),
            password: checkpoint.password.clone(),
        }
    }

    /// Where and as whom, for messages: `https://etcd-1:2379 as user weir-driver`.
    pub fn describe(&self) -> String {
        let endpoints = self.endpoints.join(",");
        match (&self.user, self.tls.as_ref().and_then(|t| t.cert.as_ref())) {
            (Some(user), _) => format!("{endpoints} as user {user}"),
            (None, Some(cert)) => format!("{endpoints} with client certificate {}", cert.display()),
            (None, None) => endpoints,
        }
    }

    /// The etcd-client options for this access (without timeouts, which each caller chooses):
    /// the TLS files read and parsed, the password read from its reference. Called at start, so
    /// a broken setting stops a process at once, and again for every client made.
    pub fn options(&self) -> Result<ConnectOptions, AccessError> {
        // HTTP/2 pings find a connection to a member that vanished (a killed container, a
        // dropped route): without them the connection looks alive, requests on it wait out their
        // timeout, and the client keeps choosing it instead of the members that answer.
        let mut options = ConnectOptions::new()
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
            .with_keep_alive_while_idle(true);
        if let Some(tls) = &self.tls {
            options = options.with_tls(self.tls_options(tls)?);
        }
        if let Some(user) = &self.user {
            let no_password = || "a user needs a password".to_owned();
            let password = self
                .password
                .as_deref()
                .ok_or_else(no_password)
                .and_then(secrets::resolve)
                .map_err(|reason| AccessError { part: AccessPart::Password, reason })?;
            // Tokens expire (etcd's --auth-token-ttl; all of them when etcd restarts): the
            // client authenticates again and repeats the request, rather than failing it.
            options = options.with_user(user, password.into_owned()).with_auto_token_refresh(true);
        }
        Ok(options)
    }

    fn tls_options(&self, tls: &EtcdTls) -> Result<TlsOptions, AccessError> {
        let ca = read(AccessPart::Ca, &tls.ca)?;
        if !String::from_utf8_lossy(&ca).contains("-----BEGIN CERTIFICATE-----") {
            let reason = format!("{} holds no PEM certificate", tls.ca.display());
            return Err(AccessError { part: AccessPart::Ca, reason });
        }
        let mut options = TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
        match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => {
                let identity =
                    Identity::from_pem(read(AccessPart::Cert, cert)?, read(AccessPart::Key, key)?);
                options = options.identity(identity);
            }
            (None, None) => {}
            (Some(_), None) => return Err(together(AccessPart::Key)),
            (None, Some(_)) => return Err(together(AccessPart::Cert)),
        }
        // tonic parses the files only here: a key that is not one fails now, not at each
        // connection attempt.
        let endpoint = self.endpoints.iter().find(|e| e.starts_with("https://"));
        let Some(endpoint) = endpoint else {
            let reason = "TLS is set: give https:// endpoints".to_owned();
            return Err(AccessError { part: AccessPart::Endpoints, reason });
        };
        tonic::transport::Endpoint::from_shared(endpoint.clone())
            .map_err(|e| AccessError { part: AccessPart::Endpoints, reason: e.to_string() })?
            .tls_config(options.clone())
            .map_err(|e| AccessError {
                part: AccessPart::Cert,
                reason: format!("the certificate or key is not usable: {}", chain(&e)),
            })?;
        Ok(options)
    }
}

fn read(part: AccessPart, path: &PathBuf) -> Result<Vec<u8>, AccessError> {
    std::fs::read(Path::new(path))
        .map_err(|e| AccessError { part, reason: format!("cannot read {}: {e}", path.display()) })
}

fn together(missing: AccessPart) -> AccessError {
    AccessError { part: missing, reason: "a client certificate needs both cert and key".into() }
}

/// Why etcd refused this process when waiting cannot help: what it was told about its
/// credentials or its permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A wrong password, or a user etcd does not know.
    BadCredentials,
    /// Authentication is on and no user was given (nor a client certificate etcd took as one).
    NoUser,
    /// A user was given, and etcd's authentication is off.
    AuthDisabled,
    /// The user's roles do not allow the request.
    PermissionDenied,
    /// etcd's certificate does not verify against the configured CA (another CA, expired, not
    /// naming the endpoint's host).
    UntrustedServer,
}

impl Refusal {
    /// What the operator can do about it.
    pub fn hint(self) -> &'static str {
        match self {
            Refusal::BadCredentials => "check the user and its password (docs/security.md#etcd)",
            Refusal::NoUser => {
                "etcd has authentication on: give a user and password, or a client certificate \
                 whose common name is a user (docs/security.md#etcd)"
            }
            Refusal::AuthDisabled => {
                "etcd has authentication off: remove the user, or enable etcd's authentication \
                 (docs/security.md#etcd)"
            }
            Refusal::PermissionDenied => {
                "the user's roles do not allow this; grant the role docs/security.md#etcd gives \
                 this process"
            }
            Refusal::UntrustedServer => {
                "give the CA that signed etcd's certificate, and check that the certificate is \
                 valid now and names the endpoint's host (docs/security.md#etcd)"
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::BadCredentials => "authentication failed",
            Refusal::NoUser => "no user given",
            Refusal::AuthDisabled => "authentication is not enabled",
            Refusal::PermissionDenied => "permission denied",
            Refusal::UntrustedServer => "etcd's certificate is not trusted",
        })
    }
}

/// etcd's answer read as a [`Refusal`], or `None` for anything waiting may mend (etcd away, no
/// leader, a timeout, an expired token the client renews itself, an auth store changed
/// meanwhile). A client certificate etcd refuses is not told apart: etcd closes the connection,
/// as a server going away does.
pub fn refusal(error: &etcd_client::Error) -> Option<Refusal> {
    let message = message(error);
    // etcd's own texts (rpctypes); services built on its in-process client (Lock, Election)
    // keep the text but lose the code, so the text decides. rustls words a server certificate
    // that does not verify "invalid peer certificate".
    if message.contains("invalid peer certificate") {
        return Some(Refusal::UntrustedServer);
    }
    let etcd_client::Error::GRpcStatus(_) = error else { return None };
    if message.contains("authentication failed") || message.contains("user name not found") {
        Some(Refusal::BadCredentials)
    } else if message.contains("user name is empty") {
        Some(Refusal::NoUser)
    } else if message.contains("authentication is not enabled") {
        Some(Refusal::AuthDisabled)
    } else if message.contains("permission denied") {
        Some(Refusal::PermissionDenied)
    } else {
        None
    }
}

/// What etcd said: a gRPC status's message alone (its `Display` adds the code, details and
/// metadata), other errors with their sources.
pub fn message(error: &etcd_client::Error) -> String {
    match error {
        etcd_client::Error::GRpcStatus(status) => status.message().to_owned(),
        other => chain(other),
    }
}

/// An error with its sources, `: `-joined (a transport error alone says only "transport error").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: tonic::Code, message: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, message))
    }

    #[test]
    fn refusals_are_told_from_what_waiting_mends() {
        use tonic::Code;
        let wrong = "etcdserver: authentication failed, invalid user ID or password";
        assert_eq!(refusal(&status(Code::InvalidArgument, wrong)), Some(Refusal::BadCredentials));
        let denied = status(Code::PermissionDenied, "etcdserver: permission denied");
        assert_eq!(refusal(&denied), Some(Refusal::PermissionDenied));
        let empty = status(Code::InvalidArgument, "etcdserver: user name is empty");
        assert_eq!(refusal(&empty), Some(Refusal::NoUser));
        let off = status(Code::FailedPrecondition, "etcdserver: authentication is not enabled");
        assert_eq!(refusal(&off), Some(Refusal::AuthDisabled));
        let unknown = status(Code::Unknown, "etcdserver: user name not found");
        assert_eq!(refusal(&unknown), Some(Refusal::BadCredentials), "the code may be lost");
        // The client renews an expired token itself; an auth store changed meanwhile, a leader
        // election, an etcd away: all mended by waiting.
        for (code, text) in [
            (Code::Unauthenticated, "etcdserver: invalid auth token"),
            (Code::FailedPrecondition, "etcdserver: revision of auth store is old"),
            (Code::Unavailable, "etcdserver: no leader"),
            (Code::Unavailable, "connection refused"),
        ] {
            assert_eq!(refusal(&status(code, text)), None, "{text}");
        }
        assert_eq!(refusal(&etcd_client::Error::InvalidArgs("x".into())), None);
        let untrusted = status(Code::Unavailable, "invalid peer certificate: UnknownIssuer");
        assert_eq!(refusal(&untrusted), Some(Refusal::UntrustedServer));
        let closed = status(Code::Cancelled, "operation was canceled");
        assert_eq!(refusal(&closed), None, "etcd closing the connection may be etcd going away");
    }

    #[test]
    fn the_description_names_the_user_or_the_certificate() {
        let mut access = EtcdAccess {
            endpoints: vec!["https://e1:2379".into(), "https://e2:2379".into()],
            ..EtcdAccess::default()
        };
        assert_eq!(access.describe(), "https://e1:2379,https://e2:2379");
        access.tls = Some(EtcdTls {
            ca: "ca.pem".into(),
            cert: Some("ex.pem".into()),
            key: Some("ex.key".into()),
        });
        assert_eq!(
            access.describe(),
            "https://e1:2379,https://e2:2379 with client certificate ex.pem"
        );
        access.user = Some("weir-driver".into());
        assert_eq!(access.describe(), "https://e1:2379,https://e2:2379 as user weir-driver");
    }

    #[test]
    fn a_broken_setting_names_its_part() {
        let dir = std::env::temp_dir().join(format!("weir-etcd-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("ca.txt");
        std::fs::write(&not_pem, "not a certificate").unwrap();
        let mut access = EtcdAccess {
            endpoints: vec!["https://127.0.0.1:2379".into()],
            tls: Some(EtcdTls { ca: dir.join("missing.pem"), cert: None, key: None }),
            ..EtcdAccess::default()
        };
        let err = access.options().unwrap_err();
        assert_eq!(err.part, AccessPart::Ca);
        assert!(err.reason.starts_with("cannot read ") && err.reason.contains("missing.pem"));
        access.tls = Some(EtcdTls { ca: not_pem.clone(), cert: None, key: None });
        assert!(access.options().unwrap_err().reason.contains("holds no PEM certificate"));
        access.tls = None;
        access.endpoints = vec!["http://127.0.0.1:2379".into()];
        access.user = Some("weir-driver".into());
        access.password = Some("${env:WEIR_ETCD_ACCESS_TEST_UNSET}".into());
        let err = access.options().unwrap_err();
        assert_eq!(
            (err.part.config_key(), err.part.flag()),
            ("checkpoint.password", "--etcd-password-file")
        );
        assert!(err.reason.contains("WEIR_ETCD_ACCESS_TEST_UNSET is not set"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
