//! Executors as the job loop sees them: connections attaching, reporting and leaving, silent
//! ones expired, and the commands (assign, cancel) sent to each. The scheduler decides; this
//! file carries its decisions to the right connection.
//!
//! Invariant kept here: one connection per executor; an executor that attaches again replaces
//! its old connection, whose tasks run again.

use std::collections::HashMap;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use weir_common::config::Guarantee;

use super::{Command, ConnectionId, Event, ExecutorEvent, JobLoop, in_etcd, now_ms};
use crate::error::{AttachRefused, DriverError};
use crate::scheduler::Assignment;

struct Connection {
    executor: String,
    address: String,
    instance: u64,
    outbox: mpsc::UnboundedSender<Command>,
}

/// The live connections, by connection id.
#[derive(Default)]
pub(super) struct Connections(HashMap<ConnectionId, Connection>);

impl Connections {
    fn of(&self, executor: &str) -> Option<ConnectionId> {
        self.0.iter().find(|(_, c)| c.executor == executor).map(|(&id, _)| id)
    }

    /// Where the executor said it runs.
    pub(super) fn address_of(&self, executor: &str) -> Option<String> {
        self.0.values().find(|c| c.executor == executor).map(|c| c.address.clone())
    }

    /// Sends a command to an executor. A closed outbox means the connection is going; its
    /// `Detached` event requeues what it ran.
    fn send(&self, executor: &str, command: Command) {
        if let Some(conn) = self.0.values().find(|c| c.executor == executor) {
            let _ = conn.outbox.send(command);
        }
    }
}

impl JobLoop {
    pub(super) fn on_event(&mut self, event: Event) -> Result<(), DriverError> {
        let now = Instant::now();
        match event {
            Event::Attached { conn, executor, slots, address, instance, outbox, verdict } => {
                if let Some(old) = self.connections.of(&executor) {
                    let other = &self.connections.0[&old];
                    let timeout = self.config.driver.executor_timeout;
                    let alive = !self.scheduler.silent_executors(now, timeout).contains(&executor);
                    if instance != 0 && other.instance != 0 && other.instance != instance && alive {
                        warn!(executor = %executor, address = %address, attached_from = %other.address,
                            "Refused an executor: another running process has its id");
                        let _ = verdict.send(Err(AttachRefused::DuplicateId {
                            executor,
                            address: other.address.clone(),
                            executor_timeout_ms: timeout.as_millis() as u64,
                        }));
                        return Ok(());
                    }
                    self.drop_connection(old, "it attached again");
                } else if self.connections.0.len() >= super::MAX_EXECUTORS {
                    warn!(executor = %executor, address = %address,
                        "Refused an executor: the job has {} attached already", super::MAX_EXECUTORS);
                    let _ =
                        verdict.send(Err(AttachRefused::TooMany { limit: super::MAX_EXECUTORS }));
                    return Ok(());
                }
                if verdict.send(Ok(())).is_err() {
                    return Ok(()); // The attach gave up waiting; its stream is gone.
                }
                info!(executor = %executor, slots, address = %address, "Executor attached");
                self.scheduler.add_executor(executor.clone(), slots, now);
                self.connections.0.insert(conn, Connection { executor, address, instance, outbox });
            }
            Event::Detached { conn, reason } => self.drop_connection(conn, &reason),
            Event::Message { conn, event } => {
                let Some(executor) = self.connections.0.get(&conn).map(|c| c.executor.clone())
                else {
                    return Ok(());
                };
                self.scheduler.executor_seen(&executor, now);
                self.on_report(executor, event, now)?;
            }
        }
        Ok(())
    }

    fn on_report(
        &mut self,
        executor: String,
        event: ExecutorEvent,
        now: Instant,
    ) -> Result<(), DriverError> {
        match event {
            ExecutorEvent::Heartbeat => {}
            ExecutorEvent::Progress { task, records_in } => {
                self.scheduler.task_progress(&executor, task, records_in, now);
                self.status.send_modify(|s| s.progress(&executor, task, records_in));
            }
            ExecutorEvent::Succeeded { task, metrics } => {
                if self.scheduler.task_succeeded(&executor, task, metrics) {
                    self.metrics.task_duration.observe(metrics.total_ms as f64 / 1000.0);
                    self.status.send_modify(|s| s.history.succeeded(task, &executor, &metrics));
                    debug!(executor = %executor, batch = task.batch, lane = task.lane,
                        records_in = metrics.records_in, read_ms = metrics.read_ms,
                        flush_ms = metrics.flush_ms, total_ms = metrics.total_ms, "Task done");
                }
            }
            ExecutorEvent::Failed { task, kind, message, wrote_nothing } => {
                warn!(executor = %executor, batch = task.batch, lane = task.lane, kind = %kind,
                    error = %message, "Task failed");
                let label = crate::metrics::KindLabel { kind: kind.to_string() };
                self.metrics.task_failures.get_or_create(&label).inc();
                self.status.send_modify(|s| {
                    s.history.failed(task, &executor, &kind.to_string(), &message, now_ms())
                });
                let failed = if wrote_nothing {
                    self.scheduler.task_failed_before_output(&executor, task, kind, &message, now)
                } else {
                    self.scheduler.task_failed(&executor, task, kind, &message, now)
                };
                if let Err(failure) = failed {
                    self.cancel_running();
                    return Err(failure.into());
                }
            }
            ExecutorEvent::Leaving => {
                info!(executor = %executor, "Executor leaving; its lanes move once idle");
                self.scheduler.executor_leaving(&executor);
            }
        }
        Ok(())
    }

