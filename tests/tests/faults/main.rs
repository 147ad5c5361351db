//! Fault tests: a job runs under a delivery guarantee while input flows and its processes are
//! killed, paused and restarted; the oracle then judges every output record against what was
//! produced. `single` applies each fault alone under exactly-once; `chaos` applies random
//! schedules (seed printed; repeat one with `WEIR_CHAOS_SEED`) under every guarantee.
//!
//! Scenarios run one at a time (the harness serialises them) and each prints its verdict and
//! its recovery times.

mod backlog;
mod bad_code;
mod chaos;
mod etcd_outages;
mod kafka_outage;
mod long_tasks;
mod single;

use weir_tests::scenario::Outcome;

/// Nothing lost, nothing twice, per-partition order kept, nothing foreign.
fn assert_exactly_once(outcome: &Outcome) {
    let v = &outcome.verdict;
    assert_eq!(v.lost(), 0, "records lost:\n{outcome}");
    assert_eq!(v.duplicated(), 0, "records duplicated:\n{outcome}");
    assert_eq!(v.out_of_order(), 0, "records out of order:\n{outcome}");
    assert_eq!(v.unexpected(), 0, "records never produced:\n{outcome}");
}
