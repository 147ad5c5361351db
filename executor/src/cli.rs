//! The executor's command line, shared by `weir-executor` and by executors users build with
//! their own transforms (see `examples/custom_transform.rs`): the flags of a run, and the
//! `health` sub-command a container checks a running executor with.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};

use weir_common::config::{CheckpointConfig, EtcdTls};
use weir_common::etcd::EtcdAccess;

use crate::ExecutorOptions;

/// Where `weir-executor health` looks when neither `--http` nor `WEIR_EXECUTOR_HTTP_LISTEN`
/// names an address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:7072";

/// A Weir executor: runs the tasks of one job's driver.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Check a running executor (exit 0 when ready): weir-executor health [--http ADDR] [--live]"
)]
pub struct ExecutorArgs {
    /// etcd endpoints (comma-separated) where the job's leader is recorded.
    #[arg(long, env = "WEIR_ETCD", value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub etcd: Vec<String>,
    /// The etcd key prefix (the job config's checkpoint.prefix).
    #[arg(long, env = "WEIR_PREFIX", default_value = "/weir")]
    pub prefix: String,
    /// The job to work for (its job.name).
    #[arg(long, env = "WEIR_JOB")]
    pub job: String,
    /// Attach to this driver URL instead of finding the leader in etcd.
    #[arg(long, env = "WEIR_DRIVER")]
    pub driver: Option<String>,
    /// Tasks run at once.
    #[arg(long, env = "WEIR_SLOTS", default_value_t = 2)]
    pub slots: u32,
    /// This executor's id (default: host name and process id).
    #[arg(long, env = "WEIR_EXECUTOR_ID")]
    pub id: Option<String>,
    /// Serve /healthz, /readyz and /metrics at this host:port, or `off`.
    #[arg(long, env = "WEIR_EXECUTOR_HTTP_LISTEN", default_value = "off", value_name = "ADDR")]
    pub http_listen: String,
    /// The CA that signed the driver's certificate (PEM): talk to the driver over TLS only.
    #[arg(long, env = "WEIR_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// This executor's client certificate (PEM), signed by the driver's `client_ca`.
    #[arg(long, env = "WEIR_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "WEIR_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<std::path::PathBuf>,
    /// A file holding the token the driver asks of executors (`driver.executor_token`); or the
    /// WEIR_EXECUTOR_TOKEN variable. Sent with every attach, never logged.
    #[arg(long, env = "WEIR_EXECUTOR_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// The CA of etcd's certificate (PEM): speak TLS to etcd (https:// endpoints).
    #[arg(long, env = "WEIR_ETCD_CA", value_name = "FILE")]
    pub etcd_ca: Option<std::path::PathBuf>,
    /// A client certificate for etcd (PEM), with --etcd-key; with etcd's authentication on and
    /// no --etcd-user, its common name is the user.
    #[arg(long, env = "WEIR_ETCD_CERT", value_name = "FILE")]
    pub etcd_cert: Option<std::path::PathBuf>,
    /// The etcd client certificate's private key (PEM).
    #[arg(long, env = "WEIR_ETCD_KEY", value_name = "FILE")]
    pub etcd_key: Option<std::path::PathBuf>,
    /// The etcd user; its password from --etcd-password-file or the WEIR_ETCD_PASSWORD variable.
    #[arg(long, env = "WEIR_ETCD_USER", value_name = "USER")]
    pub etcd_user: Option<String>,
    /// A file holding the etcd user's password (read at each connection, never logged).
    #[arg(long, env = "WEIR_ETCD_PASSWORD_FILE", value_name = "FILE")]
    pub etcd_password_file: Option<std::path::PathBuf>,
    /// Run jobs whose Kafka properties make librdkafka load or run code
    /// (plugin.library.paths, ssl.engine.location, ssl.providers, sasl.kerberos.kinit.cmd).
    #[arg(long, env = "WEIR_ALLOW_KAFKA_CODE")]
    pub allow_kafka_code: bool,
}

