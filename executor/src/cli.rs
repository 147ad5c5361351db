//! The executor's command line, shared by `weir-executor` and by executors users build with
//! their own transforms (see `examples/custom_transform.rs`).

use clap::Parser;

use crate::ExecutorOptions;

/// A Weir executor: runs the tasks of one job's driver.
#[derive(Debug, Parser)]
#[command(version, about)]
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
}

impl ExecutorArgs {
    /// The options `run` takes; an error names the bad flag.
    pub fn into_options(self) -> Result<ExecutorOptions, String> {
        if self.slots == 0 {
            return Err("--slots: must be at least 1, got 0".into());
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "executor".into());
        Ok(ExecutorOptions {
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
pub async fn main(transforms: crate::TransformRegistry) -> std::process::ExitCode {
    let args = ExecutorArgs::parse();
    weir_common::telemetry::init();
    let name = std::env::args()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a).file_name().map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "weir-executor".into());
    let options = match args.into_options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("{name}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match crate::run(options, transforms, weir_common::shutdown::signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
