//! The fault harness: runs one job under a delivery guarantee while a producer keeps writing
//! input, applies a schedule of faults to its driver and executors (`kill -9`, `SIGSTOP` past
//! the executor timeout, restarts), measures how long the job takes to recover from each, and
//! at the end judges the whole output with the [`oracle`](crate::oracle).
//!
//! A [`Scenario`] says what to run; [`Scenario::run`] returns an [`Outcome`] (the verdict, one
//! [`Recovery`] per fault, the random seed) and prints it. Tests then assert on the verdict as
//! their guarantee demands.
//!
//! Faults come one after another: a gap (1.5 s, or 1–2.5 s at random), then the fault, struck
//! the moment etcd shows a batch in flight if one is within a second (never under at-most-once,
//! which commits before it dispatches), then the wait for recovery. A fault's recovery time runs
//! from the signal until etcd shows every batch that was recorded at the fault committed (after
//! a driver restart, also a commit by the new driver), or the whole input committed; the table
//! also says what was in flight and how much input was left, since a fault on an idle job
//! "recovers" at once.
//!
//! Random choices (which fault, which executor, how long between faults) come from a seeded
//! [`XorShift64`]. The seed is `WEIR_CHAOS_SEED` when set, else the clock, and is printed before
//! anything happens, so a failing run can be repeated with the same choices (timing still
//! varies: processes are real).
//!
//! Scenarios run one at a time within a test process (a process-wide lock): each one measures
//! recovery times, and two jobs fighting over a small machine's cores would distort them. Run
//! them on a multi-threaded runtime (`#[tokio::test(flavor = "multi_thread")]`) so that the
//! producer's bursts do not delay the recovery watcher's polls.
//!
//! Here: the scenario, its constants and its run from start to verdict. Beside it: `faults`
//! (the kinds of fault, the schedule, the seeded randomness), `run` (striking one fault and
//! timing the recovery), `progress` (etcd as the recovery watcher sees it), `outcome` (what a
//! run found, and its table) and `readers` (the output as the oracle reads it).

mod faults;
mod outages;
mod outcome;
mod progress;
mod readers;
mod run;

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

pub use faults::{Fault, SEED_VARIABLE, Schedule, XorShift64, chaos_seed};
pub use outages::{assert_still_running, output_resumes};
pub use outcome::{Outcome, Recovery, RecoverySummary};
pub use readers::{read_files, read_kafka, read_kafka_on};

use crate::job::JobFixture;
use crate::kafka;
use crate::oracle;
use progress::Progress;
use run::{Run, Slot};

/// `executor_timeout` in the config [`JobFixture`] writes.
pub const EXECUTOR_TIMEOUT: Duration = Duration::from_secs(3);
/// How long [`Fault::PauseExecutor`] keeps an executor stopped: past the timeout by enough that
/// the driver surely declared it lost before it runs again.
pub const PAUSE: Duration = EXECUTOR_TIMEOUT.saturating_add(Duration::from_millis(1_500));
/// How long a killed executor stays down before it is started again.
pub const EXECUTOR_DOWN: Duration = Duration::from_millis(500);
/// A fault the job has not recovered from in this long fails the run.
pub const RECOVERY_LIMIT: Duration = Duration::from_secs(60);
/// How often the recovery watcher reads etcd.
const POLL: Duration = Duration::from_millis(50);
/// How long a fault waits for a batch to be in flight before it strikes anyway, and how often
/// it looks.
const BUSY_WAIT: Duration = Duration::from_secs(1);
const BUSY_POLL: Duration = Duration::from_millis(10);
/// The producer writes a slice of its records this often over `produce_over`: often enough that
/// the job is rarely idle between slices, so faults find batches in flight.
const SLICE_EVERY: Duration = Duration::from_millis(250);
/// The pause between faults of a [`Schedule::Faults`] list (a random one takes 1–2.5 s).
const FIXED_GAP: Duration = Duration::from_millis(1_500);
/// Generous: under at-most-once the last batches are still running when etcd says committed.
const GRACE: Duration = Duration::from_secs(60);
/// How long the end of the run may take for every input record to be committed.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// A producer this much later than `produce_over` is noted (the faults then met more input
/// than planned, and the run took longer).
const LATE: Duration = Duration::from_secs(2);
/// How long a restarted process may take to be up (a driver waits out the old lease).
const UP_LIMIT: Duration = Duration::from_secs(30);

/// Scenarios of one test process run one after another (see the module doc).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Holds the scenarios' lock: a fault test of its own (outside [`Scenario`]) runs alone too, so
/// that its timings are not another scenario's load.
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// `sink.guarantee` in the job config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarantee {
    ExactlyOnce,
    AtLeastOnce,
    AtMostOnce,
}

impl Guarantee {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Guarantee::ExactlyOnce => "exactly-once",
            Guarantee::AtLeastOnce => "at-least-once",
            Guarantee::AtMostOnce => "at-most-once",
        }
    }
}

impl fmt::Display for Guarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which sink the job writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkUnderTest {
    /// The fixture's output topic, partitioned like the input so per-partition order shows.
    Kafka,
    /// A directory under the test's log directory, one file per range.
    File,
}

impl fmt::Display for SinkUnderTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SinkUnderTest::Kafka => "kafka sink",
            SinkUnderTest::File => "file sink",
        })
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Names the job, its topics and its log directory.
    pub name: String,
    /// Ids `0..records`, id to input partition `id % partitions`.
    pub records: u64,
    /// Of the input and the output topic.
    pub partitions: i32,
    /// Executors `ex-1`, `ex-2`, ...
    pub executors: usize,
    pub guarantee: Guarantee,
    pub sink: SinkUnderTest,
    pub schedule: Schedule,
    /// The producer spreads the records evenly over this long, so batches keep coming while
    /// the faults happen.
    pub produce_over: Duration,
}

