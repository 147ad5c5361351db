//! `weirctl`: inspect and steer a job from the command line. It reads the job's keys in etcd
//! (and Kafka, and the leading driver's `/api/status` when one runs), and writes only through
//! guarded etcd transactions, so it never overwrites a change it did not see. Each command has
//! its own file; this one parses the command line, finds the job, and maps outcomes to exit
//! codes scripts can trust:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done (or, for a dry run, nothing to do but show) |
//! | 1 | failed: etcd or Kafka unreachable, a check after a write did not hold, a timeout |
//! | 2 | the command line or config is wrong |
//! | 3 | refused: the job's state forbids it (a driver leads, an offset outside the log, ...) |

mod batches;
mod executors;
mod http;
mod kafka;
mod lifecycle;
mod offsets;
pub(crate) mod output;
mod reset;
mod status;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use weir_common::config::{CheckpointConfig, EtcdTls, JobConfig, SourceConfig};
use weir_common::etcd::EtcdAccess;

use self::kafka::KafkaView;
use self::output::Format;
use self::reset::OutOfRange;
use self::store::JobStore;

/// Inspect and steer a Weir job: its status, batches and offsets; stop, resume, delete it;
/// drain an executor. Reads the job config (`--config`) or `--etcd/--prefix/--job` (and the
/// `--etcd-*` flags for an etcd with TLS or users).
#[derive(Parser)]
#[command(name = "weirctl", version, about)]
pub struct Cli {
    /// The job config (TOML), as the driver reads it: etcd, prefix, job name and Kafka come
    /// from it. Flags below override it.
    #[arg(long, env = "WEIR_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Overrides one config key, as for the driver: `--set source.brokers=k1:9092`.
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    overrides: Vec<String>,
    /// etcd endpoints, comma-separated (default: the config's, or http://127.0.0.1:2379).
    #[arg(long, value_delimiter = ',', global = true)]
    etcd: Vec<String>,
    /// The etcd key prefix (default: the config's, or /weir).
    #[arg(long, global = true)]
    prefix: Option<String>,
    /// The CA of etcd's certificate (PEM), for https:// endpoints (default: checkpoint.tls.ca).
    #[arg(long, global = true, value_name = "FILE")]
    etcd_ca: Option<PathBuf>,
    /// A client certificate for etcd (PEM), with --etcd-key (default: checkpoint.tls.cert).
    #[arg(long, global = true, value_name = "FILE")]
    etcd_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM) (default: checkpoint.tls.key).
    #[arg(long, global = true, value_name = "FILE")]
    etcd_key: Option<PathBuf>,
    /// The etcd user, with --etcd-password-file (default: checkpoint.user).
    #[arg(long, global = true, value_name = "USER")]
    etcd_user: Option<String>,
    /// A file holding the etcd user's password (default: checkpoint.password's reference).
    #[arg(long, global = true, value_name = "FILE")]
    etcd_password_file: Option<PathBuf>,
    /// The job name (default: the config's).
    #[arg(long, global = true)]
    job: Option<String>,
    /// The source Kafka brokers (default: the config's).
    #[arg(long, global = true)]
    brokers: Option<String>,
    /// `table` for people, `json` for scripts.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table, global = true)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The job at a glance: state, leader, standbys, executors, lag, the last batches.
    Status,
    /// Recorded and committed batches; with BATCH, its ranges.
    Batches {
        /// How many of the latest batches to list.
        #[arg(long, default_value_t = 10)]
        last: usize,
        batch: Option<u64>,
    },
    /// The job's committed offsets: show them beside Kafka's, or reset them.
    #[command(subcommand)]
    Offsets(OffsetsCommand),
    /// Stop, resume or delete the job.
    #[command(subcommand)]
    Job(JobCommand),
    /// The executors attached to the leading driver; `drain ID` asks one to leave.
    Executors {
        #[command(subcommand)]
        command: Option<ExecutorsCommand>,
    },
}

#[derive(Subcommand)]
enum OffsetsCommand {
    /// Committed offsets per partition beside the log start, the log end and the group's.
    Show,
    /// Moves the committed offsets (and the group `weir.{job}`'s). A dry run unless --execute.
    Reset(ResetArgs),
}

