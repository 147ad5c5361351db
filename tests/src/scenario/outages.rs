//! What the outage tests (a service the job depends on frozen or killed, then back) check of
//! the job meanwhile and after: no Weir process exited, and the output moves again.

use std::time::{Duration, Instant};

use crate::job::JobFixture;
use crate::supervisor::Supervisor;

/// How long after `service` (as the messages name it, e.g. "etcd") came back the job's
/// committed offsets move again; panics past `limit`, or if a Weir process exited meanwhile.
pub async fn output_resumes(job: &mut JobFixture, service: &str, limit: Duration) -> Duration {
    let back = Instant::now();
    let mut progress = job.progress().await;
    let input = job.input.clone();
    let at_return = progress.committed_records(&input).await;
    loop {
        assert_still_running(&mut job.supervisor, &format!("{service}'s outage"));
        if progress.committed_records(&input).await > at_return {
            return back.elapsed();
        }
        assert!(back.elapsed() < limit, "no commit {limit:?} after {service} returned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Panics, with its log, if a child of `supervisor` has exited (`during` says when).
pub fn assert_still_running(supervisor: &mut Supervisor, during: &str) {
    if let Some((name, status)) = supervisor.exited() {
        panic!("{name} exited ({status}) during {during}; its log:\n{}", supervisor.log(&name));
    }
}
