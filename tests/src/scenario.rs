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

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir_common::OffsetsCheckpoint;
use weir_common::protocol::JobKeys;

use crate::job::JobFixture;
use crate::kafka::{self, Produced};
use crate::oracle::{self, Observed, Stream, Verdict};

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
/// The variable that fixes the random seed.
pub const SEED_VARIABLE: &str = "WEIR_CHAOS_SEED";

/// Scenarios of one test process run one after another (see the module doc).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

/// One fault. Each leaves the job with every process running again (a paused executor is
/// resumed and must find its way back by itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` of a random executor; the same name is started again after [`EXECUTOR_DOWN`].
    KillExecutor,
    /// `SIGSTOP` of a random executor for [`PAUSE`], then `SIGCONT`.
    PauseExecutor,
    /// `kill -9` of the driver, started again at once.
    KillDriver,
    /// `kill -9` of the driver and every executor, then all started again.
    RestartAll,
}

impl Fault {
    pub const ALL: [Fault; 4] =
        [Fault::KillExecutor, Fault::PauseExecutor, Fault::KillDriver, Fault::RestartAll];
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::KillExecutor => "kill -9 executor",
            Fault::PauseExecutor => "pause executor",
            Fault::KillDriver => "kill -9 driver",
            Fault::RestartAll => "restart all",
        })
    }
}

/// Which faults a scenario applies, one after another while input flows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    None,
    /// These faults in this order, [`FIXED_GAP`] apart.
    Faults(Vec<Fault>),
    /// `count` faults of random kinds, 1–2.5 s apart. `seed: None` takes `WEIR_CHAOS_SEED`, or
    /// the clock.
    Random {
        count: usize,
        seed: Option<u64>,
    },
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

/// How one fault went.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub kind: Fault,
    /// The fault's name ([`Fault`]'s `Display`).
    pub fault: String,
    /// The process(es) it hit.
    pub target: String,
    /// From the fault until etcd shows every batch recorded at the fault committed (and, after
    /// a driver restart, a commit by the new driver), or the whole input committed.
    pub took: Duration,
    /// When the fault happened, since the scenario started.
    pub at: Duration,
    /// The highest batch id recorded in etcd at the fault: the one waited for.
    pub batch: Option<u64>,
    /// Recorded batches not committed at the fault: the work the fault could hit.
    pub in_flight: usize,
    /// Input records not committed at the fault (produced or still to come). 0 means the job
    /// had nothing left to do: it "recovers" at once, which says nothing.
    pub remaining: u64,
}

impl Recovery {
    /// Whether the recovery time measures something: the job had input left and either a batch
    /// was in flight (it had to finish) or the driver was restarted (the new one had to commit).
    /// Otherwise the job "recovers" at the first look.
    pub fn measured(&self) -> bool {
        self.remaining > 0
            && (self.in_flight > 0 || matches!(self.kind, Fault::KillDriver | Fault::RestartAll))
    }
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let batch = self.batch.map_or("-".to_owned(), |b| b.to_string());
        write!(
            f,
            "{:>7.1?}  {:<17} {:<20} {:>6} {:>9} {:>9} {:>9.2?}",
            self.at, self.fault, self.target, batch, self.in_flight, self.remaining, self.took
        )
    }
}

/// What a scenario found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: Scenario,
    pub verdict: Verdict,
    /// One per fault applied, in order.
    pub recoveries: Vec<Recovery>,
    /// The seed of the random choices; `None` when the schedule had no faults.
    pub seed: Option<u64>,
    /// The whole run, services' topic creation to the verdict.
    pub took: Duration,
    /// Things that happened besides the planned faults: a process that exited by itself, a
    /// graceful stop that did not exit 0, a sink file that did not parse.
    pub notes: Vec<String>,
}

impl Outcome {
    /// Recovery times by fault kind, in the fault names' order, of the faults that struck
    /// while the job had work ([`Recovery::measured`]); the others say nothing.
    pub fn recovery_summary(&self) -> Vec<RecoverySummary> {
        let mut by_fault: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
        for r in self.recoveries.iter().filter(|r| r.measured()) {
            by_fault.entry(&r.fault).or_default().push(r.took);
        }
        by_fault
            .into_iter()
            .map(|(fault, mut times)| {
                times.sort();
                let count = times.len();
                RecoverySummary {
                    fault: fault.to_owned(),
                    count,
                    min: times[0],
                    median: times[count / 2],
                    max: times[count - 1],
                }
            })
            .collect()
    }
}

/// The recovery times of one kind of fault in a run, while the job had work. `median` is the
/// upper median.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverySummary {
    pub fault: String,
    pub count: usize,
    pub min: Duration,
    pub median: Duration,
    pub max: Duration,
}