#[derive(Args)]
#[command(group(ArgGroup::new("target").required(true).args([
    "to_earliest", "to_latest", "to_current", "to_datetime", "by_duration", "shift_by",
    "to_offset", "from_file",
])))]
pub struct ResetArgs {
    /// To the first offset still in each log.
    #[arg(long)]
    to_earliest: bool,
    /// To the end of each log (a read_committed reader's end).
    #[arg(long)]
    to_latest: bool,
    /// To the offsets etcd holds now (moves only the group to match them).
    #[arg(long)]
    to_current: bool,
    /// To the first record at or after this time (RFC 3339, e.g. 2026-11-29T10:00:00Z, or
    /// epoch milliseconds); the log end where there is none.
    #[arg(long, value_name = "TIME")]
    to_datetime: Option<String>,
    /// To the first record at or after this long ago (e.g. 30m, 2h).
    #[arg(long, value_name = "DURATION")]
    by_duration: Option<String>,
    /// By N records from the committed offset (negative: back).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    shift_by: Option<i64>,
    /// To this offset in every chosen partition.
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// To the offsets of a CSV file, one `topic,partition,offset` per line.
    #[arg(long, value_name = "CSV")]
    from_file: Option<PathBuf>,
    /// The partitions to reset: `TOPIC` or `TOPIC:0,1,2`. Repeatable.
    #[arg(long = "topic", value_name = "TOPIC[:P,...]")]
    topics: Vec<String>,
    /// Every partition of the job.
    #[arg(long, conflicts_with = "topics")]
    all_topics: bool,
    /// Write the new offsets. Without it, only show what would change.
    #[arg(long)]
    execute: bool,
    /// If a driver leads the job, stop the job first (in-flight batches commit) and leave it
    /// stopped.
    #[arg(long, requires = "execute")]
    stop: bool,
    /// An offset outside its partition's log: refuse the reset, or clamp it to the log.
    #[arg(long, value_enum, default_value_t)]
    out_of_range: OutOfRange,
    /// How long --stop waits for the job to stop.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    timeout: Duration,
}

#[derive(Subcommand)]
enum JobCommand {
    /// The driver plans no new batch, lets in-flight batches commit, and stays stopped (standbys
    /// too, and across restarts) until `job resume`.
    Stop {
        /// Return once the stop is recorded, without waiting for the driver to confirm it.
        #[arg(long)]
        no_wait: bool,
        #[arg(long, default_value = "120s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// The job runs again from its committed offsets.
    Resume,
    /// Removes every key of the job from etcd (refused while a driver leads it).
    Delete {
        /// The job's name again, to confirm.
        #[arg(long, value_name = "JOB")]
        confirm: Option<String>,
        /// Also delete the Kafka group `weir.{job}`.
        #[arg(long)]
        group: bool,
    },
}

#[derive(Subcommand)]
enum ExecutorsCommand {
    /// Lists the executors attached to the leading driver.
    List,
    /// Asks an executor to hand its lanes back and exit 0 (scale down without a kill).
    Drain {
        id: String,
        /// Return once the request is recorded.
        #[arg(long)]
        no_wait: bool,
        #[arg(long, default_value = "120s", value_parser = parse_duration)]
        timeout: Duration,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    weir_common::config::duration::parse(text)
        .ok_or_else(|| format!("{text:?} is not a duration (like 90s, 2m, 1h)"))
}

/// Why a command did not do what was asked; each maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Usage(String),
    #[error("refused: {0}")]
    Refused(String),
}

impl CtlError {
    fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CtlError::Failed(_) => 1,
            CtlError::Usage(_) => 2,
            CtlError::Refused(_) => 3,
        })
    }
}

/// What every command works with: the job's etcd keys, its Kafka (when known), the output
/// format, and the name written with each change.
pub struct Ctl {
    pub job: String,
    pub store: JobStore,
    source: Option<SourceConfig>,
    pub format: Format,
    /// Who makes the changes, e.g. `weirctl on host-1`.
    pub me: String,
    /// The driver's `http_token` (resolved from the config), for its `/api/status`.
    pub http_token: Option<String>,
}

impl Ctl {
    pub fn kafka(&self) -> Result<KafkaView, CtlError> {
        match &self.source {
            Some(source) => KafkaView::new(&self.job, source),
            None => Err(CtlError::Usage(
                "this needs the source Kafka cluster: give --config or --brokers".into(),
            )),
        }
    }

    pub fn has_kafka(&self) -> bool {
        self.source.is_some()
    }

    /// Says what was done, on stderr (stdout carries only the document with `--output json`).
    pub fn say(&self, text: impl AsRef<str>) {
        match self.format {
            Format::Table => println!("{}", text.as_ref()),
            Format::Json => eprintln!("{}", text.as_ref()),
        }
    }
}

pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weirctl: {e}");
            e.exit_code()
        }
    }
}

