//! A scenario's running job: its executors' slots, the random source and the notes, and how one
//! fault is struck (preferably while a batch is in flight) and its recovery timed.

use std::time::{Duration, Instant};

use super::progress::Progress;
use super::{BUSY_POLL, EXECUTOR_DOWN, Fault, PAUSE, RECOVERY_LIMIT, Recovery, XorShift64};
use crate::job::JobFixture;

/// Whether an executor slot is running normally or stopped by [`Fault::PauseExecutor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Live,
    Paused,
}

/// The run's mutable state: the job, its executors' slots, the random source, notes.
pub(super) struct Run {
    pub(super) job: JobFixture,
    pub(super) executors: Vec<(String, Slot)>,
    pub(super) rng: XorShift64,
    pub(super) progress: Progress,
    pub(super) notes: Vec<String>,
    pub(super) started: Instant,
    /// [`BUSY_WAIT`](super::BUSY_WAIT), or zero under at-most-once: it commits a batch in etcd before dispatching
    /// it, so etcd never shows one in flight.
    pub(super) busy_wait: Duration,
}

impl Run {
    /// A random executor that is live (never a paused one).
    fn pick_live_executor(&mut self) -> usize {
        let live: Vec<usize> =
            (0..self.executors.len()).filter(|&i| self.executors[i].1 == Slot::Live).collect();
        assert!(!live.is_empty(), "no live executor to fault");
        live[self.rng.below(live.len() as u64) as usize]
    }

    /// Before a fault: a process that exited on its own is noted and started again, so the
    /// fault hits the job it is meant to (and the note tells the reader it happened).
    pub(super) async fn restart_exited(&mut self) {
        if let Some(status) = self.job.supervisor.wait_exit("driver", Duration::ZERO).await {
            self.note(format!("the driver exited by itself ({status}); started again"));
            self.job.start_driver();
        }
        for i in 0..self.executors.len() {
            let name = self.executors[i].0.clone();
            if let Some(status) = self.job.supervisor.wait_exit(&name, Duration::ZERO).await {
                self.note(format!("{name} exited by itself ({status}); started again"));
                self.job.start_executor(&name);
                self.executors[i].1 = Slot::Live;
            }
        }
    }

    pub(super) fn note(&mut self, note: String) {
        eprintln!("note: {note}");
        self.notes.push(note);
    }

    pub(super) async fn apply(&mut self, fault: Fault) -> Recovery {
        self.restart_exited().await;
        // Strike while a batch is in flight when there is one within a moment: a fault in
        // the middle of running tasks is the one that tests the guarantee, and the only one
        // whose recovery time says something (an idle job "recovers" at once).
        let busy_until = Instant::now() + self.busy_wait;
        let (recorded, before) = loop {
            let recorded = self.progress.recorded_batches().await;
            let before = self.progress.snapshot().await;
            let busy = recorded.last().copied() > before.last_committed;
            if busy || Instant::now() >= busy_until {
                break (recorded, before);
            }
            tokio::time::sleep(BUSY_POLL).await;
        };
        let batch = recorded.last().copied();
        let in_flight = recorded.iter().filter(|&&id| Some(id) > before.last_committed).count();
        let fault_at = Instant::now();
        let at = fault_at - self.started;
        let target;
        let watcher;
        match fault {
            Fault::KillExecutor => {
                let i = self.pick_live_executor();
                let name = self.executors[i].0.clone();
                self.job.supervisor.kill(&name);
                watcher = tokio::spawn(self.progress.clone().recovered(fault_at, batch, None));
                tokio::time::sleep(EXECUTOR_DOWN).await;
                self.job.start_executor(&name);
                target = name;
            }
            Fault::PauseExecutor => {
                let i = self.pick_live_executor();
                let name = self.executors[i].0.clone();
                self.job.supervisor.pause(&name);
                self.executors[i].1 = Slot::Paused;
                watcher = tokio::spawn(self.progress.clone().recovered(fault_at, batch, None));
                tokio::time::sleep_until((fault_at + PAUSE).into()).await;
                self.job.supervisor.resume(&name);
                self.executors[i].1 = Slot::Live;
                target = name;
            }
            Fault::KillDriver => {
                self.job.supervisor.kill("driver");
                // Read after the kill: nothing can commit now, so any later commit is the new
                // driver's.
                let baseline = self.progress.snapshot().await.last_committed;
                let recovered = self.progress.clone().recovered(fault_at, batch, Some(baseline));
                watcher = tokio::spawn(recovered);
                self.job.start_driver();
                target = "driver".to_owned();
            }
            Fault::RestartAll => {
                self.job.supervisor.kill("driver");
                for (name, _) in &self.executors {
                    self.job.supervisor.kill(name);
                }
                let baseline = self.progress.snapshot().await.last_committed;
                let recovered = self.progress.clone().recovered(fault_at, batch, Some(baseline));
                watcher = tokio::spawn(recovered);
                self.job.start_driver();
                for i in 0..self.executors.len() {
                    let name = self.executors[i].0.clone();
                    self.job.start_executor(&name);
                    self.executors[i].1 = Slot::Live;
                }
                target = format!("driver+{} executors", self.executors.len());
            }
        }
        let took = match watcher.await {
            Ok(Ok(took)) => took,
            Ok(Err(missing)) => panic!(
                "{fault} of {target} at {at:.1?}: no recovery within {RECOVERY_LIMIT:?}, {missing}"
            ),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        Recovery {
            kind: fault,
            fault: fault.to_string(),
            target,
            took,
            at,
            batch,
            in_flight,
            remaining: (self.progress.records as i64 - before.committed_records).max(0) as u64,
        }
    }
}
