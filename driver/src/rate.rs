//! The backpressure rate controller: pure code. After each committed batch it is told how many
//! records the batch read, how long the executors took and how long the batch waited for them;
//! it answers with the job-wide rate, in records per second, that the next batch may read.
//!
//! Why: without a limit a batch takes every record behind the partitions' ends. A first start
//! from a backlog, or a peak, then gives one batch minutes of work, and every batch after it
//! waits. Spark Streaming's answer is a PID estimator (proportional 1.0, integral 0.2, floor
//! 100 records/s). With its default gains it reduces to `rate = r × (1 − 0.2 × delay / interval)`
//! where `r = records / processing`: `r` mixes the fixed cost of a batch with the cost per
//! record, so small batches look slow and it climbs back over several batches; a queue caused by
//! anything (a missing executor too) can cut the rate to the floor; the floor ignores the number
//! of partitions.
//!
//! The model here: a batch of `n` records takes `P = overhead + n / capacity` seconds. Both are
//! measured; the next batch gets as many records as fit in the interval, minus half the queue the
//! last batch met. In steps, with interval `I`, for a batch of `n` records, processing `P`,
//! scheduling delay `D` (seconds):
//!
//! 1. Queue. A wait counts only as far as the previous batch ran past this one's tick:
//!    `q = min(D, carry)`, `carry = max(0, D' + P' − I)` from the previous batch (0 before the
//!    first). A wait for executors that were not there, after a batch that finished in time, is
//!    not a queue; batches queued behind it are.
//! 2. Overhead `a`. Two consecutive batches whose sizes differ by half or more give a line
//!    through `(n₀, P₀)` and `(n, P)`; where it meets zero records is the overhead. A lower fit
//!    is taken at once, a higher one a tenth of the way: overestimating the overhead overshoots
//!    when a batch grows, underestimating only approaches more slowly (as `r` does).
//! 3. Capacity. A batch reads as `capacity(n, P) = n / (P − min(a, P/2))`. The estimate is kept
//!    as a reference batch `(n_ref, P_ref)`, read with the current overhead, so learning the
//!    overhead later never leaves a capacity measured without it: `C = capacity(n_ref, P_ref)`.
//! 4. Update, with `m = capacity(n, P)`: a batch that the rate did not cut and that finished
//!    within the interval is ignored when `m < C` (a few records processed quickly say nothing
//!    about the ceiling); otherwise a batch more than a quarter away from `C` becomes the
//!    reference, a closer one moves it half-way (the point between the two: both lie on the
//!    line, and their mean has half the noise).
//! 5. Rate: `budget = max(I − q/2, I/2)`, `work = max(budget − a, I/10)`,
//!    `rate = C × work / I`, then clamped to [`Limits`].
//!
//! Invariant kept here: [`RateController::rate`] is `None` until a batch with records and a
//! measurable processing time was observed, and otherwise within the limits in force.

use std::time::Duration;

/// Batches shorter than this carry no usable timing.
const MIN_PROCESSING_S: f64 = 0.001;
/// Two batches give an overhead fit when the larger is at least this many times the smaller.
const OVERHEAD_FIT_SIZE_RATIO: f64 = 1.5;
/// How far a higher overhead fit moves the estimate (a lower one is taken whole).
const OVERHEAD_RISE_WEIGHT: f64 = 0.1;
/// A batch whose capacity is further than this share from the estimate becomes the reference.
const CAPACITY_STEP: f64 = 0.25;
/// How far a closer batch moves the reference towards itself.
const CAPACITY_WEIGHT: f64 = 0.5;
/// The share of the queue the next batch gives back.
const QUEUE_GAIN: f64 = 0.5;
/// The shortest time budget, as a share of the interval, however long the queue.
const MIN_BUDGET: f64 = 0.5;
/// The least per-record work a batch is given, as a share of the interval, however large the
/// overhead: an overhead near the interval makes batches overrun, but never stalls the job.
const MIN_WORK: f64 = 0.1;