    /// Forgets a connection and its executor; its unfinished tasks run again elsewhere.
    fn drop_connection(&mut self, conn: ConnectionId, reason: &str) {
        let Some(connection) = self.connections.0.remove(&conn) else { return };
        let requeued = self.scheduler.remove_executor(&connection.executor, Instant::now());
        if !requeued.is_empty() {
            self.metrics.executors_lost.inc();
            let message = format!("executor {} lost: {reason}", connection.executor);
            self.status.send_modify(|s| {
                for task in &requeued {
                    s.history.failed(*task, &connection.executor, "lost", &message, now_ms());
                }
            });
        }
        if requeued.is_empty() {
            info!(executor = %connection.executor, reason, "Executor detached");
        } else if self.guarantee == Guarantee::AtMostOnce {
            warn!(executor = %connection.executor, reason, tasks = requeued.len(),
                "Executor lost; at-most-once abandons its tasks, their records are lost");
        } else {
            warn!(executor = %connection.executor, reason, tasks = requeued.len(),
                "Executor lost; its tasks run again elsewhere");
        }
    }

    /// Closes the stream of each leaving executor that has finished its tasks, which lets it exit.
    pub(super) fn let_leaving_executors_go(&mut self) {
        for executor in self.scheduler.idle_leaving_executors() {
            if let Some(conn) = self.connections.of(&executor) {
                self.drop_connection(conn, "it left after finishing its tasks");
            }
        }
    }

    /// An operator asked `executor` to leave: it is told to (as SIGTERM would), gets no new task,
    /// and is let go once its tasks are done. The request is then deleted, acted on or not.
    pub(super) async fn drain_executor(&mut self, executor: &str) -> Result<(), DriverError> {
        if self.connections.of(executor).is_some() {
            info!(
                executor,
                "Draining the executor on an operator's request; its lanes move once its tasks finish"
            );
            self.connections.send(executor, Command::Drain);
            self.scheduler.executor_leaving(executor);
        } else {
            warn!(
                executor,
                "An operator asked to drain an executor that is not attached; request dropped"
            );
        }
        let store = self.io.store.clone();
        in_etcd(self.etcd_wait(), "deleting a drain request in etcd", || {
            store.forget_drain(executor)
        })
        .await
    }

    /// Closes every executor's stream; each attaches again with a new session (and, under
    /// exactly-once, new lane producers that read their progress afresh).
    pub(super) fn reattach_executors(&mut self, reason: &str) {
        let all: Vec<ConnectionId> = self.connections.0.keys().copied().collect();
        for conn in all {
            self.drop_connection(conn, reason);
        }
    }

    /// Cancels every task that read nothing new for `driver.task_stall_timeout` (a transform or
    /// a sink that hangs) and runs it again on another executor; a stall counts as a failed
    /// attempt, so a task that always hangs stops the job after `driver.max_task_attempts`.
    pub(super) fn cancel_stalled_tasks(&mut self) -> Result<(), DriverError> {
        let limit = self.config.driver.task_stall_timeout;
        let now = Instant::now();
        for (executor, task) in self.scheduler.stalled_tasks(now, limit) {
            let message = format!(
                "no new record read for {}: a transform or sink that hangs?",
                weir_common::config::duration::format(limit)
            );
            warn!(executor = %executor, batch = task.batch, lane = task.lane, attempt = task.attempt,
                "Task stalled; cancelling it and running it again on another executor");
            self.connections.send(&executor, Command::Cancel { task });
            let label = crate::metrics::KindLabel { kind: "stalled".to_owned() };
            self.metrics.task_failures.get_or_create(&label).inc();
            self.status
                .send_modify(|s| s.history.failed(task, &executor, "stalled", &message, now_ms()));
            if let Err(failure) = self.scheduler.task_stalled(&executor, task, &message, now) {
                self.cancel_running();
                return Err(failure.into());
            }
        }
        Ok(())
    }

    pub(super) fn expire_silent_executors(&mut self) {
        let timeout = self.config.driver.executor_timeout;
        for executor in self.scheduler.silent_executors(Instant::now(), timeout) {
            if let Some(conn) = self.connections.of(&executor) {
                self.drop_connection(conn, &format!("no heartbeat for {timeout:?}"));
            } else {
                self.scheduler.remove_executor(&executor, Instant::now());
            }
        }
    }

    pub(super) fn dispatch(&mut self) {
        for Assignment { executor, task, ranges } in self.scheduler.dispatch(Instant::now()) {
            debug!(executor = %executor, batch = task.batch, lane = task.lane, attempt = task.attempt, "Assigning task");
            self.status.send_modify(|s| s.history.dispatched(task, &executor, now_ms()));
            self.connections.send(&executor, Command::Assign { task, ranges });
        }
    }

    fn cancel_running(&mut self) {
        for (executor, task) in self.scheduler.running() {
            self.connections.send(&executor, Command::Cancel { task });
        }
    }
}
