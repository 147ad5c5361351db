//! `weirctl offsets show|reset`. The committed offsets live in etcd (one value, with the last
//! committed batch); the group `weir.{job}` mirrors them for Kafka's own tools, and under
//! exactly-once it is what a replayed task reads to know whether its output is already
//! committed. A reset therefore moves both: etcd in one guarded transaction, then the group,
//! checked by reading it back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use weir_common::TopicPartition;
use weir_common::control::JobState;

use super::output::{Format, Table, or_dash, print_json};
use super::reset::{self, Change, Offsets, Target};
use super::store::Snapshot;
use super::{Ctl, CtlError, ResetArgs, lifecycle};
use crate::job::now_ms;
use crate::time::{format_ms, parse_datetime};

pub async fn show(ctl: &Ctl) -> Result<(), CtlError> {
    let snap = ctl.store.snapshot().await?;
    let committed = snap.offsets.as_ref().map(|o| o.next_offsets.clone()).unwrap_or_default();
    let partitions: Vec<TopicPartition> = committed.keys().cloned().collect();
    let kafka = ctl.kafka()?;
    let bounds = kafka.bounds(&partitions).await?;
    let group = kafka.group_offsets(&partitions).await?;
    let pending_ends = pending_ends(&snap);
    let mut disagreements = 0;
    let rows: Vec<Value> = committed
        .iter()
        .map(|(tp, &at)| {
            let log = bounds.get(tp);
            let in_group = group.get(tp).copied();
            let mut notes = Vec::new();
            if let Some(log) = log {
                if at < log.start {
                    notes.push(format!(
                        "{} records gone from Kafka before the job read them",
                        log.start - at
                    ));
                }
                if at > log.end {
                    notes.push("beyond the log end (was the topic recreated?)".to_owned());
                }
            }
            match in_group {
                Some(g) if g == at => {}
                Some(g) if pending_ends.get(tp).is_some_and(|ends| ends.contains(&g)) => notes
                    .push(
                        "group ahead: a recorded batch committed in Kafka, not yet in etcd".into(),
                    ),
                Some(g) => {
                    disagreements += 1;
                    notes.push(format!("group DISAGREES: {g} (etcd is the job's truth)"));
                }
                None => notes.push("group has no offset".into()),
            }
            json!({
                "partition": tp.to_string(),
                "committed": at,
                "log_start": log.map(|l| l.start),
                "log_end": log.map(|l| l.end),
                "lag": log.map(|l| (l.end - at).max(0)),
                "group": in_group,
                "notes": notes,
            })
        })
        .collect();
    let document = json!({
        "job": ctl.job,
        "group": kafka.group(),
        "last_committed_batch": snap.last_committed(),
        "partitions": rows,
        "disagreements": disagreements,
    });
    match ctl.format {
        Format::Json => print_json(&document),
        Format::Table => {
            let mut table = Table::new(&[
                "PARTITION",
                "COMMITTED",
                "LOG START",
                "LOG END",
                "LAG",
                "GROUP",
                "NOTE",
            ]);
            for r in &rows {
                let cell = |v: &Value| if v.is_null() { "-".to_owned() } else { v.to_string() };
                let notes: Vec<&str> =
                    r["notes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                table.row(vec![
                    r["partition"].as_str().unwrap_or_default().to_owned(),
                    cell(&r["committed"]),
                    cell(&r["log_start"]),
                    cell(&r["log_end"]),
                    cell(&r["lag"]),
                    cell(&r["group"]),
                    notes.join("; "),
                ]);
            }
            println!(
                "Job {}: committed offsets (etcd, last committed batch {}) beside Kafka and group {}",
                ctl.job,
                or_dash(snap.last_committed()),
                kafka.group()
            );
            print!("{}", table.render(0));
            if disagreements > 0 {
                println!(
                    "{disagreements} partition(s) where the group disagrees with etcd: \
                     `weirctl offsets reset --all-topics --to-current --execute` moves the group to etcd's offsets"
                );
            }
        }
    }
    Ok(())
}

