//! Unit tests of the pure scheduler: assignment, slots, lane order, sticky and balanced owners,
//! lost and leaving executors, retries, silence and commit order. Time is built from an
//! `Instant` plus durations; nothing sleeps.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;
use weir_common::batch::{BatchPlan, LaneId, LaneTask};
use weir_common::failure::FailureKind;
use weir_common::protocol::{TaskId, TaskMetrics};
use weir_common::{OffsetRange, TopicPartition};

use super::{Assignment, JobFailure, OUTAGE_RETRY, Scheduler, Settings};

const BACKOFF: Duration = Duration::from_secs(1);

fn settings() -> Settings {
    Settings { max_attempts: 3, retry_backoff: BACKOFF, run_again: true, outage_limit: None }
}

/// Lane `lane`'s ranges in batch `batch`: one partition per lane, 100 offsets per batch.
fn ranges(batch: u64, lane: LaneId) -> Vec<OffsetRange> {
    let from = batch as i64 * 100;
    vec![OffsetRange::new(TopicPartition::new("raw", lane as i32), from, from + 100).unwrap()]
}

fn plan(id: u64, lanes: impl IntoIterator<Item = LaneId>) -> BatchPlan {
    let tasks = lanes.into_iter().map(|lane| LaneTask { lane, ranges: ranges(id, lane) }).collect();
    BatchPlan { id, tasks, planned_at_ms: 0, data_lost: Vec::new() }
}

fn scheduler() -> Scheduler {
    Scheduler::new(settings())
}

fn metrics(records_in: u64) -> TaskMetrics {
    TaskMetrics { records_in, ..TaskMetrics::default() }
}

/// Running tasks per executor (from the scheduler's own report).
fn running_per_executor(s: &Scheduler) -> BTreeMap<String, usize> {
    s.executor_status(Instant::now()).into_iter().map(|e| (e.id, e.running)).collect()
}

fn lanes_per_executor(s: &Scheduler) -> BTreeMap<String, usize> {
    s.executor_status(Instant::now()).into_iter().map(|e| (e.id, e.lanes)).collect()
}

/// No executor runs more than its slots, counted both ways: the status rows and `running()`.
fn assert_slots_respected(s: &Scheduler) {
    let mut counted: BTreeMap<String, usize> = BTreeMap::new();
    for (executor, _) in s.running() {
        *counted.entry(executor).or_default() += 1;
    }
    for e in s.executor_status(Instant::now()) {
        assert!(
            e.running <= e.slots as usize,
            "{} runs {} tasks on {} slots",
            e.id,
            e.running,
            e.slots
        );
        let c = counted.get(&e.id).copied().unwrap_or(0);
        assert!(c <= e.slots as usize, "{} runs {c} tasks on {} slots", e.id, e.slots);
    }
}

fn succeed_all(s: &mut Scheduler, assignments: &[Assignment]) {
    for a in assignments {
        assert!(s.task_succeeded(&a.executor, a.task, metrics(1)), "{a:?} not current");
    }
}

fn find(assignments: &[Assignment], batch: u64, lane: LaneId) -> &Assignment {
    assignments
        .iter()
        .find(|a| a.task.batch == batch && a.task.lane == lane)
        .unwrap_or_else(|| panic!("batch {batch} lane {lane} not assigned in {assignments:?}"))
}

fn batch_lanes(assignments: &[Assignment]) -> BTreeSet<(u64, LaneId)> {
    assignments.iter().map(|a| (a.task.batch, a.task.lane)).collect()
}

