//! The gRPC `Driver` service: thin. It checks the executor's hello, converts protocol messages to
//! job-loop events and the loop's commands to protocol messages (the one place `weir.v1` meets
//! the job loop's domain types), adds the heartbeats, and streams the result back. All decisions
//! are the job loop's.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use weir_common::config::secrets::same_secret;

use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use weir_common::failure::FailureKind;
use weir_common::protocol::{PROTOCOL_VERSION, TaskId, TaskMetrics};
use weir_proto::v1 as pb;
use weir_proto::v1::driver_server::Driver;
use weir_proto::v1::executor_message::Kind;

use crate::error::AttachRefused;
use crate::job::{Command, Event, ExecutorEvent, now_ms};

/// How long an attach waits for the job loop's answer (the loop is busy at most one etcd write;
/// a stopping loop never answers).
const VERDICT_LIMIT: Duration = Duration::from_secs(10);
/// Messages to one executor not yet taken by its connection: a heartbeat a second and its
/// tasks. A peer that leaves this many unread has stopped reading, and is let go.
const OUTBOUND_QUEUE: usize = 1024;
/// How long a connection may take to send its hello: a peer that connects and says nothing is
/// dropped, not kept for ever.
const HELLO_LIMIT: Duration = Duration::from_secs(10);

/// What every connection is told first.
pub struct Session {
    pub job: String,
    pub driver_id: String,
    pub generation: u64,
    pub config_toml: String,
    pub heartbeat_interval: Duration,
    /// `Bearer {token}` every attach must carry in its `authorization` metadata.
    pub executor_token: Option<Arc<str>>,
}

pub struct DriverService {
    session: Arc<Session>,
    events: mpsc::Sender<Event>,
    next_conn: AtomicU64,
}

impl DriverService {
    pub fn new(session: Session, events: mpsc::Sender<Event>) -> Self {
        DriverService { session: Arc::new(session), events, next_conn: AtomicU64::new(1) }
    }
}

fn convert(kind: Kind) -> Result<ExecutorEvent, AttachRefused> {
    let task = |t: Option<pb::TaskId>| t.map(TaskId::from).ok_or(AttachRefused::NoTaskId);
    Ok(match kind {
        Kind::Hello(_) => return Err(AttachRefused::HelloTwice),
        Kind::Heartbeat(_) => ExecutorEvent::Heartbeat,
        Kind::Progress(p) => {
            ExecutorEvent::Progress { task: task(p.task)?, records_in: p.records_in }
        }
        Kind::Succeeded(s) => ExecutorEvent::Succeeded {
            task: task(s.task)?,
            metrics: s.metrics.map(TaskMetrics::from).unwrap_or_default(),
        },
        Kind::Failed(f) => ExecutorEvent::Failed {
            task: task(f.task)?,
            kind: FailureKind::from(f.kind()),
            message: f.message,
            wrote_nothing: f.wrote_nothing,
        },
        Kind::Leaving(_) => ExecutorEvent::Leaving,
    })
}

