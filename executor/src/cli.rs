//! The executor's command line, shared by `weir-executor` and by executors users build with
//! their own transforms (see `examples/custom_transform.rs`): the flags of a run, and the
//! `health` sub-command a container checks a running executor with.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};

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
        Ok(ExecutorOptions {
            tls,
            allow_kafka_code: self.allow_kafka_code,
            id: self.id.unwrap_or_else(|| format!("{host}-{}", std::process::id())),
            address: host,
            etcd: self.etcd,
            prefix: self.prefix,
            job: self.job,
            driver: self.driver,
            slots: self.slots,
        })
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
    fn the_health_check_asks_the_listen_address_on_loopback_when_it_is_a_wildcard() {
        let target = |http: &str| HealthArgs { http: http.into(), live: false }.target();
        assert_eq!(target("127.0.0.1:9000"), "127.0.0.1:9000");
        assert_eq!(target("0.0.0.0:7072"), "127.0.0.1:7072");
        assert_eq!(target("[::]:7072"), "[::1]:7072");
        assert_eq!(target("http://executor-1:7072"), "executor-1:7072");
        assert_eq!(target("off"), "127.0.0.1:7072", "the run's default: ask the default address");
    }
}