#[test]
fn assigns_every_task_once_and_never_more_than_slots() {
    let now = Instant::now();
    let mut s = scheduler();
    s.add_executor("a".into(), 2, now);
    s.add_executor("b".into(), 1, now);
    s.add_batch(plan(1, 0..6), now);

    let first = s.dispatch(now);
    assert_eq!(first.len(), 3, "3 slots in all: {first:?}");
    assert_slots_respected(&s);
    assert_eq!(running_per_executor(&s), BTreeMap::from([("a".into(), 2), ("b".into(), 1)]));
    // Nothing more while every slot is taken.
    assert!(s.dispatch(now).is_empty());

    let mut seen: BTreeMap<LaneId, usize> = BTreeMap::new();
    let mut pending = first;
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        assert!(rounds < 10, "tasks never finish");
        for a in &pending {
            assert_eq!(a.task.batch, 1);
            assert_eq!(a.task.attempt, 0);
            assert_eq!(a.ranges, ranges(1, a.task.lane), "the plan's ranges");
            *seen.entry(a.task.lane).or_default() += 1;
        }
        succeed_all(&mut s, &pending);
        pending = s.dispatch(now);
        assert_slots_respected(&s);
    }
    assert_eq!(seen, (0..6).map(|lane| (lane, 1)).collect(), "every lane exactly once");
    assert_eq!(s.committable().map(|b| b.plan.id), Some(1));
    assert_eq!(s.committable().unwrap().metrics.records_in, 6);
    assert!(s.committable().unwrap().first_dispatch.is_some());
}

#[test]
fn a_single_slot_runs_one_task_at_a_time() {
    let now = Instant::now();
    let mut s = scheduler();
    s.add_executor("a".into(), 1, now);
    s.add_batch(plan(1, 0..3), now);
    for _ in 0..3 {
        let assigned = s.dispatch(now);
        assert_eq!(assigned.len(), 1, "{assigned:?}");
        assert!(s.dispatch(now).is_empty(), "a second task on a full executor");
        succeed_all(&mut s, &assigned);
    }
    assert!(s.dispatch(now).is_empty());
    assert!(s.committable().is_some());
}

#[test]
fn a_lane_runs_its_batches_in_order() {
    let now = Instant::now();
    let mut s = scheduler();
    s.add_executor("a".into(), 8, now);
    s.add_batch(plan(1, [0, 1]), now);
    s.add_batch(plan(2, [0, 1]), now);

    let first = s.dispatch(now);
    assert_eq!(batch_lanes(&first), BTreeSet::from([(1, 0), (1, 1)]), "only batch 1, free slots");
    assert!(s.dispatch(now).is_empty(), "batch 2 waits for batch 1 lane by lane");

    assert!(s.task_succeeded("a", find(&first, 1, 0).task, metrics(1)));
    let second = s.dispatch(now);
    assert_eq!(batch_lanes(&second), BTreeSet::from([(2, 0)]), "lane 1 still runs batch 1");
    assert_eq!(second[0].ranges, ranges(2, 0));

    assert!(s.task_succeeded("a", find(&first, 1, 1).task, metrics(1)));
    assert_eq!(batch_lanes(&s.dispatch(now)), BTreeSet::from([(2, 1)]));
}

#[test]
fn a_lane_waiting_for_a_retry_holds_back_its_later_batches() {
    let now = Instant::now();
    let mut s = scheduler();
    s.add_executor("a".into(), 8, now);
    s.add_batch(plan(1, [0]), now);
    s.add_batch(plan(2, [0]), now);
    let first = s.dispatch(now);
    assert_eq!(
        s.task_failed("a", first[0].task, FailureKind::Transient, "broker away", now),
        Ok(true)
    );
    assert!(s.dispatch(now).is_empty(), "batch 2 lane 0 overtook batch 1's retry");
    let retry = s.dispatch(now + BACKOFF);
    assert_eq!(batch_lanes(&retry), BTreeSet::from([(1, 0)]));
}

