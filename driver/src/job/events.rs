//! The job loop's vocabulary with executors, in domain types: the events the gRPC service hands
//! in, and the commands the loop sends out. `service.rs` owns every conversion to and from
//! `weir.v1`; the loop never sees a protobuf message.

use tokio::sync::{mpsc, oneshot};
use weir_common::OffsetRange;
use weir_common::failure::FailureKind;
use weir_common::protocol::{TaskId, TaskMetrics};

/// A connection's number: events of an old connection never touch a newer one of the same
/// executor.
pub type ConnectionId = u64;

#[derive(Debug)]
pub enum ExecutorEvent {
    Heartbeat,
    Progress {
        task: TaskId,
        records_in: u64,
    },
    Succeeded {
        task: TaskId,
        metrics: TaskMetrics,
    },
    /// `wrote_nothing`: the task handed nothing to its sink (see `weir.v1.TaskFailed`).
    Failed {
        task: TaskId,
        kind: FailureKind,
        message: String,
        wrote_nothing: bool,
    },
    Leaving,
}

#[derive(Debug)]
pub enum Event {
    Attached {
        conn: ConnectionId,
        executor: String,
        slots: u32,
        address: String,
        /// The executor process's random number (0: unknown), to tell two processes with one id
        /// apart.
        instance: u64,
        /// Commands for this executor. Dropping the last sender ends its stream.
        outbox: mpsc::UnboundedSender<Command>,
        /// The loop's answer: attached, or refused (a second process with a live one's id).
        verdict: oneshot::Sender<Result<(), crate::error::AttachRefused>>,
    },
    Message {
        conn: ConnectionId,
        event: ExecutorEvent,
    },
    Detached {
        conn: ConnectionId,
        reason: String,
    },
}

/// What the job loop tells one executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Assign {
        task: TaskId,
        ranges: Vec<OffsetRange>,
    },
    Cancel {
        task: TaskId,
    },
    /// Leave as on SIGTERM: finish the running tasks, then exit (`weirctl executors drain`).
    Drain,
}

/// Wall-clock milliseconds since the Unix epoch, for the timestamps recorded in etcd and sent
/// on the wire.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
