//! The status page (`/`) and a batch's detail (`/batches/{id}`): HTML rendered on the server
//! from the published status, refreshed by the browser every few seconds. No JavaScript.
//! Element ids (`#job`, `#batches`, `#lag`, `#executors`, `#failures`) and `data-*` attributes
//! name what a reader, or a test, looks for.

use std::fmt::Write;

use super::charts::{Series, line_chart};
use super::history::{BatchState, BatchView};
use super::{Role, Status};
use crate::job::now_ms;

/// Minutes the charts cover.
const CHART_WINDOW_MS: i64 = 5 * 60 * 1000;

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:16px;color:#222}\
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:18px 0 6px}\
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right}\
th{background:#f4f4f4}td.l,th.l{text-align:left}.badge{padding:1px 6px;border-radius:4px;color:#fff}\
.leader{background:#2a7}.standby{background:#888}.starting{background:#c80}.wait{color:#b50}\
.committed{color:#2a7}.running{color:#17b}.recorded{color:#888}.failed,.lost{color:#c22}\
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart text{font-size:10px;fill:#444}\
.chart .title{font-size:12px;fill:#222}dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;margin:0}\
dt{color:#666}dd{margin:0}";

/// The whole page.
pub fn render(s: &Status) -> String {
    let now = now_ms();
    let mut out = head(&format!("Weir: {}", s.job), 5);
    out.push_str(&summary(s, now));
    if s.role == Role::Leader {
        out.push_str(&charts(s, now));
        out.push_str(&batch_table(s));
        out.push_str(&lag_table(s));
        out.push_str(&executor_table(s));
        out.push_str(&failure_table(s, now));
    }
    out.push_str("</body></html>");
    out
}

/// One batch: its ranges per partition and every attempt of its tasks.
pub fn batch(s: &Status, id: u64) -> Option<String> {
    let b = s.history.batch(id)?;
    let mut out = head(&format!("Weir: {} batch {id}", s.job), 0);
    let _ = write!(
        out,
        r#"<p><a href="/">&larr; {}</a></p><h1>Batch {id} <span class="{}">{}</span></h1><dl id="batch" data-batch="{id}">"#,
        esc(&s.job),
        state_class(b.status),
        state_class(b.status)
    );
    let rows = [
        ("Planned at", time(b.planned_at_ms)),
        ("Input records", b.records_in.to_string()),
        ("Output records", b.records_out.to_string()),
        ("Filtered", b.records_filtered.to_string()),
        ("Rejected (dead-lettered or skipped)", b.records_rejected.to_string()),
        ("Lost (no longer in Kafka)", b.records_lost.to_string()),
        ("Scheduling delay", ms(b.scheduling_delay_ms)),
        ("Processing time", ms(b.processing_ms)),
        ("Total delay", ms(b.total_delay_ms)),
        ("Tasks / attempts", format!("{} / {}", b.tasks, b.attempts)),
        (
            "Replayed",
            if b.replayed { "yes (recorded by an earlier driver or before a stop)" } else { "no" }
                .into(),
        ),
    ];
    for (k, v) in rows {
        let _ = write!(out, "<dt>{k}</dt><dd>{}</dd>", esc(&v));
    }
    out.push_str("</dl><h2>Ranges</h2><table id=\"ranges\"><tr><th>Lane</th><th class=\"l\">Partition</th><th>From</th><th>Until</th><th>Records</th></tr>");
    for r in &b.ranges {
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td class="l">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            r.lane,
            esc(&r.partition),
            r.from,
            r.until,
            r.until - r.from
        );
    }
    out.push_str("</table><h2>Tasks</h2><table id=\"runs\"><tr><th>Lane</th><th>Attempt</th><th class=\"l\">Executor</th><th>Records</th><th>Duration</th><th class=\"l\">Outcome</th><th class=\"l\">Failure</th></tr>");
    for run in &b.runs {
        let _ = write!(
            out,
            r#"<tr data-outcome="{o}"><td>{}</td><td>{}</td><td class="l">{}</td><td>{}</td><td>{}</td><td class="l {o}">{o}</td><td class="l">{}</td></tr>"#,
            run.lane,
            run.attempt,
            esc(&run.executor),
            run.records_in,
            ms(run.duration_ms),
            esc(run.failure.as_deref().unwrap_or("")),
            o = run.outcome,
        );
    }
    out.push_str("</table></body></html>");
    Some(out)
}

fn head(title: &str, refresh_seconds: u32) -> String {
    let refresh = if refresh_seconds > 0 {
        format!(r#"<meta http-equiv="refresh" content="{refresh_seconds}">"#)
    } else {
        String::new()
    };
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">{refresh}<title>{}</title><style>{STYLE}</style></head><body>"#,
        esc(title)
    )
}

fn summary(s: &Status, now: i64) -> String {
    let role = match s.role {
        Role::Leader => "leader",
        Role::Standby => "standby",
        Role::Starting => "starting",
    };
    let mut out = format!(
        r#"<h1 id="job" data-job="{}">{} <span class="badge {role}" id="role">{role}</span></h1><dl>"#,
        esc(&s.job),
        esc(&s.job)
    );
    let mut row = |k: &str, v: String| {
        let _ = write!(out, "<dt>{k}</dt><dd>{v}</dd>");
    };
    row("Driver", format!("{} (generation {})", esc(&s.driver_id), s.generation));
    if let Some(l) = &s.leader {
        let link = match &l.http_address {
            Some(url) => format!(r#"<a id="leader" href="{0}/">{0}</a>"#, esc(url)),
            None => "no status page".into(),
        };
        row(
            "Leader",
            format!(
                "{} (generation {}) at {}; {link}",
                esc(&l.driver_id),
                l.generation,
                esc(&l.address)
            ),
        );
    }
    row("Guarantee", esc(&s.guarantee));
    row("Batch interval", format!("{} ms", s.batch_interval_ms));
    row("Up for", duration_text(now - s.started_at_ms));
    row("State", format!("{}", s.state));
    let waiting = match (&s.waiting_for, s.waiting_since_ms) {
        (Some(what), Some(since)) => format!(
            r#"<span class="wait" id="waiting">{} (for {})</span>"#,
            esc(what),
            duration_text(now - since)
        ),
        _ => r#"<span id="waiting">nothing: batches run as planned</span>"#.into(),
    };
    row("Waiting for", waiting);
    if s.role == Role::Leader {
        row(
            "Totals",
            format!(
                r#"<span id="totals" data-batches="{}" data-records-in="{}" data-records-out="{}">{} batches committed, {} records in, {} out, {} filtered, {} rejected</span>"#,
                s.batches_committed,
                s.records_in,
                s.records_out,
                s.batches_committed,
                s.records_in,
                s.records_out,
                s.records_filtered,
                s.records_rejected
            ),
        );
        row(
            "Lag",
            format!(
                r#"<span id="total-lag" data-lag="{}">{} records; oldest unplanned waited {}</span>"#,
                s.lag,
                s.lag,
                duration_text(s.oldest_unplanned_age_ms as i64)
            ),
        );
        let rate =
            s.rate_records_per_second.map_or("none yet".into(), |r| format!("{r:.0} records/s"));
        row("Rate in force", rate);
    }
    out.push_str("</dl>");
    out
}

fn charts(s: &Status, now: i64) -> String {
    let committed: Vec<&BatchView> =
        s.history.batches.iter().filter(|b| b.status == BatchState::Committed).collect();
    let done_at = |b: &BatchView| b.planned_at_ms + b.total_delay_ms.unwrap_or(0) as i64;
    let interval_s = (s.batch_interval_ms.max(1)) as f64 / 1000.0;
    let input = committed.iter().map(|b| (done_at(b), b.records_in as f64 / interval_s)).collect();
    let processed = committed
        .iter()
        .map(|b| {
            (
                done_at(b),
                b.records_in as f64 / (b.processing_ms.unwrap_or(0).max(1) as f64 / 1000.0),
            )
        })
        .collect();
    let processing =
        committed.iter().map(|b| (done_at(b), b.processing_ms.unwrap_or(0) as f64)).collect();
    let interval = committed.iter().map(|b| (done_at(b), s.batch_interval_ms as f64)).collect();
    let lag = s.history.lag_samples.iter().map(|l| (l.at_ms, l.lag as f64)).collect();
    let w = CHART_WINDOW_MS;
    format!(
        r#"<h2>Last {} minutes</h2><div class="charts" id="charts">{}{}{}</div>"#,
        w / 60_000,
        line_chart(
            "Input rate and processing rate",
            "rec/s",
            &[
                Series { name: "input", color: "#1f77b4", points: input },
                Series { name: "processing", color: "#2ca02c", points: processed },
            ],
            now,
            w
        ),
        line_chart(
            "Batch processing time and the batch interval",
            "ms",
            &[
                Series { name: "processing", color: "#d62728", points: processing },
                Series { name: "interval", color: "#999999", points: interval },
            ],
            now,
            w
        ),
        line_chart(
            "Lag",
            "records",
            &[Series { name: "lag", color: "#9467bd", points: lag }],
            now,
            w
        ),
    )
}

fn batch_table(s: &Status) -> String {
    let mut out = String::from(
        r#"<h2>Batches</h2><table id="batches"><tr><th>Batch</th><th class="l">Planned at</th><th>Input</th><th>Output</th><th>Filtered</th><th>Rejected</th><th>Scheduling delay</th><th>Processing time</th><th>Total delay</th><th class="l">Status</th><th>Tasks</th><th>Attempts</th></tr>"#,
    );
    for b in s.history.batches.iter().rev() {
        let state = state_class(b.status);
        let _ = write!(
            out,
            r#"<tr data-batch="{id}" data-status="{state}" data-records-in="{}" data-records-out="{}"><td><a href="/batches/{id}">{id}</a></td><td class="l">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="l {state}">{state}</td><td>{}</td><td>{}</td></tr>"#,
            b.records_in,
            b.records_out,
            time(b.planned_at_ms),
            b.records_in,
            b.records_out,
            b.records_filtered,
            b.records_rejected,
            ms(b.scheduling_delay_ms),
            ms(b.processing_ms),
            ms(b.total_delay_ms),
            b.tasks,
            b.attempts,
            id = b.id,
        );
    }
    out.push_str("</table>");
    out
}

fn lag_table(s: &Status) -> String {
    let mut out = format!(
        r#"<h2>Lag per partition</h2><table id="lag"><tr><th class="l">Partition</th><th>Records</th><th>Oldest waited</th></tr><tr data-partition="total"><td class="l"><b>total</b></td><td>{}</td><td>{}</td></tr>"#,
        s.lag,
        duration_text(s.oldest_unplanned_age_ms as i64)
    );
    for (partition, lag) in &s.lag_by_partition {
        let age = s
            .lag_age_ms_by_partition
            .get(partition)
            .map_or("-".into(), |a| duration_text(*a as i64));
        let _ = write!(
            out,
            r#"<tr data-partition="{p}"><td class="l">{p}</td><td>{lag}</td><td>{age}</td></tr>"#,
            p = esc(partition)
        );
    }
    out.push_str("</table>");
    out
}

fn executor_table(s: &Status) -> String {
    let mut out = String::from(
        r#"<h2>Executors</h2><table id="executors"><tr><th class="l">Executor</th><th class="l">Address</th><th>Slots</th><th>Lanes</th><th>Lanes taken</th><th class="l">Running tasks (records read)</th><th>Last heard</th><th class="l">Leaving</th></tr>"#,
    );
    for e in &s.executors {
        let tasks: Vec<String> = s
            .running_tasks
            .iter()
            .filter(|t| t.executor == e.id)
            .map(|t| format!("{} ({})", t.task, t.records_in))
            .collect();
        let _ = write!(
            out,
            r#"<tr data-executor="{id}"><td class="l">{id}</td><td class="l">{}</td><td>{}</td><td>{}</td><td>{}</td><td class="l">{}</td><td>{} ms ago</td><td class="l">{}</td></tr>"#,
            esc(&e.address),
            e.slots,
            e.lanes,
            e.lanes_taken,
            esc(&tasks.join(", ")),
            e.last_heard_ms,
            if e.leaving { "yes" } else { "" },
            id = esc(&e.id),
        );
    }
    out.push_str("</table>");
    out
}

fn failure_table(s: &Status, now: i64) -> String {
    let mut out = String::from(
        r#"<h2>Last failures</h2><table id="failures"><tr><th class="l">When</th><th>Batch</th><th>Lane</th><th>Attempt</th><th class="l">Executor</th><th class="l">Kind</th><th class="l">Message</th></tr>"#,
    );
    for f in s.history.failures.iter().rev() {
        let _ = write!(
            out,
            r#"<tr data-kind="{k}"><td class="l">{} ago</td><td>{}</td><td>{}</td><td>{}</td><td class="l">{}</td><td class="l">{k}</td><td class="l">{}</td></tr>"#,
            duration_text(now - f.at_ms),
            f.batch,
            f.lane,
            f.attempt,
            esc(&f.executor),
            esc(&f.message),
            k = esc(&f.kind),
        );
    }
    out.push_str("</table>");
    out
}

fn state_class(state: BatchState) -> &'static str {
    match state {
        BatchState::Recorded => "recorded",
        BatchState::Running => "running",
        BatchState::Committed => "committed",
    }
}

fn ms(value: Option<u64>) -> String {
    value.map_or("-".into(), |v| format!("{v} ms"))
}

fn time(at_ms: i64) -> String {
    crate::time::format_ms(at_ms)
}

/// `93_000` as `1m 33s`.
fn duration_text(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{}s", s),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, s / 60 % 60),
    }
}

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::history::History;
    use weir_common::batch::BatchPlan;
    use weir_common::protocol::{TaskId, TaskMetrics};

    #[test]
    fn the_page_shows_each_batch_with_a_link_to_its_detail_and_escapes_text() {
        let mut s = Status {
            job: "a<b".into(),
            role: Role::Leader,
            history: History::new(10),
            ..Status::default()
        };
        let plan = BatchPlan { id: 7, tasks: Vec::new(), planned_at_ms: 0, data_lost: Vec::new() };
        s.history.recorded(&plan, false);
        let task = TaskId { batch: 7, lane: 0, attempt: 0 };
        s.history.dispatched(task, "e1", 0);
        s.history.succeeded(task, "e1", &TaskMetrics { records_in: 3, ..Default::default() });
        s.history.committed(
            7,
            &TaskMetrics { records_in: 3, records_out: 2, ..Default::default() },
            1,
            2,
            5,
        );
        let html = render(&s);
        assert!(html.contains(r#"<tr data-batch="7" data-status="committed" data-records-in="3" data-records-out="2">"#), "{html}");
        assert!(html.contains(r#"<a href="/batches/7">7</a>"#));
        assert!(html.contains("a&lt;b") && !html.contains("a<b"), "the job name is escaped");
        let detail = batch(&s, 7).unwrap();
        assert!(detail.contains(r#"<tr data-outcome="succeeded">"#), "{detail}");
        assert!(batch(&s, 8).is_none());
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration_text(93_000), "1m 33s");
        assert_eq!(duration_text(7_260_000), "2h 1m");
        assert_eq!(duration_text(-5), "0s");
    }
}
