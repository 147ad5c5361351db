//! `weirctl batches`: the batch records etcd keeps (the last committed ones, and any recorded
//! and not yet committed), with their ranges.

use serde_json::{Value, json};
use weir_common::batch::BatchPlan;

use super::output::{Format, Table, print_json};
use super::store::Snapshot;
use super::{Ctl, CtlError};
use crate::time::format_ms;

pub async fn show(ctl: &Ctl, last: usize, batch: Option<u64>) -> Result<(), CtlError> {
    let snap = ctl.store.snapshot().await?;
    if let Some(id) = batch {
        let Some(plan) = snap.batches.iter().find(|b| b.id == id) else {
            let kept: Vec<String> = snap.batches.iter().map(|b| b.id.to_string()).collect();
            return Err(CtlError::Failed(format!(
                "etcd keeps no record of batch {id} (kept: {})",
                if kept.is_empty() { "none".into() } else { kept.join(", ") }
            )));
        };
        let document = detail(&snap, plan);
        match ctl.format {
            Format::Json => print_json(&document),
            Format::Table => print!("{}", render_detail(&document)),
        }
        return Ok(());
    }
    let start = snap.batches.len().saturating_sub(last);
    let rows: Vec<Value> = snap.batches[start..].iter().map(|b| summary(&snap, b)).collect();
    match ctl.format {
        Format::Json => print_json(&json!({ "job": ctl.job, "batches": rows })),
        Format::Table => print!("{}", table(&rows).render(0)),
    }
    Ok(())
}

/// One line per batch.
pub fn summary(snap: &Snapshot, plan: &BatchPlan) -> Value {
    let committed = snap.last_committed().is_some_and(|l| plan.id <= l);
    json!({
        "batch": plan.id,
        "status": if committed { "committed" } else { "recorded" },
        "planned_at_ms": plan.planned_at_ms,
        "tasks": plan.tasks.len(),
        "ranges": plan.ranges().count(),
        "max_records": plan.max_records(),
        "records_lost": plan.records_lost(),
    })
}

pub fn table(rows: &[Value]) -> Table {
    let mut table = Table::new(&["BATCH", "STATUS", "PLANNED AT", "TASKS", "RANGES", "RECORDS"]);
    for b in rows {
        table.row(vec![
            b["batch"].to_string(),
            b["status"].as_str().unwrap_or_default().to_owned(),
            format_ms(b["planned_at_ms"].as_i64().unwrap_or_default()),
            b["tasks"].to_string(),
            b["ranges"].to_string(),
            b["max_records"].to_string(),
        ]);
    }
    table
}

fn detail(snap: &Snapshot, plan: &BatchPlan) -> Value {
    let mut value = summary(snap, plan);
    value["tasks"] = plan
        .tasks
        .iter()
        .map(|t| {
            json!({
                "lane": t.lane,
                "ranges": t.ranges.iter().map(|r| json!({
                    "partition": r.topic_partition().to_string(),
                    "from": r.from(),
                    "until": r.until(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    value["data_lost"] = plan
        .data_lost
        .iter()
        .map(|r| json!({"partition": r.topic_partition().to_string(), "from": r.from(), "until": r.until()}))
        .collect();
    value
}

fn render_detail(doc: &Value) -> String {
    let mut out = format!(
        "Batch {} ({}), planned at {}, at most {} records\n",
        doc["batch"],
        doc["status"].as_str().unwrap_or_default(),
        format_ms(doc["planned_at_ms"].as_i64().unwrap_or_default()),
        doc["max_records"]
    );
    let mut table = Table::new(&["LANE", "PARTITION", "FROM", "UNTIL", "RECORDS"]);
    for task in doc["tasks"].as_array().into_iter().flatten() {
        for r in task["ranges"].as_array().into_iter().flatten() {
            let (from, until) = (r["from"].as_i64().unwrap_or(0), r["until"].as_i64().unwrap_or(0));
            table.row(vec![
                task["lane"].to_string(),
                r["partition"].as_str().unwrap_or_default().to_owned(),
                from.to_string(),
                until.to_string(),
                (until - from).to_string(),
            ]);
        }
    }
    out.push_str(&table.render(2));
    for r in doc["data_lost"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  skipped as lost: {} [{}, {})\n",
            r["partition"].as_str().unwrap_or_default(),
            r["from"],
            r["until"]
        ));
    }
    out
}
