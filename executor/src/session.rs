//! The attach loop: find the leading driver (etcd's leader key, or `--driver`), open the `Attach`
//! stream, run the tasks it assigns, report them, heartbeat; when the driver goes, find the next
//! one. Refuses any driver message older than the newest generation seen. It alone writes the
//! executor's readiness and its task metrics (the exactly-once sink counts its own transactions).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use etcd_client::Client;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;
use tracing::{info, warn};
use weir_common::OffsetRange;
use weir_common::etcd::EtcdAccess;
use weir_common::failure::FailureKind;
use weir_common::protocol::{JobKeys, LeaderRecord, PROTOCOL_VERSION, TaskId};
use weir_common::transform::TransformRegistry;
use weir_proto::v1 as pb;
use weir_proto::v1::driver_client::DriverClient;
use weir_proto::v1::driver_message::Kind;

use crate::context::JobContext;
use crate::error::{ExecutorError, TaskError};
use crate::kafka::probe;
use crate::metrics::ExecutorMetrics;
use crate::readiness::Readiness;
use crate::task::{Done, TaskControl, range_lag, spawn_task};

/// How an executor finds and introduces itself to its driver.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// Where the job's leader is recorded, and how to log in there (`--etcd`, `--etcd-*`).
    pub etcd: EtcdAccess,
    pub prefix: String,
    pub job: String,
    /// Attach to this driver URL instead of looking the leader up in etcd.
    pub driver: Option<String>,
    pub slots: u32,
    pub id: String,
    pub address: String,
    /// TLS to the driver (`--tls-*`); `None`: plaintext.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    /// `Bearer {token}` sent with every attach (`--token-file`, `WEIR_EXECUTOR_TOKEN`).
    pub token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    /// Run jobs whose Kafka properties load or run code (`--allow-kafka-code`).
    pub allow_kafka_code: bool,
}

/// Used until the driver's config says otherwise.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
const DEFAULT_DRIVER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting to a driver, attaching and its welcome may take together.
const ATTACH_DEADLINE: Duration = Duration::from_secs(10);
/// How long a stop waits for an attach under way to complete.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// How long a leaving executor with nothing left to run waits for the driver to let it go.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(10);

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

pub enum SessionEnd {
    /// Shut down cleanly: every task finished and was reported.
    Stopped,
    /// The driver went away (or was replaced); find the leader again.
    Lost(String),
    /// The driver refused this executor: another running process has its id. `retry_for` is
    /// how long a process the driver has not yet noticed is dead could still hold the id.
    DuplicateId { message: String, retry_for: Duration },
}

/// Executor state that outlives one driver connection.
pub struct Attacher {
    options: ExecutorOptions,
    registry: TransformRegistry,
    etcd: Option<Client>,
    generations: GenerationGuard,
    context: Option<Arc<JobContext>>,
    metrics: Arc<ExecutorMetrics>,
    readiness: watch::Sender<Readiness>,
    /// A random number for this process, sent in every hello: the driver tells two processes
    /// with one id apart.
    instance: u64,
}

/// The newest driver generation this executor has seen; messages of an older one are refused
/// (they come from a deposed driver).
#[derive(Debug, Default)]
pub struct GenerationGuard {
    pub seen: u64,
}

impl GenerationGuard {
    pub fn accept(&mut self, generation: u64) -> Result<(), String> {
        if generation < self.seen {
            return Err(format!(
                "refusing driver generation {generation}: generation {} was already seen",
                self.seen
            ));
        }
        self.seen = generation;
        Ok(())
    }
}

impl Attacher {
    pub fn new(
        options: ExecutorOptions,
        registry: TransformRegistry,
        metrics: Arc<ExecutorMetrics>,
        readiness: watch::Sender<Readiness>,
    ) -> Self {
        metrics.set_slots(options.slots);
        Attacher {
            options,
            registry,
            etcd: None,
            generations: GenerationGuard::default(),
            context: None,
            metrics,
            readiness,
            instance: process_instance(),
        }
    }

