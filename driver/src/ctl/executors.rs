//! `weirctl executors [list|drain ID]`. Executors attach only to the leading driver and are
//! not in etcd, so the list comes from its `/api/status`; a drain is a request in etcd
//! (`control/drain/{id}`) that the driver acts on: it tells the executor to leave as SIGTERM
//! would, moves its lanes once its tasks finish, and the executor exits 0.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::output::{Format, Table, print_json};
use super::{Ctl, CtlError, http};

pub async fn list(ctl: &Ctl) -> Result<(), CtlError> {
    let executors = attached(ctl).await?;
    match ctl.format {
        Format::Json => print_json(&json!({ "job": ctl.job, "executors": executors })),
        Format::Table => print!("{}", table(&executors).render(0)),
    }
    Ok(())
}

/// The executors of a driver's `/api/status`, one row each.
pub fn table(executors: &[Value]) -> Table {
    let mut table = Table::new(&["ID", "SLOTS", "LANES", "RUNNING", "LEAVING"]);
    for e in executors {
        table.row(vec![
            e["id"].as_str().unwrap_or_default().to_owned(),
            e["slots"].to_string(),
            e["lanes"].to_string(),
            e["running"].to_string(),
            e["leaving"].to_string(),
        ]);
    }
    table
}

pub async fn drain(ctl: &Ctl, id: &str, wait: Option<Duration>) -> Result<(), CtlError> {
    let executors = attached(ctl).await?;
    if !executors.iter().any(|e| e["id"] == id) {
        let ids: Vec<&str> = executors.iter().filter_map(|e| e["id"].as_str()).collect();
        return Err(CtlError::Refused(format!(
            "no executor {id:?} is attached to the leading driver (attached: {})",
            if ids.is_empty() { "none".into() } else { ids.join(", ") }
        )));
    }
    ctl.store.request_drain(id).await?;
    ctl.say(format!("Asked executor {id} to leave; its lanes move once its running tasks finish."));
    let started = Instant::now();
    if let Some(limit) = wait {
        while attached(ctl).await?.iter().any(|e| e["id"] == id) {
            if started.elapsed() > limit {
                return Err(CtlError::Failed(format!(
                    "executor {id} is still attached after {limit:?} (its tasks still run?); the \
                     request stands"
                )));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        ctl.say(format!("Executor {id} has left: its lanes are with the other executors."));
    }
    if ctl.format == Format::Json {
        print_json(&json!({ "job": ctl.job, "drained": id, "waited": wait.is_some() }));
    }
    Ok(())
}

/// The executors attached to the leader, from its status page.
async fn attached(ctl: &Ctl) -> Result<Vec<Value>, CtlError> {
    let snap = ctl.store.snapshot().await?;
    let Some(leader) = &snap.leader else {
        return Err(CtlError::Refused(format!(
            "no driver leads job {}, so no executor is attached",
            ctl.job
        )));
    };
    let Some(url) = &leader.http_address else {
        return Err(CtlError::Failed(format!(
            "driver {} serves no status page (driver.http_listen = \"off\"), so its executors \
             cannot be listed",
            leader.driver_id
        )));
    };
    let token = ctl.http_token.as_deref();
    let status = http::driver_status(url, token).await.map_err(CtlError::Failed)?;
    Ok(status["executors"].as_array().cloned().unwrap_or_default())
}