#[test]
fn a_lane_stays_with_its_executor() {
    let now = Instant::now();
    let mut s = scheduler();
    s.add_executor("a".into(), 4, now);
    s.add_executor("b".into(), 4, now);
    for batch in 1..=4 {
        s.add_batch(plan(batch, 0..4), now);
    }
    let mut owner_of: BTreeMap<LaneId, String> = BTreeMap::new();
    let mut done = 0;
    while done < 16 {
        let assigned = s.dispatch(now);
        assert!(!assigned.is_empty(), "stuck after {done} tasks");
        for a in &assigned {
            let owner = owner_of.entry(a.task.lane).or_insert_with(|| a.executor.clone());
            assert_eq!(*owner, a.executor, "lane {} moved at batch {}", a.task.lane, a.task.batch);
        }
        succeed_all(&mut s, &assigned);
        done += assigned.len();
    }
    let used: BTreeSet<&String> = owner_of.values().collect();
    assert_eq!(used.len(), 2, "both executors own lanes: {owner_of:?}");
}

#[test]
fn a_later_executor_takes_lanes_over_once_they_are_idle() {
    let now = Instant::now();
    let mut s = scheduler();
    s.add_executor("a".into(), 8, now);
    s.add_batch(plan(1, 0..8), now);
    s.add_batch(plan(2, 0..8), now);
    let first = s.dispatch(now);
    assert_eq!(first.len(), 8);
    assert!(first.iter().all(|a| a.executor == "a"));

    s.add_executor("b".into(), 8, now);
    // Every lane runs on `a`: none moves, nothing goes to `b`.
    assert!(s.dispatch(now).is_empty());
    assert_eq!(lanes_per_executor(&s), BTreeMap::from([("a".into(), 8), ("b".into(), 0)]));

    // Half the lanes finish; the other half still run and must stay with `a`.
    for a in first.iter().filter(|a| a.task.lane < 4) {
        assert!(s.task_succeeded("a", a.task, metrics(1)));
    }
    let second = s.dispatch(now);
    assert_eq!(batch_lanes(&second), (0..4).map(|lane| (2, lane)).collect());
    for lane in 4..8 {
        assert_eq!(
            s.owners.get(&lane).map(String::as_str),
            Some("a"),
            "lane {lane} moved while running"
        );
    }
    assert!(second.iter().any(|a| a.executor == "b"), "b took no lane: {second:?}");

    for a in first.iter().filter(|a| a.task.lane >= 4) {
        assert!(s.task_succeeded("a", a.task, metrics(1)));
    }
    let third = s.dispatch(now);
    assert_eq!(batch_lanes(&third), (4..8).map(|lane| (2, lane)).collect());

    let all: Vec<Assignment> = second.into_iter().chain(third).collect();
    let on_a = all.iter().filter(|a| a.executor == "a").count();
    let on_b = all.iter().filter(|a| a.executor == "b").count();
    assert_eq!(on_a + on_b, 8);
    assert!(on_a.abs_diff(on_b) <= 1, "unbalanced: a {on_a}, b {on_b}");
    let lanes = lanes_per_executor(&s);
    assert!(lanes["a"].abs_diff(lanes["b"]) <= 1, "unbalanced owners: {lanes:?}");
    assert_slots_respected(&s);
}

#[test]
fn a_later_executor_balances_the_next_batch() {
    let now = Instant::now();
    let mut s = scheduler();
    s.add_executor("a".into(), 8, now);
    s.add_batch(plan(1, 0..8), now);
    let first = s.dispatch(now);
    succeed_all(&mut s, &first);
    s.add_executor("b".into(), 8, now);
    s.add_batch(plan(2, 0..8), now);
    let second = s.dispatch(now);
    assert_eq!(second.len(), 8);
    let on_b = second.iter().filter(|a| a.executor == "b").count();
    assert_eq!(on_b, 4, "{second:?}");
    assert_eq!(lanes_per_executor(&s), BTreeMap::from([("a".into(), 4), ("b".into(), 4)]));
}

