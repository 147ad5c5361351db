//! What operators ask of the running job (`weirctl job stop|resume`, `weirctl executors drain`),
//! read from etcd in the background and acted on by the loop:
//!
//! - a stop holds planning and lets in-flight batches commit; once none is left the loop confirms
//!   `Stopped` in etcd, and plans nothing until a resume;
//! - a resume reads the checkpoint again (an operator may have reset the offsets while the job
//!   was stopped) and plans on from it; if the offsets moved, every executor is made to attach
//!   again, so none runs a task against progress it read before the reset;
//! - a drain request sends its executor away as SIGTERM would (`connections.rs`).
//!
//! Invariant kept here: while the job is stopped the loop writes nothing to etcd but drain
//! acknowledgements, so offsets an operator writes then are never overwritten. A driver that
//! starts on a stopped job therefore neither discovers partitions nor replays recorded batches
//! until the resume.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info};
use weir_common::control::JobState;

use super::{JobLoop, in_etcd, now_ms};
use crate::error::DriverError;
use crate::io::{CheckpointStore, Control};

/// Polls the operators' requests while the loop runs; stops when dropped.
pub(super) struct ControlPoller {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ControlPoller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ControlPoller {
    /// Reads the requests every `period` and publishes each change. A failed read is skipped:
    /// the loop's own etcd writes report an outage loudly, and the next read catches up.
    pub(super) fn start(
        store: Arc<dyn CheckpointStore>,
        initial: Control,
        period: Duration,
    ) -> (ControlPoller, watch::Receiver<Control>) {
        let (tx, rx) = watch::channel(initial);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                match tokio::time::timeout(period.max(Duration::from_secs(1)), store.read_control())
                    .await
                {
                    Ok(Ok(control)) => {
                        tx.send_if_modified(|seen| {
                            let changed = *seen != control;
                            *seen = control;
                            changed
                        });
                    }
                    Ok(Err(e)) => debug!(error = %e, "Reading the operators' requests failed"),
                    Err(_) => debug!("Reading the operators' requests timed out"),
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        (ControlPoller { task }, rx)
    }
}

impl JobLoop {
    /// Acts on a change of the operators' requests.
    pub(super) async fn on_control(&mut self, new: Control) -> Result<(), DriverError> {
        let was = self.control.state;
        match (was.holds_planning(), new.state) {
            (false, JobState::StopRequested | JobState::Stopped) => info!(
                by = %new.changed_by,
                in_flight = self.scheduler.batches_in_flight(),
                "Stop requested: no new batches; in-flight batches commit, then the job stays stopped"
            ),
            (true, JobState::Running) => {
                info!(by = %new.changed_by, "Resumed: reading the checkpoint again and planning on");
            }
            _ => {}
        }
        let drains = new.drains.clone();
        self.control = new;
        if was.holds_planning()
            && self.control.state == JobState::Running
            && self.scheduler.batches_in_flight() == 0
        {
            self.reload().await?;
        }
        for executor in drains {
            self.drain_executor(&executor).await?;
        }
        self.publish_state();
        Ok(())
    }

    /// Once a requested stop has nothing left in flight, confirms it in etcd. Tried once per
    /// state revision: if the state changed meanwhile (a resume), the poller brings the change.
    pub(super) async fn confirm_stop_when_drained(&mut self) -> Result<(), DriverError> {
        if self.control.state != JobState::StopRequested
            || self.scheduler.batches_in_flight() > 0
            || self.stop_confirm_tried == Some(self.control.revision)
        {
            return Ok(());
        }
        self.stop_confirm_tried = Some(self.control.revision);
        let store = self.io.store.clone();
        let seen = self.control.clone();
        let confirmed = in_etcd(self.etcd_wait(), "confirming the stop in etcd", || {
            store.set_state(&seen, JobState::Stopped)
        })
        .await?;
        if confirmed {
            info!(
                "Stopped: every batch is committed; nothing is planned until `weirctl job resume`"
            );
            self.control.state = JobState::Stopped;
            self.publish_state();
        }
        Ok(())
    }

    /// Reads the checkpoint again and replays what it records, as a new leader would.
    async fn reload(&mut self) -> Result<(), DriverError> {
        let store = self.io.store.clone();
        let stored =
            in_etcd(self.etcd_wait(), "reading the job's checkpoint from etcd", || store.load())
                .await?;
        info!(last_committed_batch = ?stored.offsets.as_ref().and_then(|o| o.last_committed_batch),
            replaying = stored.pending.len(), "Checkpoint read again");
        let moved = stored.offsets.clone().unwrap_or_default() != self.committed;
        self.restore(stored);
        if moved {
            // Exactly-once executors keep each lane's progress from when they opened its
            // producer; offsets moved back would look "already committed" and be skipped. A new
            // session starts every lane afresh.
            self.reattach_executors("the committed offsets changed while the job was stopped");
        }
        for plan in std::mem::take(&mut self.replay) {
            info!(batch = plan.id, ranges = plan.ranges().count(), "Replaying a recorded batch");
            self.start_batch(plan, true).await?;
        }
        Ok(())
    }

    pub(super) fn publish_state(&self) {
        let control = &self.control;
        self.status.send_modify(|s| {
            s.state = control.state;
            s.state_changed_by = control.changed_by.clone();
            s.state_changed_at_ms = control.changed_at_ms;
            match control.state {
                JobState::Running => s.done_waiting("stopped"),
                JobState::StopRequested => {
                    s.wait("stopped", "the job is stopping: in-flight batches to commit", now_ms())
                }
                JobState::Stopped => {
                    s.wait("stopped", "the job is stopped: `weirctl job resume` to go on", now_ms())
                }
            }
        });
    }
}