async fn run(cli: Cli) -> Result<(), CtlError> {
    let ctl = connect(&cli).await?;
    match cli.command {
        Command::Status => status::show(&ctl).await,
        Command::Batches { last, batch } => batches::show(&ctl, last, batch).await,
        Command::Offsets(OffsetsCommand::Show) => offsets::show(&ctl).await,
        Command::Offsets(OffsetsCommand::Reset(args)) => offsets::reset(&ctl, args).await,
        Command::Job(JobCommand::Stop { no_wait, timeout }) => {
            lifecycle::stop(&ctl, (!no_wait).then_some(timeout)).await.map(drop)
        }
        Command::Job(JobCommand::Resume) => lifecycle::resume(&ctl).await,
        Command::Job(JobCommand::Delete { confirm, group }) => {
            lifecycle::delete(&ctl, confirm.as_deref(), group).await
        }
        Command::Executors { command: None | Some(ExecutorsCommand::List) } => {
            executors::list(&ctl).await
        }
        Command::Executors { command: Some(ExecutorsCommand::Drain { id, no_wait, timeout }) } => {
            executors::drain(&ctl, &id, (!no_wait).then_some(timeout)).await
        }
    }
}

/// Finds the job from the config and the flags, and connects to its etcd.
async fn connect(cli: &Cli) -> Result<Ctl, CtlError> {
    let config = match &cli.config {
        Some(path) => Some(
            JobConfig::load(Some(path), std::env::vars(), &cli.overrides)
                .map_err(|e| CtlError::Usage(format!("invalid config: {e}")))?,
        ),
        None => None,
    };
    let job = cli
        .job
        .clone()
        .or_else(|| config.as_ref().map(|c| c.job.name.clone()))
        .ok_or_else(|| CtlError::Usage("which job? give --config or --job".into()))?;
    let checkpoint = checkpoint(cli, config.as_ref())?;
    let http_token = match config.as_ref().and_then(|c| c.driver.http_token.as_deref()) {
        Some(reference) => Some(
            weir_common::config::secrets::resolve(reference)
                .map_err(|e| CtlError::Usage(format!("driver.http_token: {e}")))?
                .into_owned(),
        ),
        None => None,
    };
    let mut source = config.map(|c| c.source);
    if let Some(brokers) = &cli.brokers {
        match &mut source {
            Some(source) => source.brokers = brokers.clone(),
            None => source = Some(bare_source(brokers)?),
        }
    }
    let access = EtcdAccess::from_config(&checkpoint);
    let store = JobStore::connect(&access, &checkpoint.prefix, &job).await?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown host".into());
    let me = format!("weirctl on {host}");
    Ok(Ctl { job, store, source, format: cli.output, me, http_token })
}

/// The config's `[checkpoint]` (or the defaults) with the flags applied, checked as the driver
/// checks it.
fn checkpoint(cli: &Cli, config: Option<&JobConfig>) -> Result<CheckpointConfig, CtlError> {
    let mut checkpoint = config.map_or_else(CheckpointConfig::default, |c| c.checkpoint.clone());
    if !cli.etcd.is_empty() {
        checkpoint.etcd = cli.etcd.clone();
    }
    if let Some(prefix) = &cli.prefix {
        checkpoint.prefix = prefix.clone();
    }
    if let Some(ca) = &cli.etcd_ca {
        let tls = checkpoint.tls.get_or_insert(EtcdTls { ca: ca.clone(), cert: None, key: None });
        tls.ca = ca.clone();
    }
    if cli.etcd_cert.is_some() || cli.etcd_key.is_some() {
        let Some(tls) = &mut checkpoint.tls else {
            return Err(CtlError::Usage("--etcd-cert and --etcd-key need --etcd-ca".into()));
        };
        tls.cert = cli.etcd_cert.clone().or(tls.cert.take());
        tls.key = cli.etcd_key.clone().or(tls.key.take());
    }
    if let Some(user) = &cli.etcd_user {
        checkpoint.user = Some(user.clone());
    }
    if let Some(file) = &cli.etcd_password_file {
        checkpoint.password = Some(format!("${{file:{}}}", file.display()));
    }
    checkpoint.validate().map_err(|e| CtlError::Usage(format!("etcd: {e}")))?;
    Ok(checkpoint)
}

/// A source config with only the brokers (no `[source.kafka]` properties).
fn bare_source(brokers: &str) -> Result<SourceConfig, CtlError> {
    let text = format!(
        "[job]\nname = \"weirctl\"\n[source]\nbrokers = {}\ntopics = [\"-\"]\n[sink]\ntype = \"stdout\"\n",
        toml::Value::String(brokers.to_owned())
    );
    JobConfig::from_toml_str(&text)
        .map(|c| c.source)
        .map_err(|e| CtlError::Usage(format!("--brokers {brokers:?}: {e}")))
}