/// Asks a running executor over HTTP whether it is ready (attached to a driver) or, with --live,
/// only running; prints its answer; exits 0 if so, 1 if not.
#[derive(Debug, Parser)]
pub struct HealthArgs {
    /// The executor's --http-listen address (a wildcard host is asked on loopback).
    #[arg(long, env = "WEIR_EXECUTOR_HTTP_LISTEN", default_value = DEFAULT_HTTP, value_name = "ADDR")]
    pub http: String,
    /// Only check that the process runs (/healthz), not that it is attached (/readyz).
    #[arg(long)]
    pub live: bool,
}

impl HealthArgs {
    /// The address to ask: `--http`, with `off` (the run's default) read as the default
    /// address and a wildcard host (`0.0.0.0`, `[::]`) as loopback.
    pub fn target(&self) -> String {
        let listen = self.http.trim();
        if listen.is_empty() || listen == "off" {
            return DEFAULT_HTTP.to_owned();
        }
        let listen = listen.strip_prefix("http://").unwrap_or(listen);
        match listen.rsplit_once(':') {
            Some(("0.0.0.0", port)) => format!("127.0.0.1:{port}"),
            Some(("[::]", port)) => format!("[::1]:{port}"),
            _ => listen.to_owned(),
        }
    }
}

impl ExecutorArgs {
    /// The address to serve HTTP at, `None` when off; an error names the bad flag.
    pub fn http_address(&self) -> Result<Option<String>, String> {
        let listen = self.http_listen.trim();
        if listen.is_empty() || listen == "off" {
            return Ok(None);
        }
        match listen.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Some(listen.to_owned()))
            }
            _ => Err(format!(
                "--http-listen: expected host:port (like 127.0.0.1:7072) or off, got {listen:?}"
            )),
        }
    }

    /// The options `run` takes; an error names the bad flag.
    pub fn into_options(self) -> Result<ExecutorOptions, String> {
        if self.slots == 0 {
            return Err("--slots: must be at least 1, got 0".into());
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "executor".into());
        let tls = crate::tls::client_config(
            self.tls_ca.as_deref(),
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
        )?;
        let token = match (&self.token_file, std::env::var(TOKEN_VARIABLE)) {
            (Some(file), _) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| format!("--token-file: cannot read {}: {e}", file.display()))?
                    .trim()
                    .to_owned(),
            ),
            (None, Ok(token)) => Some(token.trim().to_owned()),
            (None, Err(_)) => None,
        };
        let token = token
            .map(|t| {
                tonic::metadata::MetadataValue::try_from(format!("Bearer {t}"))
                    .map_err(|_| "the executors' token: not a valid header value".to_owned())
            })
            .transpose()?;
        let password_in_env = std::env::var_os(PASSWORD_VARIABLE).is_some();
        let etcd = self.etcd_access(password_in_env)?;
        Ok(ExecutorOptions {
            tls,
            token,
            allow_kafka_code: self.allow_kafka_code,
            id: self.id.unwrap_or_else(|| format!("{host}-{}", std::process::id())),
            address: host,
            etcd,
            prefix: self.prefix,
            job: self.job,
            driver: self.driver,
            slots: self.slots,
        })
    }
}

/// The variable an executor may read the driver's token from, instead of a file.
pub const TOKEN_VARIABLE: &str = "WEIR_EXECUTOR_TOKEN";

/// The variable an executor may read its etcd password from, instead of a file (never a flag:
/// a command line is visible to every user of the machine).
pub const PASSWORD_VARIABLE: &str = "WEIR_ETCD_PASSWORD";

