//! The next batch: where each partition's log ends now, what Kafka no longer holds
//! (`source.on_data_loss`), how much the budget allows (`planner::budget`, from the limits and
//! the rate controller), and the write-ahead record in etcd before the batch goes anywhere.
//!
//! Invariant kept here: a batch is recorded in etcd before any of its tasks is dispatched.

use std::collections::BTreeMap;

use tokio::time::Instant;
use tracing::{debug, info, warn};
use weir_common::batch::BatchPlan;
use weir_common::retry::Retryable;
use weir_common::{OffsetRange, TopicPartition};

use super::{JobLoop, MAX_BATCHES_IN_FLIGHT, advance, in_etcd, now_ms};
use crate::data_loss;
use crate::error::DriverError;
use crate::planner::{self, PartitionState, plan_batch};
use crate::rate::{Limits, RateController};

impl JobLoop {
    /// `Ok` while the planning outage (Kafka not answering) is shorter than
    /// `driver.outage_limit`; past it, `error` stops the job.
    fn outage_within_limit(&self, error: DriverError) -> Result<(), DriverError> {
        let Some(limit) = self.config.driver.outage_limit else { return Ok(()) };
        let since_ms = self.status.borrow().waits.get("kafka").map(|w| w.since_ms);
        match since_ms {
            Some(since) if now_ms() - since >= limit.as_millis() as i64 => {
                Err(DriverError::OutageLimit { limit, error: Box::new(error) })
            }
            _ => Ok(()),
        }
    }

    /// Plans, records and queues the next batch, if there is room and there are new records.
    /// Kafka being unreachable skips this round (the next tick tries again).
    pub(super) async fn plan(&mut self) -> Result<(), DriverError> {
        if self.scheduler.batches_in_flight() >= MAX_BATCHES_IN_FLIGHT {
            return Ok(());
        }
        let started = Instant::now();
        let latest = match self.fetch_latest().await {
            Ok(latest) => latest,
            // A broker away: wait for the next round. A refused property, a missing
            // permission: stop and say so.
            Err(e @ DriverError::Kafka { .. }) if e.is_retryable() => {
                warn!(error = %e, "Cannot plan a batch: Kafka did not answer; trying again next interval");
                self.status.send_modify(|s| s.wait("kafka", e.to_string(), now_ms()));
                return self.outage_within_limit(e);
            }
            Err(e) => return Err(e),
        };
        let mut states: BTreeMap<TopicPartition, PartitionState> = self
            .planned
            .iter()
            .filter_map(|(tp, &next)| {
                latest.get(tp).map(|&l| (tp.clone(), PartitionState { next, latest: l }))
            })
            .collect();
        let data_lost = self.check_data_loss(&mut states).await?;
        let lag: i64 = states.values().map(|s| (s.latest - s.next).max(0)).sum();
        let lag_by_partition: BTreeMap<String, i64> =
            states.iter().map(|(tp, s)| (tp.to_string(), (s.latest - s.next).max(0))).collect();
        self.metrics.lag.set(lag);
        self.metrics.partition_lag(&lag_by_partition);
        self.status.send_modify(|s| {
            s.done_waiting("kafka");
            s.lag_by_partition = lag_by_partition;
            s.history.sample_lag(now_ms(), lag);
        });
        let max_rate = self.config.source.max_rate_per_partition;
        if let Some(rate) = &mut self.rate {
            rate.set_limits(Limits::for_partitions(states.len(), max_rate));
        }
        if self.lanes.needs_regrouping(self.config.source.lanes) {
            // Partitions change lanes only with nothing in flight (recorded batches name the
            // old lanes); until then, no new batch.
            if self.scheduler.batches_in_flight() > 0 {
                return Ok(());
            }
            if !self.regroup_lanes().await? {
                return Ok(());
            }
        }
        let measured = self.rate.as_ref().and_then(RateController::rate);
        let budget = planner::budget(&self.config.source, self.config.job.batch_interval, measured);
        let planned = plan_batch(self.next_batch, &states, &self.lanes, budget, now_ms());
        let plan = match (planned, data_lost.is_empty()) {
            (Some(plan), _) => Some(BatchPlan { data_lost, ..plan }),
            // Only skipped offsets: a batch without tasks still moves the partitions on.
            (None, false) => Some(BatchPlan {
                id: self.next_batch,
                tasks: Vec::new(),
                planned_at_ms: now_ms(),
                data_lost,
            }),
            (None, true) => None,
        };
        let Some(plan) = plan else {
            let took = started.elapsed();
            debug!(took_us = took.as_micros() as u64, "No new records; no batch");
            self.metrics.empty_rounds.inc();
            self.time_lag(&latest);
            self.status.send_modify(|s| s.empty_round(took, lag));
            return Ok(());
        };
        let store = &self.io.store;
        in_etcd(self.etcd_wait(), "recording a batch in etcd", || store.record_batch(&plan))
            .await?;
        info!(
            batch = plan.id,
            tasks = plan.tasks.len(),
            max_records = plan.max_records(),
            took_ms = started.elapsed().as_millis() as u64,
            "Batch recorded"
        );
        self.limited.insert(plan.id, planner::was_limited(&plan, lag));
        advance(&mut self.planned, &plan);
        self.next_batch = plan.id + 1;
        self.time_lag(&latest);
        self.status.send_modify(|s| s.lag = lag);
        self.start_batch(plan, false).await
    }