impl fmt::Display for RecoverySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "recovery of {}: {}x, min {:.2?}, median {:.2?}, max {:.2?}",
            self.fault, self.count, self.min, self.median, self.max
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.scenario;
        writeln!(
            f,
            "scenario {}: {}, {}, {} records over {} partitions, {} executors, seed {}, took {:.1?}",
            s.name,
            s.guarantee,
            s.sink,
            s.records,
            s.partitions,
            s.executors,
            self.seed.map_or("-".to_owned(), |seed| seed.to_string()),
            self.took
        )?;
        if !self.recoveries.is_empty() {
            writeln!(
                f,
                "{:>7}  {:<17} {:<20} {:>6} {:>9} {:>9} {:>9}",
                "at", "fault", "target", "batch", "in flight", "remaining", "recovery"
            )?;
            for r in &self.recoveries {
                writeln!(f, "{r}")?;
            }
            for summary in self.recovery_summary() {
                writeln!(f, "{summary}")?;
            }
            let idle = self.recoveries.iter().filter(|r| !r.measured()).count();
            if idle > 0 {
                writeln!(f, "{idle} faults struck an idle job (not summarised)")?;
            }
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        write!(f, "{}", self.verdict)
    }
}

/// Marsaglia's xorshift64: enough randomness to pick faults, and repeatable from a seed
/// without another dependency.
#[derive(Debug, Clone)]
pub struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    /// The seed goes through splitmix64 first, so nearby seeds (1, 2, 3) give unrelated
    /// sequences and 0 (xorshift's fixed point) is harmless.
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self { state: if z == 0 { 0x9E37_79B9_7F4A_7C15 } else { z } }
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// Uniform enough in `0..n` (the modulo bias is far below what a test can notice).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        self.next_u64() % n
    }

    /// A duration in `[low, high]`, in whole milliseconds.
    pub fn duration_between(&mut self, low: Duration, high: Duration) -> Duration {
        let low_ms = low.as_millis() as u64;
        let span = (high.as_millis() as u64).saturating_sub(low_ms);
        Duration::from_millis(low_ms + self.below(span + 1))
    }
}

/// `WEIR_CHAOS_SEED` if set (it must be a number), else one from the clock.
pub fn chaos_seed() -> u64 {
    match std::env::var(SEED_VARIABLE) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{SEED_VARIABLE}={text:?} is not a u64: {e}")),
        Err(_) => {
            let nanos =
                SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
            (nanos as u64) ^ (u64::from(std::process::id()) << 32)
        }
    }
}

/// A live view of the job's progress in etcd over one connection (the watcher polls often).
#[derive(Clone)]
struct Progress {
    client: etcd_client::Client,
    keys: JobKeys,
    input: String,
    records: u64,
}

/// etcd's view at one moment.
struct Snapshot {
    last_committed: Option<u64>,
    /// Committed next offsets of the input topic, summed: how many input records are done.
    committed_records: i64,
}

impl Progress {
    async fn new(job: &JobFixture, records: u64) -> Self {
        Self {
            client: crate::etcd::client().await,
            keys: JobKeys::new(&job.prefix, &job.names.job),
            input: job.input.clone(),
            records,
        }
    }

    async fn snapshot(&mut self) -> Snapshot {
        let resp = self.client.get(self.keys.offsets(), None).await.expect("etcd get offsets");
        let committed = resp
            .kvs()
            .first()
            .map(|kv| OffsetsCheckpoint::decode(kv.value()).expect("offsets decode"));
        let Some(committed) = committed else {
            return Snapshot { last_committed: None, committed_records: 0 };
        };
        let committed_records = committed
            .next_offsets
            .iter()
            .filter(|(tp, _)| tp.topic == self.input)
            .map(|(_, offset)| offset)
            .sum();
        Snapshot { last_committed: committed.last_committed_batch, committed_records }
    }

    /// Ids of the batch records in etcd (committed ones are kept for a while too), ascending.
    async fn recorded_batches(&mut self) -> Vec<u64> {
        let prefix = self.keys.batches_prefix();
        let options = etcd_client::GetOptions::new().with_prefix().with_keys_only();
        let resp = self.client.get(prefix.as_str(), Some(options)).await.expect("etcd get batches");
        let mut ids: Vec<u64> = resp
            .kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key());
                let id = key.strip_prefix(&prefix).unwrap_or(&key);
                id.parse().unwrap_or_else(|e| panic!("batch key {key:?}: {e}"))
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    fn all_committed(&self, snapshot: &Snapshot) -> bool {
        snapshot.committed_records >= self.records as i64
    }