    /// Publishes where the executor stands with its driver, for `/readyz` and the `attached`
    /// gauge together.
    pub fn set_readiness(&self, readiness: Readiness) {
        self.metrics.set_attached(readiness.is_attached());
        self.readiness.send_replace(readiness);
    }

    /// Samples the gauges that follow the running tasks: how many, the records their ranges
    /// still hold, and the messages waiting in the job's producers.
    fn sample(
        &self,
        running: &HashMap<TaskId, Arc<TaskControl>>,
        context: &Result<Arc<JobContext>, TaskError>,
    ) {
        let lag = range_lag(running.values().map(Arc::as_ref));
        let queued = context.as_ref().map_or(0, |c| c.queued_messages());
        self.metrics.sample(running.len(), lag, queued);
    }

    /// The driver to attach to: `--driver`, or the leader recorded in etcd (ignoring a leader
    /// older than one already seen).
    pub async fn find_driver(&mut self) -> Result<String, ExecutorError> {
        if let Some(url) = &self.options.driver {
            return Ok(url.clone());
        }
        let access = &self.options.etcd;
        let etcd = |source| ExecutorError::etcd(access.describe(), source);
        if self.etcd.is_none() {
            // Checked at start (`cli`); a file or secret that went away since is an etcd error.
            let options = access
                .options()
                .map_err(|e| {
                    etcd(etcd_client::Error::InvalidArgs(format!("{}: {e}", e.part.flag())))
                })?
                .with_connect_timeout(Duration::from_secs(3))
                .with_timeout(Duration::from_secs(5));
            self.etcd =
                Some(Client::connect(&access.endpoints, Some(options)).await.map_err(etcd)?);
        }
        let key = JobKeys::new(&self.options.prefix, &self.options.job).leader();
        let client = self.etcd.as_ref().expect("connected above");
        let resp = client.kv_client().get(key.as_str(), None).await.map_err(etcd)?;
        let no_leader =
            || ExecutorError::NoLeader { job: self.options.job.clone(), key: key.clone() };
        let leader = resp
            .kvs()
            .first()
            .and_then(|kv| LeaderRecord::decode(kv.value()).ok())
            .ok_or_else(no_leader)?;
        if leader.generation < self.generations.seen {
            return Err(no_leader());
        }
        Ok(leader.address)
    }