    /// Regroups the lanes into `source.lanes` (a job mapped one partition per lane, or the
    /// setting lowered): fences the retired lanes' producers first, then writes the new map.
    /// Returns false when Kafka did not answer the fencing; the next round tries again, and
    /// the old map stays in force meanwhile.
    async fn regroup_lanes(&mut self) -> Result<bool, DriverError> {
        let started = Instant::now();
        let mut regrouped = self.lanes.clone();
        let retired = regrouped.regroup(self.config.source.lanes);
        let fenced = retired.len();
        match self.io.group.fence_lanes(retired).await {
            Ok(()) => {}
            Err(e) if e.is_retryable() => {
                warn!(error = %e, "Cannot regroup the lanes yet: fencing the old lanes failed; trying again next interval");
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        let (store, committed) = (&self.io.store, &self.committed);
        in_etcd(self.etcd_wait(), "writing the regrouped lanes to etcd", || {
            store.write_offsets_and_lanes(committed, &regrouped)
        })
        .await?;
        info!(
            lanes = regrouped.lane_count(),
            partitions = regrouped.len(),
            retired = fenced,
            took_ms = started.elapsed().as_millis() as u64,
            "Lanes regrouped; the retired lanes' producers are fenced"
        );
        self.lanes = regrouped;
        Ok(true)
    }

    /// How long each partition's oldest record not yet planned has waited.
    fn time_lag(&mut self, latest: &BTreeMap<TopicPartition, i64>) {
        let partitions = self
            .planned
            .iter()
            .filter_map(|(tp, &planned)| latest.get(tp).map(|&end| (tp.to_string(), planned, end)));
        let ages = self.lag_clock.observe(now_ms(), partitions);
        let oldest = ages.values().copied().max().unwrap_or(0);
        self.metrics.oldest_unplanned_age.set(oldest as f64 / 1000.0);
        self.status.send_modify(|s| {
            s.oldest_unplanned_age_ms = oldest;
            s.lag_age_ms_by_partition = ages;
        });
    }

    async fn fetch_latest(&mut self) -> Result<BTreeMap<TopicPartition, i64>, DriverError> {
        let partitions = self.discover_partitions().await?;
        self.io.source.latest(partitions).await
    }

    /// Finds offsets still to read that Kafka no longer holds (only partitions whose log end
    /// differs from the job's position are asked for their log start, so an idle round costs
    /// nothing more) and applies `source.on_data_loss`.
    async fn check_data_loss(
        &mut self,
        states: &mut BTreeMap<TopicPartition, PartitionState>,
    ) -> Result<Vec<OffsetRange>, DriverError> {
        let moved: Vec<TopicPartition> =
            states.iter().filter(|(_, s)| s.latest != s.next).map(|(tp, _)| tp.clone()).collect();
        if moved.is_empty() {
            return Ok(Vec::new());
        }
        let starts = self.io.source.earliest(moved).await?;
        let skipped = data_loss::check(states, &starts, self.config.source.on_data_loss)
            .map_err(DriverError::DataLoss)?;
        for range in &skipped {
            warn!(partition = %range.topic_partition(), from = range.from(), until = range.until(),
                records = range.max_records(),
                "Offsets no longer in Kafka; skipped (source.on_data_loss = \"skip\")");
        }
        let lost: u64 = skipped.iter().map(OffsetRange::max_records).sum();
        self.status.send_modify(|s| s.records_lost_planning += lost);
        Ok(skipped)
    }
}