type Outbound = Pin<Box<dyn Stream<Item = Result<pb::DriverMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Driver for DriverService {
    type AttachStream = Outbound;

    async fn attach(
        &self,
        request: Request<Streaming<pb::ExecutorMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        if let Some(expected) = &self.session.executor_token {
            let given = request.metadata().get("authorization").map(|v| v.as_bytes());
            if !given.is_some_and(|given| same_secret(given, expected.as_bytes())) {
                let remote = request.remote_addr().map_or("unknown".into(), |a| a.to_string());
                tracing::warn!(remote = %remote, token_given = given.is_some(),
                    "Refused an attach without the executors' token");
                return Err(Status::unauthenticated(
                    "this driver needs the executors' token (driver.executor_token): start the \
                     executor with --token-file or WEIR_EXECUTOR_TOKEN",
                ));
            }
        }
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_LIMIT, inbound.message())
            .await
            .map_err(|_| AttachRefused::HelloLate(HELLO_LIMIT))?;
        let hello = match first? {
            Some(pb::ExecutorMessage { kind: Some(Kind::Hello(hello)) }) => hello,
            _ => return Err(AttachRefused::NoHello.into()),
        };
        if hello.protocol_version != PROTOCOL_VERSION {
            let executor = hello.protocol_version;
            return Err(
                AttachRefused::ProtocolMismatch { executor, driver: PROTOCOL_VERSION }.into()
            );
        }
        if hello.executor_id.is_empty() {
            return Err(AttachRefused::NoExecutorId.into());
        }
        if hello.seen_generation > self.session.generation {
            let (this, newer) = (self.session.generation, hello.seen_generation);
            return Err(AttachRefused::Replaced { this, newer }.into());
        }
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (verdict, verdict_rx) = oneshot::channel();
        let attached = Event::Attached {
            conn,
            executor: hello.executor_id,
            slots: hello.slots,
            address: hello.address,
            instance: hello.instance,
            outbox: commands,
            verdict,
        };
        // The job loop holds the only sender of commands: dropping it ends the stream.
        if self.events.send(attached).await.is_err() {
            return Err(AttachRefused::Stopping.into());
        }
        match tokio::time::timeout(VERDICT_LIMIT, verdict_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(refused))) => return Err(refused.into()),
            Ok(Err(_)) | Err(_) => return Err(AttachRefused::Stopping.into()),
        }
        let (outbound, rx) = mpsc::channel(OUTBOUND_QUEUE);
        // Set when the writer gives up on a peer that does not read: the reader ends the
        // connection then, whatever the peer still sends.
        let deaf = CancellationToken::new();
        let writer = send_to_executor(self.session.clone(), commands_rx, outbound, deaf.clone());
        tokio::spawn(writer);
        let events = self.events.clone();
        tokio::spawn(async move {
            let reason = loop {
                let message = tokio::select! {
                    message = inbound.message() => message,
                    _ = deaf.cancelled() => {
                        break format!("it read none of the last {OUTBOUND_QUEUE} messages sent to it");
                    }
                };
                match message {
                    Ok(Some(pb::ExecutorMessage { kind: Some(kind) })) => match convert(kind) {
                        Ok(event) => {
                            if events.send(Event::Message { conn, event }).await.is_err() {
                                return;
                            }
                        }
                        Err(refused) => break refused.to_string(),
                    },
                    Ok(Some(_)) => break "empty message".to_owned(),
                    Ok(None) => break "stream closed".to_owned(),
                    Err(status) => break status.to_string(),
                }
            };
            let _ = events.send(Event::Detached { conn, reason }).await;
        });
        Ok(Response::new(ReceiverStream::new(rx).map(Ok).boxed()))
    }
}

/// Everything one executor receives: the welcome, then the job loop's commands encoded, with a
/// heartbeat every interval, until the loop drops the connection (or the stream is gone).
async fn send_to_executor(
    session: Arc<Session>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    outbound: mpsc::Sender<pb::DriverMessage>,
    deaf: CancellationToken,
) {
    // A full queue means the peer has stopped reading: stop writing to it, and say so.
    let send = |message| match outbound.try_send(message) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            deaf.cancel();
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    };
    let message = |kind| pb::DriverMessage { generation: session.generation, kind: Some(kind) };
    let welcome = pb::driver_message::Kind::Welcome(pb::Welcome {
        protocol_version: PROTOCOL_VERSION,
        job: session.job.clone(),
        driver_id: session.driver_id.clone(),
        config_toml: session.config_toml.clone(),
    });
    if !send(message(welcome)) {
        return;
    }
    let mut tick = tokio::time::interval(session.heartbeat_interval);
    loop {
        let kind = tokio::select! {
            command = commands.recv() => match command {
                Some(command) => encode(command),
                None => return,
            },
            _ = tick.tick() => {
                pb::driver_message::Kind::Heartbeat(pb::Heartbeat { sent_at_ms: now_ms() })
            }
        };
        if !send(message(kind)) {
            return;
        }
    }
}

fn encode(command: Command) -> pb::driver_message::Kind {
    match command {
        Command::Assign { task, ranges } => pb::driver_message::Kind::Assign(pb::AssignTask {
            task: Some(task.into()),
            ranges: ranges.iter().map(pb::OffsetRange::from).collect(),
        }),
        Command::Cancel { task } => {
            pb::driver_message::Kind::Cancel(pb::CancelTask { task: Some(task.into()) })
        }
        Command::Drain => pb::driver_message::Kind::Drain(pb::Drain {}),
    }
}