#[test]
fn a_removed_executors_tasks_run_again_elsewhere() {
    let now = Instant::now();
    let later = now + Duration::from_secs(5);
    let mut s = scheduler();
    s.add_executor("a".into(), 4, now);
    s.add_batch(plan(1, [0, 1]), now);
    let first = s.dispatch(now);
    assert!(first.iter().all(|a| a.executor == "a"));
    s.add_executor("b".into(), 4, now);

    let mut requeued = s.remove_executor("a", later);
    requeued.sort();
    let mut expected: Vec<TaskId> = first.iter().map(|a| a.task).collect();
    expected.sort();
    assert_eq!(requeued, expected);
    assert!(!s.has_executor("a"));
    assert!(s.running().is_empty());

    let again = s.dispatch(later);
    assert_eq!(batch_lanes(&again), BTreeSet::from([(1, 0), (1, 1)]));
    for a in &again {
        assert_eq!(a.executor, "b");
        assert_eq!(a.task.attempt, 1, "a higher attempt: {a:?}");
        assert_eq!(a.ranges, ranges(1, a.task.lane));
    }

    // The lost executor's late reports change nothing.
    for old in &first {
        assert!(!s.task_succeeded("a", old.task, metrics(1)));
        assert_eq!(s.task_failed("a", old.task, FailureKind::Data, "late", later), Ok(false));
        // Nor does the old attempt reported by the new executor.
        assert!(!s.task_succeeded("b", old.task, metrics(1)));
    }
    assert!(s.committable().is_none(), "a stale success completed the batch");
    assert_eq!(running_per_executor(&s), BTreeMap::from([("b".into(), 2)]));

    succeed_all(&mut s, &again);
    assert_eq!(s.committable().map(|b| b.plan.id), Some(1));
    assert_eq!(s.committable().unwrap().metrics.records_in, 2, "stale metrics not counted");
}

#[test]
fn removing_an_unknown_executor_changes_nothing() {
    let now = Instant::now();
    let mut s = scheduler();
    s.add_executor("a".into(), 1, now);
    s.add_batch(plan(1, [0]), now);
    let first = s.dispatch(now);
    assert!(s.remove_executor("ghost", now).is_empty());
    assert!(s.task_succeeded("a", first[0].task, metrics(1)));
}

#[test]
fn a_retryable_failure_waits_for_its_backoff_then_retries() {
    let t0 = Instant::now();
    let mut s = scheduler();
    s.add_executor("a".into(), 1, t0);
    s.add_batch(plan(1, [0]), t0);
    let first = s.dispatch(t0);
    assert_eq!(first[0].task.attempt, 0);

    assert_eq!(
        s.task_failed("a", first[0].task, FailureKind::Transient, "broker away", t0),
        Ok(true)
    );
    assert!(s.running().is_empty(), "the slot is free again");
    assert!(s.dispatch(t0).is_empty(), "retried without backoff");
    let retry = s.dispatch(t0 + BACKOFF);
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].task, TaskId { batch: 1, lane: 0, attempt: 1 });
    assert_eq!(retry[0].ranges, ranges(1, 0));
    // The failed attempt's reports are stale now.
    assert!(!s.task_succeeded("a", first[0].task, metrics(1)));

    let t1 = t0 + BACKOFF;
    assert_eq!(
        s.task_failed("a", retry[0].task, FailureKind::Transient, "broker away", t1),
        Ok(true)
    );
    assert!(s.dispatch(t1).is_empty());
    let retry = s.dispatch(t1 + 2 * BACKOFF);
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].task.attempt, 2);
    assert!(s.task_succeeded("a", retry[0].task, metrics(1)));
    assert!(s.committable().is_some());
}

