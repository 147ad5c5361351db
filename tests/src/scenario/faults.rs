//! What a scenario does to its job: the kinds of [`Fault`], the [`Schedule`] that lists them,
//! and the seeded randomness ([`XorShift64`], [`chaos_seed`]) that picks faults, targets and gaps
//! so that a failing run can repeat its choices.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The variable that fixes the random seed.
pub const SEED_VARIABLE: &str = "WEIR_CHAOS_SEED";

/// One fault. Each leaves the job with every process running again (a paused executor is
/// resumed and must find its way back by itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` of a random executor; the same name is started again after
    /// [`EXECUTOR_DOWN`](super::EXECUTOR_DOWN).
    KillExecutor,
    /// `SIGSTOP` of a random executor for [`PAUSE`](super::PAUSE), then `SIGCONT`.
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
    /// These faults in this order, [`FIXED_GAP`](super::FIXED_GAP) apart.
    Faults(Vec<Fault>),
    /// `count` faults of random kinds, 1–2.5 s apart. `seed: None` takes `WEIR_CHAOS_SEED`, or
    /// the clock.
    Random {
        count: usize,
        seed: Option<u64>,
    },
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
}