pub async fn reset(ctl: &Ctl, args: ResetArgs) -> Result<(), CtlError> {
    let mut snap = ctl.store.snapshot().await?;
    if args.execute
        && let Some(leader) = &snap.leader
        && snap.control.state != JobState::Stopped
    {
        if !args.stop {
            return Err(CtlError::Refused(format!(
                "driver {} at {} leads job {} and the job is {}; add --stop to stop it first \
                 (in-flight batches commit, then it stays stopped), or run `weirctl job stop`",
                leader.driver_id, leader.address, ctl.job, snap.control.state
            )));
        }
        snap = lifecycle::stop(ctl, Some(args.timeout)).await?;
        if snap.leader.is_some() && snap.control.state != JobState::Stopped {
            return Err(CtlError::Failed("the job did not stop; nothing was reset".into()));
        }
    }
    let checkpoint = snap.offsets.clone().ok_or_else(|| {
        CtlError::Refused(format!(
            "job {} has no committed offsets yet, so there is nothing to reset \
             (source.starting_offsets says where a new job starts)",
            ctl.job
        ))
    })?;
    let known: BTreeSet<TopicPartition> = checkpoint.next_offsets.keys().cloned().collect();
    let from_file = match &args.from_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CtlError::Usage(format!("cannot read {}: {e}", path.display())))?;
            Some(
                reset::parse_csv(&text)
                    .map_err(|e| CtlError::Usage(format!("{}: {e}", path.display())))?,
            )
        }
        None => None,
    };
    let scope = match &from_file {
        Some(file) if args.topics.is_empty() && !args.all_topics => {
            if let Some(unknown) = file.keys().find(|tp| !known.contains(*tp)) {
                return Err(CtlError::Usage(format!(
                    "the job's checkpoint has no partition {unknown}"
                )));
            }
            file.keys().cloned().collect()
        }
        _ => reset::scope(&known, args.all_topics, &args.topics).map_err(CtlError::Usage)?,
    };
    let kafka = ctl.kafka()?;
    let bounds = kafka.bounds(&scope).await?;
    let target = target(&args, from_file, &scope, &kafka).await?;
    let changes =
        reset::plan(&scope, &checkpoint.next_offsets, &bounds, &target, args.out_of_range)
            .map_err(CtlError::Refused)?;
    let discarded: Vec<u64> = snap.pending().map(|b| b.id).collect();
    refuse_discarding_kafka_commits(&snap, &scope, &checkpoint.next_offsets, &kafka).await?;
    let document = json!({
        "job": ctl.job,
        "dry_run": !args.execute,
        "changes": changes,
        "discarded_batches": discarded,
        "group": kafka.group(),
    });
    if ctl.format == Format::Table {
        print!("{}", render_plan(ctl, &changes, &discarded, &kafka.group()));
    }
    if !args.execute {
        if ctl.format == Format::Json {
            print_json(&document);
        }
        ctl.say("Dry run: nothing was written. Add --execute to write these offsets.");
        if let Some(leader) = &snap.leader
            && snap.control.state != JobState::Stopped
        {
            ctl.say(format!(
                "Driver {} leads the job and it is {}: --execute needs --stop too (or `weirctl job stop` first).",
                leader.driver_id, snap.control.state
            ));
        }
        return Ok(());
    }
    let mut written = checkpoint.clone();
    for c in &changes {
        written.next_offsets.insert(c.partition.clone(), c.target);
    }
    if !ctl.store.reset_offsets(&snap, &written).await? {
        return Err(CtlError::Failed(
            "the job changed since it was read (a driver started leading, a batch committed, or \
             the job was resumed); nothing was written; run the command again"
                .into(),
        ));
    }
    let group_offsets: Offsets = changes.iter().map(|c| (c.partition.clone(), c.target)).collect();
    if let Err(e) = kafka.move_group(&group_offsets).await {
        return Err(CtlError::Failed(format!(
            "etcd holds the new offsets, but the group {} was not moved: {e}. The job must not \
             run like this under exactly-once; run `weirctl offsets reset --all-topics \
             --to-current --execute` to move the group to etcd's offsets",
            kafka.group()
        )));
    }
    if ctl.format == Format::Json {
        print_json(&document);
    }
    let next = match (&snap.leader, snap.control.state) {
        (Some(_), _) | (None, JobState::Stopped | JobState::StopRequested) => {
            "The job stays stopped: `weirctl job resume` runs it from these offsets."
        }
        (None, JobState::Running) => {
            "No driver runs: the next one to start runs from these offsets."
        }
    };
    ctl.say(format!("Offsets written to etcd and group {} (checked). {next}", kafka.group()));
    Ok(())
}