impl Scenario {
    /// The `[sink]` body for this scenario.
    fn sink_body(&self, job: &JobFixture, dir: &Path) -> String {
        let guarantee = self.guarantee.as_str();
        match self.sink {
            SinkUnderTest::Kafka => format!(
                "type = \"kafka\"\ntopic = \"{}\"\npartitioning = \"same-as-input\"\n\
                 guarantee = \"{guarantee}\"",
                job.output
            ),
            SinkUnderTest::File => {
                format!("type = \"file\"\npath = {:?}\nguarantee = \"{guarantee}\"", dir.display())
            }
        }
    }

    /// Runs the scenario (see the module doc) and returns what it found. Panics when the job
    /// does not recover from a fault within [`RECOVERY_LIMIT`], or does not commit all its input
    /// in the end; the supervisor then prints the tail of every process's log.
    pub async fn run(self) -> Outcome {
        let _serial = SERIAL.lock().await;
        let started = Instant::now();
        let seed = match &self.schedule {
            Schedule::None => None,
            Schedule::Faults(_) => Some(chaos_seed()),
            Schedule::Random { seed, .. } => Some(seed.unwrap_or_else(chaos_seed)),
        };
        if let Some(seed) = seed {
            eprintln!(
                "scenario {}: seed {seed} (repeat its choices with {SEED_VARIABLE}={seed})",
                self.name
            );
        }
        let job = JobFixture::new(&self.name, self.partitions, "").await;
        let sink_dir = job.supervisor.log_dir().join("sink");
        let sink = self.sink_body(&job, &sink_dir);
        // Two partitions per lane: every fault meets lanes that read several partitions through
        // one consumer and commit them in one transaction.
        let lanes = (self.partitions + 1) / 2;
        let source = format!("topics = [\"{}\"]\nlanes = {lanes}", job.input);
        job.write_config_with_sink(&source, &sink, "");
        let progress = Progress::new(&job, self.records).await;
        let mut run = Run {
            job,
            executors: (1..=self.executors).map(|i| (format!("ex-{i}"), Slot::Live)).collect(),
            rng: XorShift64::new(seed.unwrap_or(0)),
            progress,
            notes: Vec::new(),
            started,
            busy_wait: match self.guarantee {
                Guarantee::AtMostOnce => Duration::ZERO,
                _ => BUSY_WAIT,
            },
        };
        run.job.start_driver();
        for i in 0..run.executors.len() {
            let name = run.executors[i].0.clone();
            run.job.start_executor(&name);
        }
        let producer = tokio::spawn(kafka::produce_paced(
            run.job.input.clone(),
            self.partitions,
            self.records,
            self.produce_over,
            SLICE_EVERY,
        ));
        run.progress.wait_first_commit(Duration::from_secs(60)).await;

        let faults: Vec<Fault> = match &self.schedule {
            Schedule::None => Vec::new(),
            Schedule::Faults(faults) => faults.clone(),
            Schedule::Random { count, .. } => {
                (0..*count).map(|_| Fault::ALL[run.rng.below(4) as usize]).collect()
            }
        };
        let mut recoveries = Vec::with_capacity(faults.len());
        for fault in faults {
            let gap = match &self.schedule {
                Schedule::Random { .. } => run
                    .rng
                    .duration_between(Duration::from_millis(1_000), Duration::from_millis(2_500)),
                _ => FIXED_GAP,
            };
            tokio::time::sleep(gap).await;
            let recovery = run.apply(fault).await;
            eprintln!("scenario {}: {recovery}", self.name);
            recoveries.push(recovery);
        }

        let (produced, production) = match producer.await {
            Ok(done) => done,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        if production > self.produce_over + LATE {
            run.note(format!(
                "the producer fell behind: its last record was confirmed after {production:.1?}, \
                 planned {:?}",
                self.produce_over
            ));
        }
        assert_eq!(produced.len() as u64, self.records, "the producer wrote every record");
        run.restart_exited().await;
        let input = run.job.input.clone();
        run.job.wait_committed(&input, self.records as i64, DRAIN_LIMIT).await;
        // Committed in etcd is not yet written everywhere (at-most-once commits before it
        // dispatches): a graceful stop lets running tasks finish before the output is read.
        // A process restarted by the last fault may still be starting (waiting for the old
        // leader's lease, say); SIGTERM before it installed its handler would kill it instead
        // of stopping it, so wait until the driver leads and every executor attached.
        run.job.supervisor.wait_for_log("driver", "Leading the job", UP_LIMIT).await;
        for i in 0..run.executors.len() {
            let name = run.executors[i].0.clone();
            run.job.supervisor.wait_for_log(&name, "Attached to the driver", UP_LIMIT).await;
        }
        let status = run.job.supervisor.terminate("driver", GRACE).await;
        if !status.success() {
            run.note(format!("the driver's graceful stop ended with {status}"));
        }
        for i in 0..run.executors.len() {
            let name = run.executors[i].0.clone();
            let status = run.job.supervisor.terminate(&name, GRACE).await;
            if !status.success() {
                run.note(format!("{name}'s graceful stop ended with {status}"));
            }
        }

        let observed = match self.sink {
            SinkUnderTest::Kafka => read_kafka(&run.job.output).await,
            SinkUnderTest::File => {
                let (observed, notes) = read_files(&sink_dir);
                for note in notes {
                    run.note(note);
                }
                observed
            }
        };
        let verdict = oracle::judge(&produced, &observed);
        let outcome = Outcome {
            scenario: self,
            verdict,
            recoveries,
            seed,
            took: started.elapsed(),
            notes: run.notes,
        };
        eprintln!("{outcome}");
        outcome
    }
}
