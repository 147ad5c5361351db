//! What a scenario found: an [`Outcome`] (the oracle's verdict, one [`Recovery`] per fault, the
//! seed, notes) and the recovery times summarised per kind of fault ([`RecoverySummary`]), with
//! the tables they print.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::{Fault, Scenario};
use crate::oracle::Verdict;

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