    /// Polls until the first batch is committed: faults should hit a job that runs.
    async fn wait_first_commit(&mut self, limit: Duration) {
        let started = Instant::now();
        while self.snapshot().await.last_committed.is_none() {
            assert!(started.elapsed() < limit, "no batch committed within {limit:?} of the start");
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls until `batch` is committed and, with `after: Some(b)`, a batch later than `b` is
    /// (a driver restart must commit something itself), or until the whole input is
    /// committed. Returns the time since `fault_at`, or what was missing after the limit.
    async fn recovered(
        mut self,
        fault_at: Instant,
        batch: Option<u64>,
        after: Option<Option<u64>>,
    ) -> Result<Duration, String> {
        loop {
            let now = self.snapshot().await;
            let reached = now.last_committed >= batch;
            let moved = after.is_none_or(|before| now.last_committed > before);
            if self.all_committed(&now) || (reached && moved) {
                return Ok(fault_at.elapsed());
            }
            if fault_at.elapsed() > RECOVERY_LIMIT {
                return Err(format!(
                    "waiting for batch {batch:?}{} to commit: last committed {:?}, {} of {} \
                     input records committed",
                    after.map_or(String::new(), |b| format!(" and a commit after {b:?}")),
                    now.last_committed,
                    now.committed_records,
                    self.records
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Whether an executor slot is running normally or stopped by [`Fault::PauseExecutor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Live,
    Paused,
}

/// The run's mutable state: the job, its executors' slots, the random source, notes.
struct Run {
    job: JobFixture,
    executors: Vec<(String, Slot)>,
    rng: XorShift64,
    progress: Progress,
    notes: Vec<String>,
    started: Instant,
    /// [`BUSY_WAIT`], or zero under at-most-once: it commits a batch in etcd before dispatching
    /// it, so etcd never shows one in flight.
    busy_wait: Duration,
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
    async fn restart_exited(&mut self) {
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

    fn note(&mut self, note: String) {
        eprintln!("note: {note}");
        self.notes.push(note);
    }

    async fn apply(&mut self, fault: Fault) -> Recovery {
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
        job.write_config_with_sink(&format!("topics = [\"{}\"]", job.input), &sink, "");
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
        let producer = tokio::spawn(produce_paced(
            run.job.input.clone(),
            self.partitions,
            self.records,
            self.produce_over,
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

/// Writes ids `0..records` the way [`kafka::produce_range`] does (same keys, payloads and
/// partitions) in consecutive slices, one every [`SLICE_EVERY`] (at least one slice, at most one
/// per record) so the last one starts just before `produce_over` has passed. Returns where each
/// record landed and when the last delivery was confirmed.
///
/// One idempotent producer for the whole run (`kafka::produce_with`): a producer per slice costs
/// its start and teardown every slice, and fell behind the schedule on a busy two-core machine.
async fn produce_paced(
    topic: String,
    partitions: i32,
    records: u64,
    produce_over: Duration,
) -> (Vec<Produced>, Duration) {
    let started = tokio::time::Instant::now();
    let producer = kafka::test_producer();
    let slices =
        ((produce_over.as_millis() / SLICE_EVERY.as_millis()) as u64).clamp(1, records.max(1));
    let mut produced = Vec::with_capacity(records as usize);
    for i in 0..slices {
        let from = records * i / slices;
        let until = records * (i + 1) / slices;
        tokio::time::sleep_until(started + produce_over.mul_f64(i as f64 / slices as f64)).await;
        produced.extend(kafka::produce_with(&producer, &topic, partitions, from..until).await);
    }
    (produced, started.elapsed())
}

/// The output topic as a `read_committed` reader sees it: one stream per output partition.
async fn read_kafka(topic: &str) -> Observed {
    let mut observed = Observed::default();
    for (partition, records) in kafka::read_committed(topic).await {
        let mut ids = Vec::with_capacity(records.len());
        for record in &records {
            match record.id() {
                Some(id) => ids.push(id),
                None => observed.unreadable += 1,
            }
        }
        observed.streams.push(Stream::new(format!("{topic}-{partition}"), ids));
    }
    observed
}

/// A file sink's finished files, one stream per input partition holding its files in offset
/// order, each line's `"id"`. Temporary files (a leading `.`) are not output yet and are
/// skipped. A file whose name does not parse becomes a stream of its own (and a note).
pub fn read_files(dir: &Path) -> (Observed, Vec<String>) {
    let mut notes = Vec::new();
    // (topic, partition) -> its files as (from, until, path), to be sorted by offset.
    type Files = Vec<(i64, i64, PathBuf)>;
    let mut ranges: BTreeMap<(String, i32), Files> = BTreeMap::new();
    let mut odd: Vec<PathBuf> = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // No file at all: everything is lost, which the verdict says.
        Err(e) => return (Observed::default(), vec![format!("{}: {e}", dir.display())]),
    };
    for entry in entries {
        let entry = entry.expect("read sink directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            notes.push(format!("sink directory holds {name}, not a file"));
            continue;
        }
        match parse_file_name(&name) {
            Some((topic, partition, from, until)) => {
                ranges.entry((topic, partition)).or_default().push((from, until, entry.path()))
            }
            None => {
                notes.push(format!("sink file {name} is not named topic-partition-from-until"));
                odd.push(entry.path());
            }
        }
    }
    let mut observed = Observed::default();
    let mut read = |name: String, paths: &[PathBuf]| {
        let mut ids = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            for line in text.lines().filter(|line| !line.is_empty()) {
                match line_id(line) {
                    Some(id) => ids.push(id),
                    None => observed.unreadable += 1,
                }
            }
        }
        observed.streams.push(Stream::new(name, ids));
    };
    for ((topic, partition), mut files) in ranges {
        files.sort();
        let paths: Vec<PathBuf> = files.into_iter().map(|(_, _, path)| path).collect();
        read(format!("files of {topic}-{partition}"), &paths);
    }
    odd.sort();
    for path in odd {
        read(path.display().to_string(), std::slice::from_ref(&path));
    }
    (observed, notes)
}

/// `{topic}-{partition}-{from:020}-{until:020}.jsonl`, read from the right (topic names hold
/// `-` too).
fn parse_file_name(name: &str) -> Option<(String, i32, i64, i64)> {
    let stem = name.strip_suffix(".jsonl")?;
    let mut parts = stem.rsplitn(4, '-');
    let until = parts.next()?.parse().ok()?;
    let from = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    let topic = parts.next().filter(|t| !t.is_empty())?;
    Some((topic.to_owned(), partition, from, until))
}

/// The id of a `{"id":N}` line.
fn line_id(line: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(line).ok()?.get("id")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xorshift_repeats_from_its_seed() {
        let mut a = XorShift64::new(42);
        let mut b = XorShift64::new(42);
        let mut c = XorShift64::new(43);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        let mut zero = XorShift64::new(0);
        assert!((0..8).all(|_| zero.next_u64() != 0), "seed 0 does not stick at 0");
    }

    #[test]
    fn xorshift_stays_in_range_and_covers_it() {
        let mut rng = XorShift64::new(7);
        let mut seen = [false; 4];
        for _ in 0..1_000 {
            seen[rng.below(4) as usize] = true;
            let d =
                rng.duration_between(Duration::from_millis(1_000), Duration::from_millis(2_500));
            assert!((1_000..=2_500).contains(&(d.as_millis() as u64)), "{d:?}");
        }
        assert_eq!(seen, [true; 4], "every fault kind gets picked");
    }

    #[test]
    fn file_names_parse_from_the_right() {
        let name = format!("my-job-1.in-3-{:020}-{:020}.jsonl", 120, 340);
        assert_eq!(parse_file_name(&name), Some(("my-job-1.in".to_owned(), 3, 120, 340)));
        assert_eq!(parse_file_name("x-1-2.jsonl"), None);
        assert_eq!(parse_file_name("t-0-1-2.txt"), None);
        assert_eq!(line_id(r#"{"id":17}"#), Some(17));
        assert_eq!(line_id("garbage"), None);
    }

    #[test]
    fn files_are_read_per_partition_in_offset_order() {
        let dir = std::env::temp_dir().join(crate::names::unique("weir-read-files"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |p: i32, from: i64, until: i64| format!("t.in-{p}-{from:020}-{until:020}.jsonl");
        std::fs::write(dir.join(file(0, 2, 4)), "{\"id\":4}\n{\"id\":6}\n").unwrap();
        std::fs::write(dir.join(file(0, 0, 2)), "{\"id\":0}\n{\"id\":2}\n").unwrap();
        std::fs::write(dir.join(file(1, 0, 1)), "{\"id\":1}\nnot json\n").unwrap();
        std::fs::write(dir.join(format!(".{}.attempt-1.tmp", file(1, 1, 2))), "{\"id\":3}\n")
            .unwrap();
        let (observed, notes) = read_files(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(observed.unreadable, 1);
        assert_eq!(
            observed.streams,
            [
                Stream::new("files of t.in-0", vec![0, 2, 4, 6]),
                Stream::new("files of t.in-1", vec![1])
            ]
        );
    }
}