/// What the job loop knows about a batch when it commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchObservation {
    /// Records the batch read. The rate caps offsets, so the sum of its ranges' lengths matches
    /// it best; the records actually read (fewer on compacted topics) make the rate err low.
    pub records: u64,
    /// From the batch's first dispatch to its commit.
    pub processing: Duration,
    /// From the batch being recorded to its first dispatch.
    pub scheduling_delay: Duration,
    /// Whether the rate in force cut the batch: some partition had more records than allowed.
    pub limited: bool,
}

/// Bounds on the controller's output, in records per second for the whole job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// The configured cap, e.g. `max_rate_per_partition × partitions`.
    pub max_rate: Option<f64>,
    /// The least rate, e.g. one record per second per partition, so every partition moves.
    /// When above `max_rate`, `max_rate` wins.
    pub min_rate: f64,
}

impl Limits {
    /// The controller's bounds for a job reading `partitions` partitions: at most
    /// `max_rate_per_partition` for every partition, at least one record per second per
    /// partition so every partition moves.
    pub fn for_partitions(partitions: usize, max_rate_per_partition: Option<u64>) -> Self {
        Limits {
            max_rate: max_rate_per_partition.map(|r| r as f64 * partitions as f64),
            min_rate: partitions.max(1) as f64,
        }
    }
}

/// Computes the job-wide rate from committed batches. See the module comment for the algorithm.
#[derive(Debug, Clone)]
pub struct RateController {
    /// The batch interval, in seconds.
    interval: f64,
    limits: Limits,
    /// Records and processing seconds of the reference batch the capacity is read from.
    reference: Option<(f64, f64)>,
    /// Seconds each batch costs whatever its size.
    overhead: Option<f64>,
    /// Records and processing seconds of the last informative batch.
    last: Option<(f64, f64)>,
    /// How far the last batch, its wait included, ran past the following tick (seconds).
    carry: Option<f64>,
    /// The part of the last batch's wait that was queueing behind earlier batches (seconds).
    queue: f64,
}

impl RateController {
    /// A controller for batches planned every `batch_interval` (which must not be zero).
    pub fn new(batch_interval: Duration, limits: Limits) -> Self {
        assert!(!batch_interval.is_zero(), "the batch interval must be positive");
        RateController {
            interval: batch_interval.as_secs_f64(),
            limits,
            reference: None,
            overhead: None,
            last: None,
            carry: None,
            queue: 0.0,
        }
    }

    /// Takes a committed batch into account. Call it for every committed batch, in order.
    pub fn observe(&mut self, batch: BatchObservation) {
        let n = batch.records as f64;
        let p = batch.processing.as_secs_f64();
        let d = batch.scheduling_delay.as_secs_f64();
        self.queue = self.carry.map_or(0.0, |carry| d.min(carry));
        self.carry = Some((d + p - self.interval).max(0.0));
        if batch.records == 0 || p < MIN_PROCESSING_S {
            return;
        }
        if let Some((n0, p0)) = self.last.replace((n, p)) {
            self.fit_overhead(n0, p0, n, p);
        }
        let (measured, estimate) = (self.capacity_of(n, p), self.capacity());
        self.reference = Some(match (self.reference, estimate) {
            (Some(r), Some(c)) if !batch.limited && p <= self.interval && measured < c => r,
            (Some((n0, p0)), Some(c)) if (measured - c).abs() <= CAPACITY_STEP * c => {
                (n0 + CAPACITY_WEIGHT * (n - n0), p0 + CAPACITY_WEIGHT * (p - p0))
            }
            _ => (n, p),
        });
    }

    /// The job-wide rate in force, in records per second: a batch reads at most
    /// `rate × batch_interval` records. `None` until the first informative batch.
    pub fn rate(&self) -> Option<f64> {
        let capacity = self.capacity()?;
        let overhead = self.overhead.unwrap_or(0.0);
        let budget = (self.interval - QUEUE_GAIN * self.queue).max(MIN_BUDGET * self.interval);
        let work = (budget - overhead).max(MIN_WORK * self.interval);
        let rate = (capacity * work / self.interval).max(self.limits.min_rate);
        Some(self.limits.max_rate.map_or(rate, |max| rate.min(max)))
    }

    /// Replaces the limits, e.g. when partitions are added. Takes effect at once.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Records per second of per-record work, the overhead excluded.
    fn capacity(&self) -> Option<f64> {
        self.reference.map(|(n, p)| self.capacity_of(n, p))
    }