impl ExecutorArgs {
    /// How to reach etcd: `--etcd` and the `--etcd-*` flags, checked as the driver checks
    /// `[checkpoint]`, and the files and password read once now so a broken one fails the start.
    /// The password stays a reference, read again at each connection.
    fn etcd_access(&self, password_in_env: bool) -> Result<EtcdAccess, String> {
        let tls = match (&self.etcd_ca, &self.etcd_cert, &self.etcd_key) {
            (None, None, None) => None,
            (Some(ca), cert, key) => {
                Some(EtcdTls { ca: ca.clone(), cert: cert.clone(), key: key.clone() })
            }
            (None, _, _) => return Err("--etcd-cert and --etcd-key need --etcd-ca".into()),
        };
        let password = match (&self.etcd_password_file, password_in_env) {
            (Some(file), _) => Some(format!("${{file:{}}}", file.display())),
            (None, true) => Some(format!("${{env:{PASSWORD_VARIABLE}}}")),
            (None, false) => None,
        };
        let checkpoint = CheckpointConfig {
            etcd: self.etcd.clone(),
            // --prefix is the executor's own business (not checked here, as before).
            prefix: CheckpointConfig::default().prefix,
            user: self.etcd_user.clone(),
            password: password.filter(|_| self.etcd_user.is_some()),
            tls,
        };
        if self.etcd_user.is_some() && checkpoint.password.is_none() {
            return Err(format!(
                "--etcd-user needs a password: --etcd-password-file or {PASSWORD_VARIABLE}"
            ));
        }
        checkpoint.validate().map_err(|e| {
            let flags = [
                ("[checkpoint.tls] (ca)", "--etcd-ca"),
                ("[checkpoint.tls]", "--etcd-ca"),
                ("checkpoint.tls", "--etcd-cert and --etcd-key"),
                ("checkpoint.etcd", "--etcd"),
                ("checkpoint.user", "--etcd-user"),
            ];
            flags.iter().fold(e.to_string(), |text, (key, flag)| text.replace(key, flag))
        })?;
        let access = EtcdAccess::from_config(&checkpoint);
        access.options().map_err(|e| format!("{}: {e}", e.part.flag()))?;
        Ok(access)
    }
}