    /// One connection to one driver, until it ends.
    pub async fn session(&mut self, url: &str, stop: &CancellationToken) -> SessionEnd {
        // Connecting, attaching and the welcome have one deadline, and a stop ends the wait: a
        // driver that accepts connections but never answers (paused, or not a Weir driver) must
        // neither hold the executor nor keep SIGTERM from ending it.
        let opened = {
            let open = tokio::time::timeout(ATTACH_DEADLINE, self.open(url));
            tokio::pin!(open);
            tokio::select! {
                opened = &mut open => opened,
                // A driver that answers completes the attach (it may have assigned tasks at
                // once; they are finished as the executor leaves); one that does not is given
                // up after a moment.
                _ = stop.cancelled() => match tokio::time::timeout(STOP_GRACE, &mut open).await {
                    Ok(opened) => opened,
                    Err(_) => return SessionEnd::Stopped,
                },
            }
        };
        let lost =
            |what: &str, e: &dyn std::fmt::Display| SessionEnd::Lost(format!("{what} {url}: {e}"));
        let (outbox, mut inbound, generation, welcome) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(end)) => return end,
            Err(_) => {
                return SessionEnd::Lost(format!(
                    "the driver at {url} did not welcome this executor within {ATTACH_DEADLINE:?} \
                     (a paused driver, or not a Weir driver)"
                ));
            }
        };
        if let Err(refused) = self.generations.accept(generation) {
            return SessionEnd::Lost(refused);
        }
        let context = self.context_for(&welcome.config_toml);
        let (heartbeat, driver_timeout) = match &context {
            Ok(c) => (c.config.driver.heartbeat_interval, c.config.driver.executor_timeout),
            Err(_) => (DEFAULT_HEARTBEAT, DEFAULT_DRIVER_TIMEOUT),
        };
        info!(driver = %welcome.driver_id, generation, url, "Attached to the driver");
        self.set_readiness(Readiness::Attached { url: url.to_owned(), generation });

        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
        let mut running: HashMap<TaskId, Arc<TaskControl>> = HashMap::new();
        let mut beat = tokio::time::interval(heartbeat);
        let mut last_heard = Instant::now();
        let mut leaving = false;
        let mut leave_by: Option<Instant> = None;
        let end = loop {
            tokio::select! {
                incoming = inbound.message() => {
                    let m = match incoming {
                        Ok(Some(m)) => m,
                        // Leaving: the driver closes the stream once it has no task running here.
                        Ok(None) if leaving => break SessionEnd::Stopped,
                        Ok(None) => break SessionEnd::Lost(format!("the driver at {url} closed the stream")),
                        Err(status) => break lost("the stream broke at", &status),
                    };
                    if let Err(refused) = self.generations.accept(m.generation) {
                        break SessionEnd::Lost(refused);
                    }
                    last_heard = Instant::now();
                    match m.kind {
                        Some(Kind::Assign(assign)) => {
                            let Some(id) = assign.task.map(TaskId::from) else { continue };
                            let ranges: Result<Vec<OffsetRange>, _> =
                                assign.ranges.into_iter().map(OffsetRange::try_from).collect();
                            let result = match (&context, ranges) {
                                (_, Err(e)) => Err(TaskError::config(format!("bad task from the driver: {e}"))),
                                (Err(e), _) => Err(e.clone()),
                                (Ok(ctx), Ok(ranges)) => {
                                    running.insert(id, spawn_task(ctx.clone(), id, ranges, done_tx.clone()));
                                    self.sample(&running, &context);
                                    continue;
                                }
                            };
                            let _ = done_tx.send((id, result));
                        }
                        Some(Kind::Cancel(cancel)) => {
                            if let Some(task) = cancel.task.map(TaskId::from).and_then(|id| running.get(&id)) {
                                task.cancel.store(true, Ordering::Relaxed);
                            }
                        }
                        // An operator asked this executor to leave: the same as SIGTERM.
                        Some(Kind::Drain(_)) => {
                            info!("The driver asks this executor to leave (an operator's drain)");
                            stop.cancel();
                        }
                        Some(Kind::Heartbeat(_)) | Some(Kind::Welcome(_)) | None => {}
                    }
                }
                Some((id, result)) = done_rx.recv() => {
                    let wrote_nothing = running
                        .remove(&id)
                        .is_some_and(|task| !task.wrote_output.load(Ordering::Relaxed));
                    match &result {
                        Ok(metrics) => self.metrics.task_succeeded(metrics),
                        Err(_) => self.metrics.task_failed(),
                    }
                    self.sample(&running, &context);
                    let kind = match (result, &context) {
                        (Ok(metrics), _) => pb::executor_message::Kind::Succeeded(pb::TaskSucceeded {
                            task: Some(id.into()),
                            metrics: Some(metrics.into()),
                        }),
                        // Was Kafka answering at all? Asked off this loop (it can take
                        // seconds, and heartbeats must go on); the report follows.
                        (Err(e), Ok(ctx)) if e.kind == FailureKind::Transient => {
                            let (ctx, outbox) = (ctx.clone(), outbox.clone());
                            tokio::spawn(async move {
                                let classified = tokio::task::spawn_blocking(move || probe::classify(e, &ctx.config)).await;
                                if let Ok(e) = classified {
                                    let _ = outbox.send(message(failed(id, e, wrote_nothing))).await;
                                }
                            });
                            continue;
                        }
                        (Err(e), _) => failed(id, e, wrote_nothing),
                    };
                    if outbox.send(message(kind)).await.is_err() {
                        break SessionEnd::Lost("the stream to the driver closed".into());
                    }
                }
                _ = beat.tick() => {
                    if last_heard.elapsed() > driver_timeout {
                        break SessionEnd::Lost(format!("no word from the driver at {url} for {driver_timeout:?}"));
                    }
                    self.sample(&running, &context);
                    let beat = pb::Heartbeat { sent_at_ms: 0 };
                    let mut reports = vec![message(pb::executor_message::Kind::Heartbeat(beat))];
                    reports.extend(running.iter().map(|(id, task)| {
                        message(pb::executor_message::Kind::Progress(pb::TaskProgress {
                            task: Some((*id).into()),
                            records_in: task.records_in.load(Ordering::Relaxed),
                        }))
                    }));
                    for report in reports {
                        if outbox.send(report).await.is_err() {
                            break;
                        }
                    }
                    if outbox.is_closed() {
                        break SessionEnd::Lost("the stream to the driver closed".into());
                    }
                }
                _ = stop.cancelled(), if !leaving => {
                    // Tasks the driver assigned before it reads this still arrive and are run;
                    // the driver closes the stream when none is left.
                    leaving = true;
                    leave_by = Some(Instant::now() + LEAVE_TIMEOUT);
                    self.set_readiness(Readiness::Leaving { url: url.to_owned() });
                    info!(running = running.len(), "Stopping: finishing running tasks, taking no new ones");
                    let _ = outbox.send(message(pb::executor_message::Kind::Leaving(pb::Leaving {}))).await;
                }
                _ = sleep_until(leave_by), if leave_by.is_some() && running.is_empty() => {
                    break SessionEnd::Lost(format!("the driver at {url} did not close the stream after {LEAVE_TIMEOUT:?}"));
                }
            }
        };
        // Tasks of a lost session are the driver's to run again; stop wasting work on them.
        for task in running.values() {
            task.cancel.store(true, Ordering::Relaxed);
        }
        // The lanes may now belong to other executors; a lane this one gets again starts afresh
        // (exactly-once: a new producer whose init fences any older one).
        if let Ok(ctx) = &context {
            ctx.sink.forget_lanes();
        }
        self.sample(&HashMap::new(), &context);
        end
    }

    /// Connects, sends the hello, and waits for the welcome.
    async fn open(
        &self,
        url: &str,
    ) -> Result<
        (mpsc::Sender<pb::ExecutorMessage>, Streaming<pb::DriverMessage>, u64, pb::Welcome),
        SessionEnd,
    > {
        let lost =
            |what: &str, e: &dyn std::fmt::Display| SessionEnd::Lost(format!("{what} {url}: {e}"));
        let mut client = match crate::tls::connect(url, self.options.tls.as_ref()).await {
            Ok(channel) => DriverClient::new(channel),
            Err(e) => return Err(lost("cannot connect to the driver at", &e)),
        };
        let (outbox, rx) = mpsc::channel::<pb::ExecutorMessage>(1024);
        let hello = pb::Hello {
            protocol_version: PROTOCOL_VERSION,
            executor_id: self.options.id.clone(),
            slots: self.options.slots,
            address: self.options.address.clone(),
            seen_generation: self.generations.seen,
            instance: self.instance,
        };
        let _ = outbox.send(message(pb::executor_message::Kind::Hello(hello))).await;
        let mut attach = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(token) = &self.options.token {
            attach.metadata_mut().insert("authorization", token.clone());
        }
        let mut inbound = match client.attach(attach).await {
            Ok(r) => r.into_inner(),
            Err(status) if status.code() == tonic::Code::AlreadyExists => {
                let retry_for = status
                    .metadata()
                    .get(EXECUTOR_TIMEOUT_HEADER)
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .map_or(DEFAULT_DRIVER_TIMEOUT, Duration::from_millis);
                let message =
                    format!("the driver at {url} refused this executor: {}", status.message());
                return Err(SessionEnd::DuplicateId { message, retry_for });
            }
            Err(status) => return Err(lost("the driver refused the attach at", &status)),
        };
        match inbound.message().await {
            // A driver of another job (a wrong --driver, a leader key written by someone else)
            // gets no work done here.
            Ok(Some(pb::DriverMessage { kind: Some(Kind::Welcome(w)), .. }))
                if w.job != self.options.job =>
            {
                Err(SessionEnd::Lost(format!(
                    "the driver at {url} runs job {:?}, not {:?}; refusing its tasks",
                    w.job, self.options.job
                )))
            }
            Ok(Some(pb::DriverMessage { generation, kind: Some(Kind::Welcome(w)) })) => {
                Ok((outbox, inbound, generation, w))
            }
            Ok(_) => Err(SessionEnd::Lost(format!("the driver at {url} sent no welcome"))),
            Err(status) => Err(lost("the stream broke at", &status)),
        }
    }

    /// A job whose Kafka properties load or run code (a library, a command) runs here only with
    /// `--allow-kafka-code`: the config comes from the driver, and a driver is not trusted to
    /// run code on executors.
    fn refuse_code_loading(&self, config_toml: &str) -> Result<(), TaskError> {
        if self.options.allow_kafka_code {
            return Ok(());
        }
        // A config that does not parse is refused by the build, with its reason.
        let Ok(config) = weir_common::config::JobConfig::from_toml_str(config_toml) else {
            return Ok(());
        };
        let found = crate::kafka::code_loading_property("source.kafka", &config.source.kafka)
            .or_else(|| crate::kafka::code_loading_property("sink.kafka", &config.sink.kafka));
        match found {
            Some(property) => Err(TaskError::config(format!(
                "the job's config sets {property}, which makes librdkafka load or run code; this \
                 executor runs such jobs only with --allow-kafka-code"
            ))),
            None => Ok(()),
        }
    }

    fn context_for(&mut self, config_toml: &str) -> Result<Arc<JobContext>, TaskError> {
        if let Some(ctx) = &self.context
            && ctx.config_toml == config_toml
        {
            return Ok(ctx.clone());
        }
        // Checked before anything is built: building makes Kafka clients from the properties.
        let built = self.refuse_code_loading(config_toml).and_then(|()| {
            JobContext::build(config_toml, &self.registry, self.metrics.transactions())
        });
        match &built {
            Ok(ctx) => self.context = Some(ctx.clone()),
            Err(e) => warn!(error = %e, "Cannot run this job's tasks"),
        }
        built
    }
}