#[test]
fn too_many_retryable_failures_stop_the_job_naming_the_task() {
    let mut now = Instant::now();
    let mut s = scheduler();
    s.add_executor("a".into(), 1, now);
    s.add_batch(plan(7, [3]), now);
    let mut last = None;
    for attempt in 0..settings().max_attempts {
        let assigned = s.dispatch(now);
        assert_eq!(assigned.len(), 1, "attempt {attempt} not dispatched");
        let task = assigned[0].task;
        assert_eq!(task.attempt, attempt);
        let result = s.task_failed("a", task, FailureKind::Transient, "disk full", now);
        if attempt + 1 < settings().max_attempts {
            assert_eq!(result, Ok(true), "gave up after {} failures", attempt + 1);
        }
        last = Some((task, result));
        now += Duration::from_secs(60);
    }
    let (task, result) = last.unwrap();
    let failure = result.unwrap_err();
    assert_eq!(
        failure,
        JobFailure {
            task,
            failures: settings().max_attempts,
            kind: FailureKind::Transient,
            message: "disk full".into()
        }
    );
    let text = failure.to_string();
    assert!(text.contains("batch 7 lane 3"), "{text}");
    assert!(text.contains("disk full"), "{text}");
}

/// Fails the one running task of `s` on executor "a" with `kind`, then dispatches its retry.
fn fail_and_retry(
    s: &mut Scheduler,
    kind: FailureKind,
    now: Instant,
) -> Result<TaskId, JobFailure> {
    let running = s.running();
    let (_, task) = running.first().expect("a running task");
    s.task_failed("a", *task, kind, "Kafka did not answer", now)?;
    let retry = s.dispatch(now + Duration::from_secs(60));
    assert_eq!(retry.len(), 1, "the task runs again");
    Ok(retry[0].task)
}

#[test]
fn an_unreachable_kafka_is_waited_out_without_using_up_attempts() {
    let t0 = Instant::now();
    let mut s = scheduler();
    s.add_executor("a".into(), 1, t0);
    s.add_batch(plan(1, [0]), t0);
    s.dispatch(t0);
    // Far more outage failures than max_attempts (3), over an hour: the task keeps running.
    let mut now = t0;
    for _ in 0..20 {
        now += Duration::from_secs(180);
        fail_and_retry(&mut s, FailureKind::Unavailable, now).expect("waited out");
    }
    assert_eq!(s.unavailable_since(), Some(t0 + Duration::from_secs(180)), "since the first");
    // Its own failures still count, from zero: two more transient ones are allowed, not three.
    fail_and_retry(&mut s, FailureKind::Transient, now).expect("first own failure");
    assert_eq!(s.unavailable_since(), None, "a failure of its own ends the outage");
    fail_and_retry(&mut s, FailureKind::Transient, now).expect("second own failure");
    let failure = fail_and_retry(&mut s, FailureKind::Transient, now).unwrap_err();
    assert_eq!(failure.failures, 3);
}

#[test]
fn an_outage_longer_than_the_outage_limit_stops_the_job() {
    let t0 = Instant::now();
    let limit = Duration::from_secs(600);
    let mut s = Scheduler::new(Settings { outage_limit: Some(limit), ..settings() });
    s.add_executor("a".into(), 1, t0);
    s.add_batch(plan(4, [2]), t0);
    let first = s.dispatch(t0)[0].task;
    // The first unavailable failure starts the clock; retries come within seconds.
    assert_eq!(s.task_failed("a", first, FailureKind::Unavailable, "no broker", t0), Ok(true));
    assert!(s.dispatch(t0 + OUTAGE_RETRY).len() == 1, "retried within {OUTAGE_RETRY:?}");
    let late = t0 + limit - Duration::from_secs(1);
    fail_and_retry(&mut s, FailureKind::Unavailable, late).expect("still within the limit");
    let failure = fail_and_retry(&mut s, FailureKind::Unavailable, t0 + limit).unwrap_err();
    assert_eq!(failure.kind, FailureKind::Unavailable);
    assert_eq!(failure.task.batch, 4);
}

#[test]
fn a_non_retryable_failure_stops_the_job_at_once() {
    let now = Instant::now();
    let mut s = scheduler();
    s.add_executor("a".into(), 1, now);
    s.add_batch(plan(2, [1]), now);
    let first = s.dispatch(now);
    let failure =
        s.task_failed("a", first[0].task, FailureKind::Config, "bad transform", now).unwrap_err();
    assert_eq!(failure.task, first[0].task);
    assert_eq!(failure.failures, 1);
    assert_eq!(failure.message, "bad transform");
    assert!(failure.to_string().contains("batch 2 lane 1"), "{failure}");
}

