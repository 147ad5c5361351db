//! `weirctl status`: the job at a glance. etcd says who leads, who stands by, the job's state,
//! the committed offsets and the batches; Kafka says where each log ends (so the lag); the
//! leading driver's `/api/status`, when it answers, adds the executors, the running tasks and
//! what the job waits for. With no driver running it shows what etcd and Kafka hold, and says so.

use serde_json::{Value, json};
use weir_common::TopicPartition;

use super::output::{Format, Table, or_dash, print_json};
use super::store::Snapshot;
use super::{Ctl, CtlError, http};
use crate::time::format_ms;

pub async fn show(ctl: &Ctl) -> Result<(), CtlError> {
    let snap = ctl.store.snapshot().await?;
    let mut notes = Vec::new();
    if snap.keys == 0 {
        notes.push(format!(
            "etcd holds no key of job {} under this prefix: it never ran, was deleted, or the \
             prefix or job name is wrong",
            ctl.job
        ));
    }
    let live = live_status(&snap, ctl.http_token.as_deref(), &mut notes).await;
    let partitions: Vec<TopicPartition> =
        snap.offsets.as_ref().map(|o| o.next_offsets.keys().cloned().collect()).unwrap_or_default();
    let mut log_ends = None;
    if ctl.has_kafka() && !partitions.is_empty() {
        match async { ctl.kafka()?.bounds(&partitions).await }.await {
            Ok(bounds) => log_ends = Some(bounds),
            Err(e) => notes.push(format!("Kafka did not answer, so no lag: {e}")),
        }
    } else if !ctl.has_kafka() {
        notes.push("no Kafka given (--config or --brokers), so no lag".into());
    }
    let rows: Vec<Value> = snap
        .offsets
        .iter()
        .flat_map(|o| o.next_offsets.iter())
        .map(|(tp, &committed)| {
            let end = log_ends.as_ref().and_then(|b| b.get(tp)).map(|b| b.end);
            json!({
                "partition": tp.to_string(),
                "lane": snap.lanes.lane_of(tp),
                "committed": committed,
                "log_end": end,
                "lag": end.map(|e| (e - committed).max(0)),
            })
        })
        .collect();
    let batches: Vec<Value> =
        snap.batches.iter().rev().take(5).map(|b| super::batches::summary(&snap, b)).collect();
    let document = json!({
        "job": ctl.job,
        "state": snap.control.state,
        "state_changed_by": snap.control.changed_by,
        "state_changed_at_ms": snap.control.changed_at_ms,
        "leader": snap.leader.as_ref().map(|l| json!({
            "driver_id": l.driver_id,
            "address": l.address,
            "http_address": l.http_address,
            "generation": l.generation,
            "elected_at_ms": l.elected_at_ms,
        })),
        "standbys": snap.standbys().map(|d| json!({
            "driver_id": d.driver_id, "address": d.address, "http_address": d.http_address,
        })).collect::<Vec<_>>(),
        "generation": snap.generation,
        "last_committed_batch": snap.last_committed(),
        "batches_pending": snap.pending().count(),
        "lanes": snap.lanes.lane_count(),
        "partitions": rows,
        "total_lag": log_ends.as_ref().map(|_| rows.iter().filter_map(|r| r["lag"].as_i64()).sum::<i64>()),
        "executors": live.as_ref().map(|s| s["executors"].clone()),
        "running_tasks": live.as_ref().map(|s| s["running_tasks"].clone()),
        "waiting_for": live.as_ref().map(|s| s["waiting_for"].clone()),
        "batches": batches,
        "notes": notes,
    });
    match ctl.format {
        Format::Json => print_json(&document),
        Format::Table => print!("{}", render(&snap, &document)),
    }
    Ok(())
}

/// The leading driver's own status, if it serves one and answers.
async fn live_status(
    snap: &Snapshot,
    token: Option<&str>,
    notes: &mut Vec<String>,
) -> Option<Value> {
    let Some(leader) = &snap.leader else {
        notes.push("no driver leads this job: shown from etcd and Kafka only".into());
        return None;
    };
    let Some(url) = &leader.http_address else {
        notes.push("the leader serves no status page (driver.http_listen = \"off\"), so executors are not shown".into());
        return None;
    };
    match http::driver_status(url, token).await {
        Ok(status) => Some(status),
        Err(e) => {
            notes.push(format!("the leader's status page did not answer: {e}"));
            None
        }
    }
}

fn render(snap: &Snapshot, doc: &Value) -> String {
    let mut out = String::new();
    let mut line = |key: &str, value: String| out.push_str(&format!("{key:<14}{value}\n"));
    line("Job", doc["job"].as_str().unwrap_or_default().to_owned());
    let state = snap.control.state;
    let state_text = if snap.control.changed_by.is_empty() {
        state.to_string()
    } else {
        format!(
            "{state} (set by {} at {})",
            snap.control.changed_by,
            format_ms(snap.control.changed_at_ms)
        )
    };
    line("State", state_text);
    line(
        "Leader",
        match &snap.leader {
            Some(l) => format!(
                "{} at {} (generation {}, since {}){}",
                l.driver_id,
                l.address,
                l.generation,
                format_ms(l.elected_at_ms),
                l.http_address.as_ref().map(|h| format!("; status {h}")).unwrap_or_default()
            ),
            None => "none: no driver runs".into(),
        },
    );
    let standbys: Vec<String> =
        snap.standbys().map(|d| format!("{} at {}", d.driver_id, d.address)).collect();
    line("Standbys", if standbys.is_empty() { "none".into() } else { standbys.join(", ") });
    line("Waiting for", doc["waiting_for"].as_str().unwrap_or("-").to_owned());
    line(
        "Batches",
        format!(
            "last committed {}, {} recorded and not committed",
            or_dash(snap.last_committed()),
            snap.pending().count()
        ),
    );
    line("Lanes", snap.lanes.lane_count().to_string());
    match doc["executors"].as_array() {
        Some(executors) => {
            line("Executors", format!("{} attached", executors.len()));
            if !executors.is_empty() {
                out.push_str(&super::executors::table(executors).render(2));
            }
        }
        None => line("Executors", "unknown (no status from a leader)".into()),
    }
    let mut table = Table::new(&["PARTITION", "LANE", "COMMITTED", "LOG END", "LAG"]);
    for p in doc["partitions"].as_array().into_iter().flatten() {
        let cell = |v: &Value| if v.is_null() { "-".to_owned() } else { v.to_string() };
        table.row(vec![
            p["partition"].as_str().unwrap_or_default().to_owned(),
            cell(&p["lane"]),
            cell(&p["committed"]),
            cell(&p["log_end"]),
            cell(&p["lag"]),
        ]);
    }
    out.push_str(&format!("Partitions    total lag {}\n", or_dash(doc["total_lag"].as_i64())));
    out.push_str(&table.render(2));
    out.push_str("Last batches\n");
    out.push_str(&super::batches::table(doc["batches"].as_array().map_or(&[], |v| v)).render(2));
    for note in doc["notes"].as_array().into_iter().flatten() {
        out.push_str(&format!("Note: {}\n", note.as_str().unwrap_or_default()));
    }
    out
}
