//! `weirctl job stop|resume|delete`. A stop and a resume are the job's state in etcd
//! (`control/state`), which the leading driver acts on and a restarted driver reads first, so a
//! stopped job stays stopped across restarts and failovers.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use weir_common::control::JobState;

use super::output::{Format, print_json};
use super::store::Snapshot;
use super::{Ctl, CtlError};

const POLL: Duration = Duration::from_millis(300);

/// Stops the job: with a leading driver, asks it to stop and (with `wait`) waits until it
/// confirms that nothing is in flight; with none, the job is stopped at once. Returns the
/// snapshot that shows it stopped.
pub async fn stop(ctl: &Ctl, wait: Option<Duration>) -> Result<Snapshot, CtlError> {
    let snap = ctl.store.snapshot().await?;
    if snap.control.state == JobState::Running {
        // No driver leads: nothing is in flight, so the stop holds at once. The guard makes a
        // driver that starts leading meanwhile fail this write instead.
        let state = if snap.leader.is_some() { JobState::StopRequested } else { JobState::Stopped };
        if !ctl.store.set_state(&snap, state, &ctl.me).await? {
            return Err(CtlError::Failed(
                "the job changed while stopping it (a driver started leading, or another weirctl \
                 acted); nothing was written; run the command again"
                    .into(),
            ));
        }
    }
    let started = Instant::now();
    let mut snap = ctl.store.snapshot().await?;
    if let Some(limit) = wait {
        while snap.control.state != JobState::Stopped && snap.leader.is_some() {
            if started.elapsed() > limit {
                return Err(CtlError::Failed(format!(
                    "the job is still stopping after {limit:?}: its driver waits for in-flight \
                     batches to commit (see `weirctl status`); the stop stays requested"
                )));
            }
            tokio::time::sleep(POLL).await;
            snap = ctl.store.snapshot().await?;
        }
    }
    let text = match (snap.control.state, &snap.leader) {
        (JobState::Stopped, Some(l)) => format!(
            "Job {} stopped: every batch is committed; driver {} leads and plans nothing until \
             `weirctl job resume`.",
            ctl.job, l.driver_id
        ),
        (JobState::Stopped, None) => format!(
            "Job {} stopped: no driver runs; one started later stays stopped until `weirctl job resume`.",
            ctl.job
        ),
        (_, None) => format!(
            "Job {}: stop recorded; no driver leads now. The next driver commits the batches \
             recorded before the stop, then stays stopped.",
            ctl.job
        ),
        (_, Some(l)) => format!(
            "Job {}: stop requested; driver {} commits the batches in flight, then stays stopped.",
            ctl.job, l.driver_id
        ),
    };
    report(ctl, &snap, text);
    Ok(snap)
}

pub async fn resume(ctl: &Ctl) -> Result<(), CtlError> {
    let snap = ctl.store.snapshot().await?;
    if snap.control.state != JobState::Running
        && !ctl.store.set_state(&snap, JobState::Running, &ctl.me).await?
    {
        return Err(CtlError::Failed(
            "the job changed while resuming it; nothing was written; run the command again".into(),
        ));
    }
    let snap = ctl.store.snapshot().await?;
    let text = match &snap.leader {
        Some(l) => format!(
            "Job {} resumed: driver {} plans from the committed offsets.",
            ctl.job, l.driver_id
        ),
        None => format!("Job {} resumed: the next driver to start runs it.", ctl.job),
    };
    report(ctl, &snap, text);
    Ok(())
}

pub async fn delete(ctl: &Ctl, confirm: Option<&str>, group: bool) -> Result<(), CtlError> {
    let snap = ctl.store.snapshot().await?;
    if let Some(leader) = &snap.leader {
        return Err(CtlError::Refused(format!(
            "driver {} at {} leads job {}; stop its drivers first (deleting the keys under a \
             running driver would lose its progress)",
            leader.driver_id, leader.address, ctl.job
        )));
    }
    if confirm != Some(ctl.job.as_str()) {
        return Err(CtlError::Usage(format!(
            "this deletes job {} ({} etcd keys: its offsets, lanes and batch records{}); add \
             --confirm {} to do it",
            ctl.job,
            snap.keys,
            if group { ", and its Kafka group" } else { "" },
            ctl.job
        )));
    }
    if snap.keys > 0 && !ctl.store.delete_job().await? {
        return Err(CtlError::Refused(format!(
            "a driver started leading job {} meanwhile; nothing was deleted",
            ctl.job
        )));
    }
    if group {
        ctl.kafka()?.delete_group().await?;
    }
    let text = format!(
        "Job {} deleted: {} etcd keys{}.",
        ctl.job,
        snap.keys,
        if group { " and its Kafka group" } else { "" }
    );
    match ctl.format {
        Format::Json => {
            print_json(&json!({"job": ctl.job, "deleted_keys": snap.keys, "group_deleted": group}))
        }
        Format::Table => println!("{text}"),
    }
    Ok(())
}

fn report(ctl: &Ctl, snap: &Snapshot, text: String) {
    match ctl.format {
        Format::Json => print_json(&json!({
            "job": ctl.job,
            "state": snap.control.state,
            "leader": snap.leader.as_ref().map(|l| l.driver_id.clone()),
            "message": text,
        })),
        Format::Table => println!("{text}"),
    }
}