#[test]
fn a_leaving_executor_gets_no_new_task_and_its_lanes_move() {
    let now = Instant::now();
    let mut s = scheduler();
    s.add_executor("a".into(), 4, now);
    s.add_executor("b".into(), 4, now);
    s.add_batch(plan(1, 0..4), now);
    s.add_batch(plan(2, 0..4), now);
    let first = s.dispatch(now);
    assert_eq!(first.len(), 4);
    let a_lanes: BTreeSet<LaneId> =
        first.iter().filter(|a| a.executor == "a").map(|a| a.task.lane).collect();
    assert!(!a_lanes.is_empty() && a_lanes.len() < 4, "both executors used: {first:?}");

    s.executor_leaving("a");
    let status = s.executor_status(Instant::now());
    let a = status.iter().find(|e| e.id == "a").unwrap();
    assert!(a.leaving);
    assert_eq!(a.lanes, 0);
    assert!(s.dispatch(now).is_empty(), "batch 2 overtook batch 1");

    // The leaving executor finishes what it runs; its reports still count.
    for done in first.iter().filter(|a| a.executor == "a") {
        assert!(s.task_succeeded("a", done.task, metrics(1)));
    }
    let second = s.dispatch(now);
    assert_eq!(batch_lanes(&second), a_lanes.iter().map(|&lane| (2, lane)).collect());
    assert!(
        second.iter().all(|x| x.executor == "b"),
        "a new task to a leaving executor: {second:?}"
    );

    for done in first.iter().filter(|a| a.executor == "b") {
        assert!(s.task_succeeded("b", done.task, metrics(1)));
    }
    let b_lanes_batch_2 = s.dispatch(now);
    assert!(b_lanes_batch_2.iter().all(|x| x.executor == "b"), "{b_lanes_batch_2:?}");
    succeed_all(&mut s, &second);
    succeed_all(&mut s, &b_lanes_batch_2);
    // A new batch: every lane on `b`, none on the leaving `a`.
    s.add_batch(plan(3, 0..4), now);
    let third = s.dispatch(now);
    assert_eq!(batch_lanes(&third), (0..4).map(|lane| (3, lane)).collect());
    assert!(third.iter().all(|x| x.executor == "b"), "{third:?}");
    assert_eq!(lanes_per_executor(&s), BTreeMap::from([("a".into(), 0), ("b".into(), 4)]));
}

#[test]
fn only_a_leaving_executor_gets_nothing_and_loses_nothing() {
    let now = Instant::now();
    let mut s = scheduler();
    s.add_executor("a".into(), 4, now);
    s.executor_leaving("a");
    s.add_batch(plan(1, [0, 1]), now);
    assert!(s.dispatch(now).is_empty());
    s.add_executor("b".into(), 4, now);
    let assigned = s.dispatch(now);
    assert_eq!(batch_lanes(&assigned), BTreeSet::from([(1, 0), (1, 1)]));
    assert!(assigned.iter().all(|x| x.executor == "b"));
}

#[test]
fn silent_executors_are_those_not_heard_from_for_longer_than_the_timeout() {
    let t0 = Instant::now();
    let timeout = Duration::from_secs(10);
    let mut s = scheduler();
    s.add_executor("a".into(), 1, t0);
    s.add_executor("b".into(), 1, t0);
    assert!(
        s.silent_executors(t0 + timeout, timeout).is_empty(),
        "exactly the timeout is not longer"
    );
    assert_eq!(
        s.silent_executors(t0 + timeout + Duration::from_millis(1), timeout),
        vec!["a".to_string(), "b".to_string()]
    );

    s.executor_seen("a", t0 + Duration::from_secs(5));
    s.executor_seen("ghost", t0 + Duration::from_secs(5));
    assert!(!s.has_executor("ghost"), "seen does not attach");
    let at = t0 + timeout + Duration::from_millis(1);
    assert_eq!(s.silent_executors(at, timeout), vec!["b".to_string()]);
    assert_eq!(
        s.silent_executors(t0 + Duration::from_secs(16), timeout),
        vec!["a".to_string(), "b".to_string()]
    );
}