/// The offsets each partition is asked to move to.
async fn target(
    args: &ResetArgs,
    from_file: Option<Offsets>,
    scope: &[TopicPartition],
    kafka: &super::kafka::KafkaView,
) -> Result<Target, CtlError> {
    let by_time = |ms: i64| async move { kafka.at_time(scope, ms).await.map(Target::ByTime) };
    Ok(if args.to_earliest {
        Target::Earliest
    } else if args.to_latest {
        Target::Latest
    } else if args.to_current {
        Target::Current
    } else if let Some(text) = &args.to_datetime {
        by_time(parse_datetime(text).map_err(CtlError::Usage)?).await?
    } else if let Some(text) = &args.by_duration {
        let ago: Duration = super::parse_duration(text).map_err(CtlError::Usage)?;
        by_time(now_ms() - ago.as_millis() as i64).await?
    } else if let Some(n) = args.shift_by {
        Target::ShiftBy(n)
    } else if let Some(n) = args.to_offset {
        Target::Offset(n)
    } else if let Some(file) = from_file {
        Target::Explicit(file)
    } else {
        return Err(CtlError::Usage("say where to move the offsets (--to-earliest, ...)".into()));
    })
}

/// Under exactly-once a recorded batch may have committed some tasks in Kafka (the group is
/// past etcd's offset) before its driver stopped. Discarding it for a partition the reset does
/// not move would re-plan those offsets with the group inside the new range, and the job would
/// stop. Refuses that case, and says how to get out of it.
async fn refuse_discarding_kafka_commits(
    snap: &Snapshot,
    scope: &[TopicPartition],
    committed: &Offsets,
    kafka: &super::kafka::KafkaView,
) -> Result<(), CtlError> {
    let untouched: Vec<TopicPartition> =
        pending_ends(snap).into_keys().filter(|tp| !scope.contains(tp)).collect();
    if untouched.is_empty() {
        return Ok(());
    }
    let group = kafka.group_offsets(&untouched).await?;
    let ahead: Vec<String> = untouched
        .iter()
        .filter_map(|tp| {
            let (g, c) = (group.get(tp)?, committed.get(tp)?);
            (g > c).then(|| format!("{tp} (group {g}, etcd {c})"))
        })
        .collect();
    if ahead.is_empty() {
        return Ok(());
    }
    Err(CtlError::Refused(format!(
        "recorded batches not committed in etcd already committed output in Kafka for {}; \
         discarding them would stop the job. Start a driver so it commits them (a stopped job \
         still finishes recorded batches, then stays stopped), or include these partitions in \
         the reset",
        ahead.join(", ")
    )))
}

/// Where the recorded, uncommitted batches leave each partition they touch.
fn pending_ends(snap: &Snapshot) -> BTreeMap<TopicPartition, Vec<i64>> {
    let mut ends: BTreeMap<TopicPartition, Vec<i64>> = BTreeMap::new();
    for batch in snap.pending() {
        for (tp, end) in batch.ends() {
            ends.entry(tp.clone()).or_default().push(end);
        }
    }
    ends
}

fn render_plan(ctl: &Ctl, changes: &[Change], discarded: &[u64], group: &str) -> String {
    let mut table = Table::new(&["PARTITION", "CURRENT", "NEW", "MOVE", "NOTE"]);
    for c in changes {
        table.row(vec![
            c.partition.to_string(),
            c.current.to_string(),
            c.target.to_string(),
            format!("{:+}", c.target - c.current),
            if c.clamped {
                format!("asked {}, clamped to the log", c.requested)
            } else {
                String::new()
            },
        ]);
    }
    let mut out = format!("Job {}: offsets reset, as of {}\n", ctl.job, format_ms(now_ms()));
    out.push_str(&table.render(0));
    if discarded.is_empty() {
        out.push_str("No recorded batch is discarded.\n");
    } else {
        let ids: Vec<String> = discarded.iter().map(u64::to_string).collect();
        out.push_str(&format!(
            "Discards batches {} (recorded, not committed): they would have replayed old ranges.\n",
            ids.join(", ")
        ));
    }
    out.push_str(&format!("Group {group} is moved to the same offsets.\n"));
    out
}