    /// What a batch of `n` records in `p` seconds says about the capacity. The overhead taken
    /// off is at most half the time, so a doubtful overhead can at most double the reading.
    fn capacity_of(&self, n: f64, p: f64) -> f64 {
        n / (p - self.overhead.unwrap_or(0.0).min(p / 2.0))
    }

    /// Refines the overhead from two batches of clearly different sizes.
    fn fit_overhead(&mut self, n0: f64, p0: f64, n: f64, p: f64) {
        if n.max(n0) < OVERHEAD_FIT_SIZE_RATIO * n.min(n0) {
            return;
        }
        let per_record = (p - p0) / (n - n0);
        let fit = p - per_record * n;
        if per_record <= 0.0 || !(0.0..=p.min(p0)).contains(&fit) {
            return; // the capacity changed between the two batches, or noise: no line
        }
        self.overhead = Some(match self.overhead {
            Some(a) if fit > a => a + OVERHEAD_RISE_WEIGHT * (fit - a),
            _ => fit,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_scale_with_the_partitions() {
        let limits = Limits::for_partitions(8, Some(100));
        assert_eq!(limits, Limits { max_rate: Some(800.0), min_rate: 8.0 });
        let none = Limits::for_partitions(0, None);
        assert_eq!(none, Limits { max_rate: None, min_rate: 1.0 }, "at least one record a second");
    }

    const INTERVAL: f64 = 1.0;
    const LIMITS: Limits = Limits { max_rate: None, min_rate: 8.0 };
    /// A batch "fits" when it finishes within the interval; the slack absorbs float rounding.
    const FITS: f64 = INTERVAL + 1e-6;
    /// For comparisons with Spark, whose integer milliseconds make its batches overrun by
    /// about a millisecond for ever: within 1% of the interval.
    const ROUGHLY_FITS: f64 = INTERVAL * 1.01;

    fn observation(records: u64, processing: f64, delay: f64, limited: bool) -> BatchObservation {
        BatchObservation {
            records,
            processing: Duration::from_secs_f64(processing),
            scheduling_delay: Duration::from_secs_f64(delay),
            limited,
        }
    }

    fn controller() -> RateController {
        RateController::new(Duration::from_secs_f64(INTERVAL), LIMITS)
    }

    // ---- The controller alone ----

    #[test]
    fn no_rate_until_a_batch_with_records_and_timing() {
        let mut c = controller();
        assert_eq!(c.rate(), None);
        c.observe(observation(0, 0.5, 0.0, false));
        c.observe(observation(500, 0.0, 0.0, false));
        assert_eq!(c.rate(), None);
        c.observe(observation(500, 0.1, 0.0, true));
        assert!(c.rate().is_some());
    }

    #[test]
    fn learns_the_overhead_from_two_batch_sizes_and_fills_the_interval() {
        // 50 ms per batch plus 10 µs per record (100k records/s).
        let mut c = controller();
        c.observe(observation(10_000, 0.15, 0.0, true));
        c.observe(observation(50_000, 0.55, 0.0, true));
        let rate = c.rate().unwrap();
        assert!((rate - 95_000.0).abs() < 1.0, "{rate}");
    }

    #[test]
    fn an_unlimited_batch_lowers_the_estimate_only_when_it_overran() {
        let mut c = controller();
        c.observe(observation(95_000, 1.0, 0.0, true));
        let before = c.rate().unwrap();
        c.observe(observation(2_000, 0.07, 0.0, false));
        assert_eq!(c.rate().unwrap(), before, "a small quick batch is no news");
        c.observe(observation(60_000, 3.0, 0.0, false));
        assert!(c.rate().unwrap() < before / 2.0, "an unlimited batch that overran is");
    }

    #[test]
    fn waiting_not_caused_by_processing_is_not_a_queue() {
        let mut c = controller();
        c.observe(observation(90_000, 0.9, 0.0, true));
        let before = c.rate().unwrap();
        // No executor for 20 s: the wait follows a batch that finished in time.
        c.observe(observation(90_000, 0.9, 20.0, true));
        assert_eq!(c.rate().unwrap(), before);
        // A batch that overran by 0.5 s makes the next one wait 0.5 s: that is a queue.
        c.observe(observation(90_000, 1.5, 0.0, true));
        c.observe(observation(60_000, 1.0, 0.5, true));
        assert!(c.rate().unwrap() < 60_000.0 * 0.8);
    }

    #[test]
    fn output_is_clamped_to_the_limits_in_force() {
        let mut c = RateController::new(
            Duration::from_secs(1),
            Limits { max_rate: Some(1_000.0), min_rate: 10.0 },
        );
        c.observe(observation(50_000, 0.5, 0.0, true));
        assert_eq!(c.rate(), Some(1_000.0));
        c.set_limits(Limits { max_rate: None, min_rate: 10.0 });
        assert!(c.rate().unwrap() > 90_000.0);
        c.observe(observation(100, 60.0, 0.0, true)); // something is very wrong downstream
        assert_eq!(c.rate(), Some(10.0));
        c.set_limits(Limits { max_rate: Some(5.0), min_rate: 10.0 });
        assert_eq!(c.rate(), Some(5.0), "the cap wins over the minimum");
    }

    // ---- Synthetic timelines ----

    /// A rate estimator the simulation can drive: this controller or Spark's.
    trait Estimator {
        fn observe(&mut self, planned_at: f64, batch: BatchObservation);
        fn rate(&self) -> Option<f64>;
    }

    impl Estimator for RateController {
        fn observe(&mut self, _: f64, batch: BatchObservation) {
            RateController::observe(self, batch);
        }
        fn rate(&self) -> Option<f64> {
            RateController::rate(self)
        }
    }

    /// Spark's `PIDRateEstimator.compute`, line for line, with Spark's default gains.
    struct SparkPid {
        batch_interval_ms: f64,
        first_run: bool,
        latest_time: i64,
        latest_rate: f64,
        latest_error: f64,
        published: Option<f64>,
    }

    impl SparkPid {
        const PROPORTIONAL: f64 = 1.0;
        const INTEGRAL: f64 = 0.2;
        const DERIVATIVE: f64 = 0.0;
        const MIN_RATE: f64 = 100.0;

        fn new() -> Self {
            SparkPid {
                batch_interval_ms: INTERVAL * 1000.0,
                first_run: true,
                latest_time: -1,
                latest_rate: -1.0,
                latest_error: -1.0,
                published: None,
            }
        }
    }

    impl Estimator for SparkPid {
        fn observe(&mut self, planned_at: f64, batch: BatchObservation) {
            // Spark passes milliseconds as Longs.
            let time = (planned_at * 1000.0) as i64;
            let num_elements = batch.records as i64;
            let processing_delay = batch.processing.as_millis() as i64;
            let scheduling_delay = batch.scheduling_delay.as_millis() as i64;
            if time > self.latest_time && num_elements > 0 && processing_delay > 0 {
                let delay_since_update = (time - self.latest_time) as f64 / 1000.0;
                let processing_rate = num_elements as f64 / processing_delay as f64 * 1000.0;
                let error = self.latest_rate - processing_rate;
                let historical_error =
                    scheduling_delay as f64 * processing_rate / self.batch_interval_ms;
                let d_error = (error - self.latest_error) / delay_since_update;
                let new_rate = (self.latest_rate
                    - Self::PROPORTIONAL * error
                    - Self::INTEGRAL * historical_error
                    - Self::DERIVATIVE * d_error)
                    .max(Self::MIN_RATE);
                self.latest_time = time;
                if self.first_run {
                    // Spark publishes nothing after its first batch.
                    self.latest_rate = processing_rate;
                    self.latest_error = 0.0;
                    self.first_run = false;
                } else {
                    self.latest_rate = new_rate;
                    self.latest_error = error;
                    self.published = Some(new_rate);
                }
            }
        }
        fn rate(&self) -> Option<f64> {
            self.published
        }
    }

    /// A system to run a timeline on. Times in seconds from the start; rates in records/s.
    struct Timeline {
        ticks: usize,
        /// Records/s the executors process, by the time a batch starts.
        capacity: fn(f64) -> f64,
        /// Records/s written to the source, by time.
        arrival: fn(f64) -> f64,
        /// Records waiting at the start.
        backlog: f64,
        /// The rate before the estimator has one (`initial_rate_per_partition × partitions`).
        initial_rate: f64,
        /// From..until: no executor, nothing starts.
        stall: Option<(f64, f64)>,
        /// Processing times vary uniformly by ± this share.
        noise: f64,
        seed: u64,
    }

    const OVERHEAD: f64 = 0.05;

    impl Timeline {
        fn new(capacity: fn(f64) -> f64, arrival: fn(f64) -> f64) -> Self {
            Timeline {
                ticks: 60,
                capacity,
                arrival,
                backlog: 0.0,
                initial_rate: 10_000.0,
                stall: None,
                noise: 0.0,
                seed: 1,
            }
        }
    }

    #[derive(Debug, Clone, Copy)]
    struct SimBatch {
        planned_at: f64,
        /// The estimator's rate when the batch was planned (None: the initial rate applied).
        rate: Option<f64>,
        records: u64,
        processing: f64,
        delay: f64,
        end: f64,
        /// Whether the rate cut the batch (the source had more).
        limited: bool,
    }

    #[derive(Debug)]
    struct Run {
        batches: Vec<SimBatch>,
        /// Records waiting in the source at each tick, before planning.
        backlog: Vec<f64>,
    }

    /// Weir's job loop in miniature: a plan every interval, unless two batches are in flight
    /// (`MAX_BATCHES_IN_FLIGHT`); executors run one batch after another; a batch takes
    /// `OVERHEAD + records / capacity`; a batch is observed at the first tick after it ends.
    fn simulate(estimator: &mut dyn Estimator, timeline: &Timeline) -> Run {
        let mut random = timeline.seed.wrapping_mul(7919).wrapping_add(17);
        let mut backlog = timeline.backlog;
        let mut run = Run { batches: Vec::new(), backlog: Vec::new() };
        let (mut busy_until, mut committed) = (0.0_f64, 0);
        for tick in 0..timeline.ticks {
            let now = tick as f64 * INTERVAL;
            if tick > 0 {
                backlog += (timeline.arrival)(now - INTERVAL) * INTERVAL;
            }
            while let Some(b) = run.batches.get(committed).filter(|b| b.end <= now + 1e-9) {
                estimator.observe(
                    b.planned_at,
                    observation(b.records, b.processing, b.delay, b.limited),
                );
                committed += 1;
            }
            run.backlog.push(backlog);
            if run.batches.len() - committed >= 2 {
                continue;
            }
            let rate = estimator.rate();
            let allowed = (rate.unwrap_or(timeline.initial_rate) * INTERVAL).floor();
            let records = backlog.floor().min(allowed);
            if records < 1.0 {
                continue;
            }
            backlog -= records;
            let ready = now.max(busy_until);
            let start = match timeline.stall {
                Some((from, until)) if (from..until).contains(&ready) => until,
                _ => ready,
            };
            random = random.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let jitter =
                1.0 + timeline.noise * (2.0 * (random >> 11) as f64 / (1u64 << 53) as f64 - 1.0);
            let processing = (OVERHEAD + records / (timeline.capacity)(start)) * jitter;
            busy_until = start + processing;
            run.batches.push(SimBatch {
                planned_at: now,
                rate,
                records: records as u64,
                processing,
                delay: start - now,
                end: busy_until,
                limited: backlog >= 1.0,
            });
        }
        run
    }

    impl Run {
        fn after(&self, time: f64) -> impl Iterator<Item = &SimBatch> {
            self.batches.iter().filter(move |b| b.planned_at >= time)
        }

        /// Seconds from `time` until the source's backlog is down to `records`.
        fn drained_after(&self, time: f64, records: f64) -> f64 {
            let tick = self
                .backlog
                .iter()
                .enumerate()
                .position(|(k, &backlog)| k as f64 * INTERVAL >= time && backlog <= records);
            tick.expect("the backlog drains within the timeline") as f64 * INTERVAL - time
        }

        /// Batches planned from `time` on before one is planned with a rate of at least `rate`.
        fn batches_until_rate(&self, time: f64, rate: f64) -> usize {
            self.after(time)
                .position(|b| b.rate.is_some_and(|r| r >= rate))
                .expect("the rate is reached within the timeline")
        }

        fn records(&self) -> u64 {
            self.batches.iter().map(|b| b.records).sum()
        }

        fn total_delay(&self) -> f64 {
            self.batches.iter().map(|b| b.delay).sum()
        }
    }

    fn weir(timeline: &Timeline) -> Run {
        simulate(&mut controller(), timeline)
    }

    fn spark(timeline: &Timeline) -> Run {
        simulate(&mut SparkPid::new(), timeline)
    }

    /// Starts with 10M records waiting, at 100k records/s.
    fn first_start(initial_rate: f64) -> Timeline {
        Timeline { ticks: 40, backlog: 10e6, initial_rate, ..Timeline::new(|_| 100e3, |_| 0.0) }
    }

    fn capacity_drop() -> Timeline {
        let capacity = |t| if t < 10.0 { 100e3 } else { 20e3 };
        Timeline { backlog: 5e6, ..Timeline::new(capacity, |_| 15e3) }
    }

    fn capacity_rise() -> Timeline {
        let capacity = |t| if t < 20.0 { 20e3 } else { 100e3 };
        Timeline { backlog: 5e6, ..Timeline::new(capacity, |_| 15e3) }
    }

    fn spike() -> Timeline {
        let arrival = |t| if (10.0..15.0).contains(&t) { 300e3 } else { 30e3 };
        Timeline { ticks: 80, ..Timeline::new(|_| 100e3, arrival) }
    }

    /// A quiet source, then a peak: the quiet batches must not teach a low rate.
    fn quiet_then_spike() -> Timeline {
        let arrival = |t| if (20.0..25.0).contains(&t) { 300e3 } else { 2e3 };
        Timeline { ticks: 80, ..Timeline::new(|_| 100e3, arrival) }
    }

    /// No executor from 10 s to 30 s, then all is well again.
    fn executors_away() -> Timeline {
        Timeline { ticks: 80, stall: Some((10.0, 30.0)), ..Timeline::new(|_| 100e3, |_| 50e3) }
    }

    fn noisy(noise: f64, seed: u64) -> Timeline {
        Timeline { ticks: 300, backlog: 50e6, noise, seed, ..Timeline::new(|_| 100e3, |_| 0.0) }
    }

    /// The index of the first batch from which on every batch fits the interval.
    fn fits_from(run: &Run, bound: f64) -> usize {
        run.batches.iter().rposition(|b| b.processing > bound).map_or(0, |last| last + 1)
    }

    #[test]
    fn first_start_from_a_backlog_converges_within_five_batches() {
        // An initial rate 10x too low, and one 5x too high (its first two batches overrun).
        for initial_rate in [10e3, 500e3] {
            let run = weir(&first_start(initial_rate));
            let from = fits_from(&run, FITS);
            assert!(from <= 5, "initial {initial_rate}: fits from batch {from}: {run:#?}");
            let last = run.batches.last().unwrap();
            assert!(last.records >= 94_000 && last.delay < 1e-6, "{run:#?}");
        }
    }

    #[test]
    fn a_capacity_drop_is_absorbed_within_three_batches() {
        let run = weir(&capacity_drop());
        // The two batches planned before the drop was seen overrun; nothing can shrink them.
        let after: Vec<_> = run.after(10.0).collect();
        let fitting = after.iter().position(|b| b.processing <= FITS).unwrap();
        assert!(fitting <= 2, "{after:#?}");
        assert!(after[fitting..].iter().all(|b| b.processing <= FITS), "{after:#?}");
        // The queue drains: delays fall to zero within three batches of the first fitting one.
        assert!(after[fitting + 3..].iter().all(|b| b.delay < 1e-6), "{after:#?}");
        // And the source's backlog shrinks again (20k/s processed, 15k/s arriving).
        let end = run.backlog.len() - 1;
        assert!(run.backlog[end] < run.backlog[end - 10], "{:?}", run.backlog);
    }

    #[test]
    fn a_capacity_rise_is_used_within_two_batches() {
        let run = weir(&capacity_rise());
        assert!(run.batches_until_rate(20.0, 0.9 * 100e3) <= 2, "{run:#?}");
        assert!(run.after(20.0).all(|b| b.processing <= FITS), "{run:#?}");
    }

    #[test]
    fn small_unlimited_batches_never_pull_the_rate_down() {
        // 1M records waiting, then 2k records/s: batches of 2k records in 70 ms.
        let timeline = Timeline { backlog: 1e6, ..Timeline::new(|_| 100e3, |_| 2e3) };
        let mut c = controller();
        let run = simulate(&mut c, &timeline);
        let quiet: Vec<_> = run.after(20.0).collect();
        assert!(quiet.iter().all(|b| b.records <= 2_000 && !b.limited), "{quiet:#?}");
        let rates: Vec<f64> = quiet.iter().filter_map(|b| b.rate).collect();
        assert!(rates[0] >= 0.9 * 100e3, "{rates:?}");
        assert!(rates.windows(2).all(|w| w[1] >= w[0]), "{rates:?}");
        assert!(c.rate().unwrap() >= rates[0]);
    }

    #[test]
    fn the_output_stays_within_the_limits_on_every_timeline() {
        let limits = [
            Limits { max_rate: Some(50e3), min_rate: 8.0 },
            Limits { max_rate: None, min_rate: 30e3 },
            Limits { max_rate: Some(25e3), min_rate: 25e3 },
        ];
        let timelines = [
            first_start(10e3),
            first_start(500e3),
            capacity_drop(),
            capacity_rise(),
            spike(),
            executors_away(),
            noisy(0.3, 1),
        ];
        for limits in limits {
            for timeline in &timelines {
                let mut c = RateController::new(Duration::from_secs(1), limits);
                let run = simulate(&mut c, timeline);
                for rate in run.batches.iter().filter_map(|b| b.rate) {
                    let max = limits.max_rate.unwrap_or(f64::INFINITY);
                    assert!((limits.min_rate..=max).contains(&rate), "{rate} out of {limits:?}");
                }
            }
        }
    }

    #[test]
    fn an_executor_outage_costs_at_most_one_half_batch() {
        let run = weir(&executors_away());
        let rates: Vec<_> = run.after(30.0).filter_map(|b| b.rate).collect();
        // The first batch waited for the executors: not a queue. The second waited behind it:
        // a queue, answered once, by half.
        assert!(rates.iter().all(|&r| r >= 0.45 * 100e3), "{rates:?}");
        assert!(rates.iter().filter(|&&r| r < 0.9 * 100e3).count() <= 1, "{rates:?}");
        assert!(run.after(35.0).all(|b| b.delay < 1e-6), "{run:#?}");
    }

    // ---- Side by side with Spark's PID estimator ----

    #[test]
    fn drains_a_spike_no_slower_than_spark() {
        for (timeline, end, arrival) in [(spike(), 15.0, 30e3), (quiet_then_spike(), 25.0, 2e3)] {
            let (weir, spark) = (weir(&timeline), spark(&timeline));
            let (w, s) = (weir.drained_after(end, arrival), spark.drained_after(end, arrival));
            assert!(w <= s, "weir {w} s, spark {s} s");
        }
    }

    #[test]
    fn uses_a_capacity_rise_in_fewer_batches_than_spark() {
        let timeline = capacity_rise();
        let w = weir(&timeline).batches_until_rate(20.0, 0.9 * 100e3);
        let s = spark(&timeline).batches_until_rate(20.0, 0.9 * 100e3);
        assert!(w < s, "weir {w}, spark {s}");
    }

    #[test]
    fn recovers_from_an_executor_outage_faster_than_spark() {
        let timeline = executors_away();
        let w = weir(&timeline).drained_after(30.0, 50e3);
        let s = spark(&timeline).drained_after(30.0, 50e3);
        assert!(w < s, "weir {w} s, spark {s} s");
        let spark_low =
            spark(&timeline).after(30.0).filter_map(|b| b.rate).fold(f64::MAX, f64::min);
        assert_eq!(spark_low, SparkPid::MIN_RATE, "Spark's delay term hits its floor");
    }

    #[test]
    fn converges_on_a_first_start_sooner_than_spark() {
        for initial_rate in [10e3, 500e3] {
            let timeline = first_start(initial_rate);
            let (weir, spark) = (weir(&timeline), spark(&timeline));
            let (w, s) = (weir.batches_until_rate(0.0, 90e3), spark.batches_until_rate(0.0, 90e3));
            assert!(w < s, "initial {initial_rate}: batches to 90%: weir {w}, spark {s}");
            assert!(fits_from(&weir, FITS) <= fits_from(&spark, ROUGHLY_FITS));
            assert!(weir.records() > spark.records());
        }
    }

    #[test]
    fn under_noise_queues_less_than_spark_for_a_little_throughput() {
        // The honest trade: Weir gives back half of any queue at once, Spark a fifth.
        for noise in [0.1, 0.2] {
            let (mut w, mut s) = ((0, 0.0), (0, 0.0));
            for seed in 1..=10 {
                let (weir, spark) = (weir(&noisy(noise, seed)), spark(&noisy(noise, seed)));
                w = (w.0 + weir.records(), w.1 + weir.total_delay());
                s = (s.0 + spark.records(), s.1 + spark.total_delay());
            }
            assert!(w.1 < 0.9 * s.1, "noise {noise}: delay weir {} spark {}", w.1, s.1);
            assert!(w.0 as f64 > 0.97 * s.0 as f64, "noise {noise}: weir {} spark {}", w.0, s.0);
        }
    }

    /// The numbers quoted in docs/flow-control.md (the assertions are in the tests above):
    /// `cargo test -p weir-driver --lib rate::tests::comparison_table -- --nocapture`
    #[test]
    fn comparison_table() {
        let both = |t: &Timeline| (weir(t), spark(t));
        for initial in [10e3, 500e3] {
            let (w, s) = both(&first_start(initial));
            println!(
                "first start, initial {initial}/s: batches to 90% {} vs {}; fits from batch {} vs {}; \
                 records in 40 s {} vs {}",
                w.batches_until_rate(0.0, 90e3),
                s.batches_until_rate(0.0, 90e3),
                fits_from(&w, FITS),
                fits_from(&s, ROUGHLY_FITS),
                w.records(),
                s.records()
            );
        }
        let (w, s) = both(&capacity_drop());
        println!(
            "capacity drop: first fitting batch after the drop {:?} vs {:?}; records 10..60 s {} vs {}",
            w.after(10.0).position(|b| b.processing <= FITS),
            s.after(10.0).position(|b| b.processing <= ROUGHLY_FITS),
            w.after(10.0).map(|b| b.records).sum::<u64>(),
            s.after(10.0).map(|b| b.records).sum::<u64>()
        );
        let (w, s) = both(&capacity_rise());
        println!(
            "capacity rise: batches to 90% {} vs {}",
            w.batches_until_rate(20.0, 90e3),
            s.batches_until_rate(20.0, 90e3)
        );
        for (name, t, end, arrival) in
            [("spike", spike(), 15.0, 30e3), ("quiet then spike", quiet_then_spike(), 25.0, 2e3)]
        {
            let (w, s) = both(&t);
            println!(
                "{name}: drained {} s vs {} s after it",
                w.drained_after(end, arrival),
                s.drained_after(end, arrival)
            );
        }
        let (w, s) = both(&executors_away());
        let low = |r: &Run| r.after(30.0).filter_map(|b| b.rate).fold(f64::MAX, f64::min);
        println!(
            "outage: drained {} s vs {} s after it; lowest rate {:.0} vs {:.0}",
            w.drained_after(30.0, 50e3),
            s.drained_after(30.0, 50e3),
            low(&w),
            low(&s)
        );
        for noise in [0.1, 0.2, 0.3] {
            let (mut w, mut s) = ((0, 0.0), (0, 0.0));
            for seed in 1..=10 {
                let (weir, spark) = both(&noisy(noise, seed));
                w = (w.0 + weir.records(), w.1 + weir.total_delay());
                s = (s.0 + spark.records(), s.1 + spark.total_delay());
            }
            println!(
                "noise ±{noise}: records {} vs {} ({:+.2}%); total delay {:.1} s vs {:.1} s",
                w.0 / 10,
                s.0 / 10,
                (w.0 as f64 / s.0 as f64 - 1.0) * 100.0,
                w.1 / 10.0,
                s.1 / 10.0
            );
        }
    }
}