#[test]
fn only_the_oldest_fully_done_batch_is_committable() {
    let now = Instant::now();
    let mut s = scheduler();
    s.add_executor("a".into(), 8, now);
    s.add_batch(plan(1, [0, 1]), now);
    s.add_batch(plan(2, [2]), now);
    assert!(s.committable().is_none(), "nothing done yet");
    let assigned = s.dispatch(now);
    assert_eq!(assigned.len(), 3);

    assert!(s.task_succeeded("a", find(&assigned, 2, 2).task, metrics(5)));
    assert!(s.committable().is_none(), "batch 2 before batch 1");
    assert!(s.task_succeeded("a", find(&assigned, 1, 0).task, metrics(1)));
    assert!(s.committable().is_none(), "batch 1 half done");
    assert!(s.task_succeeded("a", find(&assigned, 1, 1).task, metrics(2)));

    let batch = s.committable().expect("batch 1 is done");
    assert_eq!(batch.plan.id, 1);
    assert_eq!(batch.metrics.records_in, 3);
    assert_eq!(s.remove_batch(1).map(|b| b.plan.id), Some(1));
    assert_eq!(s.batches_in_flight(), 1);
    let batch = s.committable().expect("batch 2 is next");
    assert_eq!(batch.plan.id, 2);
    assert_eq!(batch.metrics.records_in, 5);
    s.remove_batch(2);
    assert!(s.committable().is_none());
    assert_eq!(s.batches_in_flight(), 0);
}

#[test]
fn without_executors_dispatch_assigns_nothing_and_loses_nothing() {
    let now = Instant::now();
    let mut s = scheduler();
    s.add_batch(plan(1, 0..3), now);
    s.add_batch(plan(2, 0..3), now);
    assert!(s.dispatch(now).is_empty());
    assert!(s.dispatch(now + Duration::from_secs(60)).is_empty());
    assert_eq!(s.batches_in_flight(), 2);
    assert!(s.committable().is_none());

    let later = now + Duration::from_secs(61);
    s.add_executor("a".into(), 8, later);
    let assigned = s.dispatch(later);
    assert_eq!(batch_lanes(&assigned), (0..3).map(|lane| (1, lane)).collect());
    assert!(assigned.iter().all(|a| a.executor == "a" && a.task.attempt == 0));
    assert!(assigned.iter().all(|a| a.ranges == ranges(1, a.task.lane)));
    succeed_all(&mut s, &assigned);
    let assigned = s.dispatch(later);
    assert_eq!(batch_lanes(&assigned), (0..3).map(|lane| (2, lane)).collect());
}

#[test]
fn the_last_executor_leaving_requeues_and_waits_for_the_next() {
    let now = Instant::now();
    let mut s = scheduler();
    s.add_executor("a".into(), 2, now);
    s.add_batch(plan(1, [0, 1]), now);
    let first = s.dispatch(now);
    assert_eq!(s.remove_executor("a", now).len(), 2);
    assert!(s.dispatch(now).is_empty());
    s.add_executor("b".into(), 2, now);
    let again = s.dispatch(now);
    assert_eq!(batch_lanes(&again), batch_lanes(&first));
    assert!(again.iter().all(|a| a.executor == "b" && a.task.attempt == 1));
}

#[test]
fn a_leaving_executor_may_go_once_its_running_tasks_are_done() {
    let now = Instant::now();
    let mut s = scheduler();
    s.add_executor("a".into(), 2, now);
    s.add_batch(plan(1, [0]), now);
    let assigned = s.dispatch(now);
    assert_eq!(assigned.len(), 1);
    s.executor_leaving("a");
    assert!(s.idle_leaving_executors().is_empty(), "still running a task");
    succeed_all(&mut s, &assigned);
    assert_eq!(s.idle_leaving_executors(), ["a"]);
}

