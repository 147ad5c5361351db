//! Batches from recorded to committed: handed to the scheduler, and committed in batch order
//! once all their tasks are done, the new offsets and the batch's completion in one guarded etcd
//! transaction; then the progress is shown in the group `weir.{job}` and taught to the rate
//! controller.
//!
//! Invariants kept here: batches commit strictly in order; at-most-once commits a batch before
//! any of its tasks can run, every other guarantee only after all of them finished.

use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};
use weir_common::batch::BatchPlan;
use weir_common::config::Guarantee;

use super::{JobLoop, in_etcd, now_ms};
use crate::error::DriverError;
use crate::rate::BatchObservation;

impl JobLoop {
    /// Hands a recorded batch to the scheduler. At-most-once commits it in etcd first: once a
    /// task may have written anything, its records are never read again.
    /// `replayed`: recorded by an earlier driver (or before a stop).
    pub(super) async fn start_batch(
        &mut self,
        plan: BatchPlan,
        replayed: bool,
    ) -> Result<(), DriverError> {
        if self.guarantee == Guarantee::AtMostOnce {
            self.commit_offsets(&plan).await?;
        }
        self.status.send_modify(|s| s.history.recorded(&plan, replayed));
        self.scheduler.add_batch(plan, Instant::now());
        Ok(())
    }

    /// Commits the batch's ends as the job's progress, in one guarded etcd transaction, then
    /// shows it in the group `weir.{job}` (unless the executors' transactions already did).
    async fn commit_offsets(&mut self, plan: &BatchPlan) -> Result<(), DriverError> {
        let mut next = self.committed.clone();
        for (tp, end) in plan.ends() {
            next.next_offsets.insert(tp.clone(), end);
        }
        next.last_committed_batch = Some(plan.id);
        let store = &self.io.store;
        let span = info_span!("commit", job = %self.config.job.name, batch = plan.id);
        in_etcd(self.etcd_wait(), "committing a batch in etcd", || store.commit_batch(&next))
            .instrument(span)
            .await?;
        if self.guarantee != Guarantee::ExactlyOnce {
            self.io.group.publish(&next.next_offsets);
        }
        self.committed = next;
        Ok(())
    }

    /// Commits every finished batch at the head of the queue, in order. (At-most-once committed
    /// it before dispatch; a finished batch just leaves.) Returns whether the last batch it
    /// committed was cut by the budget: records were left for the next one.
    pub(super) async fn commit_finished(&mut self) -> Result<bool, DriverError> {
        let mut backlog_left = false;
        while let Some(batch) = self.scheduler.committable() {
            let id = batch.plan.id;
            if self.guarantee != Guarantee::AtMostOnce {
                let plan = batch.plan.clone();
                self.commit_offsets(&plan).await?;
            }
            let batch = self.scheduler.remove_batch(id).expect("committable batch exists");
            let now = Instant::now();
            let delay = batch.first_dispatch.unwrap_or(now).duration_since(batch.recorded_at);
            let processing = now.duration_since(batch.first_dispatch.unwrap_or(now));
            info!(
                batch = id,
                tasks = batch.plan.tasks.len(),
                records_in = batch.metrics.records_in,
                records_out = batch.metrics.records_out,
                rejected = batch.metrics.records_rejected,
                filtered = batch.metrics.records_filtered,
                already_committed_tasks = batch.metrics.tasks_already_committed,
                records_lost = batch.metrics.records_lost + batch.plan.records_lost(),
                scheduling_delay_ms = delay.as_millis() as u64,
                processing_ms = processing.as_millis() as u64,
                "Batch committed"
            );
            let limited = self.limited.remove(&id).unwrap_or(false);
            backlog_left = limited;
            if let Some(rate) = &mut self.rate {
                rate.observe(BatchObservation {
                    records: batch.metrics.records_in,
                    processing,
                    scheduling_delay: delay,
                    limited,
                });
                let now = rate.rate();
                self.status.send_modify(|s| s.rate_records_per_second = now);
            }
            if batch.records_abandoned > 0 {
                warn!(
                    batch = id,
                    offsets = batch.records_abandoned,
                    "At-most-once: tasks failed or were lost and are not run again; their records are lost"
                );
            }
            let total = (now_ms() - batch.plan.planned_at_ms).max(0) as f64 / 1000.0;
            let m = &self.metrics;
            m.batches_committed.inc();
            m.batch_scheduling_delay.observe(delay.as_secs_f64());
            m.batch_processing.observe(processing.as_secs_f64());
            m.batch_total_delay.observe(total);
            m.committed_records(&batch.metrics_by_topic);
            for (topic, records) in &batch.abandoned_by_topic {
                m.per_topic(&m.records_abandoned, topic, *records);
            }
            for range in &batch.plan.data_lost {
                m.per_topic(&m.records_lost, range.topic(), range.max_records());
            }
            self.status.send_modify(|s| s.committed(id, &batch, delay, processing, now_ms()));
        }
        Ok(backlog_left)
    }
}
