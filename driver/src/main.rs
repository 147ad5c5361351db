use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use weir_common::config::JobConfig;

/// The Weir driver: plans a job's batches, hands them to executors, checkpoints in etcd.
#[derive(Parser)]
#[command(name = "weir-driver", version, about)]
struct Args {
    /// The job config (TOML). See docs/configuration.md.
    #[arg(long, env = "WEIR_CONFIG")]
    config: PathBuf,
    /// Overrides one config key, after the file and WEIR__SECTION__KEY variables:
    /// `--set job.batch_interval=2s`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

/// `weir-driver health`: a container's health check, without curl.
#[derive(Parser)]
#[command(name = "weir-driver health")]
struct HealthArgs {
    /// The driver's `driver.http_listen` address.
    #[arg(long, env = "WEIR_DRIVER_HTTP", default_value = "127.0.0.1:7071")]
    http: String,
    /// Only check that the process answers (`/healthz`), not that it is ready (`/readyz`).
    #[arg(long)]
    live: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // `weir-driver health [--http ADDR] [--live]`: exit 0 when ready (or alive), 1 otherwise.
    if std::env::args().nth(1).as_deref() == Some("health") {
        let health = HealthArgs::parse_from(std::env::args().skip(1));
        return weir_common::health::check(&health.http, health.live).await;
    }
    let args = Args::parse();
    weir_common::telemetry::init();
    let open_files = weir_common::limits::raise_open_files();
    tracing::debug!(?open_files, "Open files limit");
    let config = match JobConfig::load(Some(&args.config), std::env::vars(), &args.overrides) {
        Ok(config) => Arc::new(config),
        Err(e) => {
            eprintln!("weir-driver: invalid config: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match weir_driver::run(config, weir_common::shutdown::signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "Driver stopped");
            eprintln!("weir-driver: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