fn at_most_once() -> Scheduler {
    Scheduler::new(Settings { run_again: false, ..settings() })
}

#[test]
fn at_most_once_a_failed_task_is_abandoned_and_counted_never_retried() {
    let t0 = Instant::now();
    let mut s = at_most_once();
    s.add_executor("a".into(), 2, t0);
    s.add_batch(plan(1, [0, 1]), t0);
    let first = s.dispatch(t0);
    assert_eq!(first.len(), 2);

    let failed = find(&first, 1, 0).task;
    assert_eq!(s.task_failed("a", failed, FailureKind::Transient, "broker away", t0), Ok(true));
    assert!(s.dispatch(t0 + BACKOFF * 100).is_empty(), "an abandoned task never runs again");
    assert!(s.committable().is_none(), "lane 1 still runs");
    assert!(s.task_succeeded("a", find(&first, 1, 1).task, metrics(100)));
    let batch = s.committable().expect("abandoned plus done is finished");
    assert_eq!(batch.records_abandoned, 100, "the abandoned range's offsets are counted");
    assert_eq!(batch.metrics.records_in, 100);
}

#[test]
fn at_most_once_a_task_that_wrote_nothing_runs_again() {
    let t0 = Instant::now();
    let mut s = at_most_once();
    s.add_executor("a".into(), 1, t0);
    s.add_batch(plan(1, [0]), t0);
    let first = s.dispatch(t0)[0].task;
    // It failed while reading: no record reached the sink, so no record can appear twice.
    let failed = s.task_failed_before_output("a", first, FailureKind::Unavailable, "no broker", t0);
    assert_eq!(failed, Ok(true));
    let retry = s.dispatch(t0 + Duration::from_secs(5));
    assert_eq!(retry.len(), 1, "run again, not abandoned");
    assert_eq!(retry[0].task.attempt, 1);
    succeed_all(&mut s, &retry);
    let batch = s.committable().expect("the batch commits");
    assert_eq!(batch.records_abandoned, 0, "nothing counted as lost");
}

#[test]
fn at_most_once_a_lost_executors_tasks_are_abandoned() {
    let t0 = Instant::now();
    let mut s = at_most_once();
    s.add_executor("a".into(), 2, t0);
    s.add_executor("b".into(), 2, t0);
    s.add_batch(plan(1, [0, 1, 2, 3]), t0);
    let first = s.dispatch(t0);
    let on_a: Vec<TaskId> = first.iter().filter(|a| a.executor == "a").map(|a| a.task).collect();
    assert_eq!(on_a.len(), 2);
    assert_eq!(s.remove_executor("a", t0).len(), 2);
    assert!(s.dispatch(t0).is_empty(), "nothing of the lost executor runs again");
    for a in first.iter().filter(|a| a.executor == "b") {
        assert!(s.task_succeeded("b", a.task, metrics(100)));
    }
    assert_eq!(s.committable().expect("finished").records_abandoned, 200);
    // The next batch's lanes go to the live executor.
    s.add_batch(plan(2, [0, 1, 2, 3]), t0);
    s.remove_batch(1);
    let next = s.dispatch(t0);
    assert_eq!(next.len(), 2, "two slots on b");
    assert!(next.iter().all(|a| a.executor == "b"));
}

#[test]
fn at_most_once_a_non_retryable_failure_still_stops_the_job() {
    let t0 = Instant::now();
    let mut s = at_most_once();
    s.add_executor("a".into(), 1, t0);
    s.add_batch(plan(1, [0]), t0);
    let first = s.dispatch(t0);
    let failure =
        s.task_failed("a", first[0].task, FailureKind::Data, "bad record", t0).unwrap_err();
    assert_eq!(failure.message, "bad record");
}
