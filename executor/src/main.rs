use clap::Parser;
use weir_executor::{ExecutorOptions, TransformRegistry};

/// The Weir executor: runs the tasks of one job's driver.
#[derive(Parser)]
#[command(name = "weir-executor", version, about)]
struct Args {
    /// etcd endpoints (comma-separated) where the job's leader is recorded.
    #[arg(long, env = "WEIR_ETCD", value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    etcd: Vec<String>,
    /// The etcd key prefix (the job config's checkpoint.prefix).
    #[arg(long, env = "WEIR_PREFIX", default_value = "/weir")]
    prefix: String,
    /// The job to work for (its job.name).
    #[arg(long, env = "WEIR_JOB")]
    job: String,
    /// Attach to this driver URL instead of finding the leader in etcd.
    #[arg(long, env = "WEIR_DRIVER")]
    driver: Option<String>,
    /// Tasks run at once.
    #[arg(long, env = "WEIR_SLOTS", default_value_t = 2)]
    slots: u32,
    /// This executor's id (default: host name and process id).
    #[arg(long, env = "WEIR_EXECUTOR_ID")]
    id: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    weir_common::telemetry::init();
    if args.slots == 0 {
        eprintln!("weir-executor: --slots: must be at least 1, got 0");
        return std::process::ExitCode::from(2);
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "executor".into());
    let options = ExecutorOptions {
        id: args.id.unwrap_or_else(|| format!("{host}-{}", std::process::id())),
        address: host,
        etcd: args.etcd,
        prefix: args.prefix,
        job: args.job,
        driver: args.driver,
        slots: args.slots,
    };
    match weir_executor::run(options, TransformRegistry::new(), weir_common::shutdown::signal())
        .await
    {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir-executor: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