/// The gRPC metadata key with the driver's `executor_timeout` on a duplicate-id refusal (the
/// driver's `error.rs` sets it).
const EXECUTOR_TIMEOUT_HEADER: &str = "weir-executor-timeout-ms";

/// A number no other executor process picks: the time and the process id, hashed with a random
/// key.
fn process_instance() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    RandomState::new().hash_one((now.as_nanos(), std::process::id())).max(1)
}

fn message(kind: pb::executor_message::Kind) -> pb::ExecutorMessage {
    pb::ExecutorMessage { kind: Some(kind) }
}

fn failed(task: TaskId, error: TaskError, wrote_nothing: bool) -> pb::executor_message::Kind {
    pb::executor_message::Kind::Failed(pb::TaskFailed {
        task: Some(task.into()),
        kind: pb::FailureKind::from(error.kind).into(),
        message: error.message,
        wrote_nothing,
    })
}

#[cfg(test)]
mod tests {
    use super::GenerationGuard;

    #[test]
    fn a_message_of_an_older_generation_is_refused() {
        let mut guard = GenerationGuard::default();
        assert!(guard.accept(3).is_ok());
        assert!(guard.accept(3).is_ok(), "the same driver keeps talking");
        let refused = guard.accept(2).unwrap_err();
        assert!(
            refused.contains("generation 2") && refused.contains("3 was already seen"),
            "{refused}"
        );
        assert_eq!(guard.seen, 3, "a refused message does not lower the mark");
        assert!(guard.accept(4).is_ok());
        assert_eq!(guard.seen, 4);
    }
}