/// The whole `main` of an executor binary: parse the flags, start logging, run with
/// `transforms` until SIGTERM or Ctrl-C. Exit code 2 for bad flags, 1 for a failure.
/// `NAME health ...` runs the health check instead (see [`HealthArgs`]).
pub async fn main(transforms: crate::TransformRegistry) -> ExitCode {
    let name = std::env::args()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a).file_name().map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "weir-executor".into());
    // A sub-command of its own parser: a run needs --job, a health check must not.
    if std::env::args_os().nth(1).is_some_and(|first| first == "health") {
        return health(&name, std::env::args_os().skip(1)).await;
    }
    let args = ExecutorArgs::parse();
    weir_common::telemetry::init();
    let open_files = weir_common::limits::raise_open_files();
    tracing::debug!(?open_files, "Open files limit");
    let (options, http) =
        match args.http_address().and_then(|http| Ok((args.into_options()?, http))) {
            Ok(parsed) => parsed,
            Err(e) => {
                eprintln!("{name}: {e}");
                return ExitCode::from(2);
            }
        };
    // Bound before the run starts, so a taken port fails the start rather than a health check.
    let listener = match http {
        None => None,
        Some(address) => match tokio::net::TcpListener::bind(&address).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                eprintln!("{name}: --http-listen {address}: cannot listen: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    match crate::run_with_http(options, transforms, listener, weir_common::shutdown::signal()).await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `NAME health [--http ADDR] [--live]`; `args` start with `health`.
async fn health(name: &str, args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let command = HealthArgs::command().name("health").bin_name(format!("{name} health"));
    let matches = command.get_matches_from(args);
    let args = match HealthArgs::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    weir_common::health::check(&args.target(), args.live).await
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{ExecutorArgs, HealthArgs};

    fn run_args(http_listen: &str) -> ExecutorArgs {
        ExecutorArgs::parse_from(["weir-executor", "--job", "j", "--http-listen", http_listen])
    }

    #[test]
    fn http_is_off_unless_an_address_is_given() {
        assert_eq!(run_args("off").http_address(), Ok(None));
        assert_eq!(run_args("").http_address(), Ok(None));
        assert_eq!(run_args("0.0.0.0:7072").http_address(), Ok(Some("0.0.0.0:7072".into())));
        assert_eq!(run_args("[::]:7072").http_address(), Ok(Some("[::]:7072".into())));
        assert_eq!(run_args("executor-1:9100").http_address(), Ok(Some("executor-1:9100".into())));
        let bad = run_args("7072").http_address().unwrap_err();
        assert!(bad.starts_with("--http-listen: expected host:port"), "{bad}");
        assert!(run_args("host:http").http_address().is_err());
    }

    #[test]
    fn etcd_tls_and_a_user_come_from_flags_and_are_checked_at_start() {
        let dir = std::env::temp_dir().join(format!("weir-executor-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, password) = (dir.join("ca.pem"), dir.join("password"));
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
            .unwrap();
        std::fs::write(&password, "s3cret\n").unwrap();
        let access = |extra: &[&str], in_env: bool| {
            let mut args = vec!["weir-executor", "--job", "j"];
            args.extend_from_slice(extra);
            ExecutorArgs::parse_from(args).etcd_access(in_env)
        };
        let (ca, password) = (ca.to_str().unwrap(), password.to_str().unwrap());
        // SAFETY: no other test of this process reads or writes the variable.
        unsafe { std::env::set_var(super::PASSWORD_VARIABLE, "from-env") };
        let plain = access(&[], false).unwrap();
        assert_eq!((plain.tls, plain.user), (None, None), "plaintext, no user by default");
        let secured = access(
            &["--etcd", "https://e:2379", "--etcd-ca", ca, "--etcd-user", "weir-executor"],
            true,
        )
        .unwrap();
        assert_eq!(secured.password.as_deref(), Some("${env:WEIR_ETCD_PASSWORD}"));
        let from_file = ["--etcd", "https://e:2379", "--etcd-ca", ca, "--etcd-user", "u"];
        let file_flag = ["--etcd-password-file", password];
        let with_file = access(&[&from_file[..], &file_flag[..]].concat(), true).unwrap();
        assert_eq!(with_file.password, Some(format!("${{file:{password}}}")), "the file wins");

        let err = access(&["--etcd", "https://e:2379"], false).unwrap_err();
        assert!(err.starts_with("--etcd: got \"https://e:2379\", expected an http:// URL, or set --etcd-ca for https://"), "{err}");
        let err = access(&["--etcd-ca", ca], false).unwrap_err();
        assert!(err.contains("expected an https:// URL (--etcd-ca is set)"), "{err}");
        let err = access(&["--etcd-user", "u"], false).unwrap_err();
        assert!(err.contains("--etcd-user needs a password"), "{err}");
        let err = access(&["--etcd-cert", ca], false).unwrap_err();
        assert_eq!(err, "--etcd-cert and --etcd-key need --etcd-ca");
        let half = ["--etcd", "https://e:2379", "--etcd-ca", ca, "--etcd-cert", ca];
        let err = access(&half, false).unwrap_err();
        assert!(err.starts_with("--etcd-cert and --etcd-key: cert and key go together"), "{err}");
        let gone = ["--etcd", "https://e:2379", "--etcd-ca", "/nonexistent/ca.pem"];
        let err = access(&gone, false).unwrap_err();
        assert!(err.starts_with("--etcd-ca: cannot read /nonexistent/ca.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_health_check_asks_the_listen_address_on_loopback_when_it_is_a_wildcard() {
        let target = |http: &str| HealthArgs { http: http.into(), live: false }.target();
        assert_eq!(target("127.0.0.1:9000"), "127.0.0.1:9000");
        assert_eq!(target("0.0.0.0:7072"), "127.0.0.1:7072");
        assert_eq!(target("[::]:7072"), "[::1]:7072");
        assert_eq!(target("http://executor-1:7072"), "executor-1:7072");
        assert_eq!(target("off"), "127.0.0.1:7072", "the run's default: ask the default address");
    }
}
