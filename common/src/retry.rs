//! The one retry loop: exponential backoff with jitter, bounded by a total time, retrying only
//! errors that say they are retryable. Every wait-and-retry in Weir goes through here.

use std::fmt::Display;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use tokio::time::Instant;

/// Whether trying the same operation again may succeed.
pub trait Retryable {
    fn is_retryable(&self) -> bool;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// Give up once this much time has passed since the first attempt; `None` retries for ever.
    pub give_up_after: Option<Duration>,
}

impl Backoff {
    /// The delay before retry number `attempt` (1-based): `initial * 2^(attempt-1)`, capped at
    /// `max`, then scaled by a random factor in [0.5, 1.0) so that many clients spread out.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.max);
        let jitter = RandomState::new().hash_one(attempt) % 500;
        capped.mul_f64(0.5 + jitter as f64 / 1000.0)
    }
}

/// Runs `op` until it succeeds, fails with a non-retryable error, or `give_up_after` passes
/// (the last error is returned). Each retry is logged at WARN with `what` and the error.
pub async fn retry<T, E, F, Fut>(what: &str, policy: Backoff, mut op: F) -> Result<T, E>
where
    E: Retryable + Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if !e.is_retryable() => return Err(e),
            Err(e) => {
                attempt += 1;
                let delay = policy.delay(attempt);
                if let Some(limit) = policy.give_up_after
                    && started.elapsed() + delay > limit
                {
                    return Err(e);
                }
                tracing::warn!(attempt, retry_in = ?delay, error = %e, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[derive(Debug)]
    struct Failure(bool);
    impl Retryable for Failure {
        fn is_retryable(&self) -> bool {
            self.0
        }
    }
    impl Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "failure (retryable: {})", self.0)
        }
    }

    const POLICY: Backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
        give_up_after: Some(Duration::from_secs(10)),
    };

    #[test]
    fn delay_doubles_within_jitter_and_caps() {
        for attempt in 1..6 {
            let d = POLICY.delay(attempt);
            let full = Duration::from_millis(100 * (1 << (attempt - 1))).min(POLICY.max);
            assert!(d >= full / 2 && d < full, "attempt {attempt}: {d:?} vs {full:?}");
        }
        assert!(POLICY.delay(40) < POLICY.max);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success() {
        let calls = AtomicU32::new(0);
        let result = retry("op", POLICY, || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 { Err(Failure(true)) } else { Ok(7) }
        })
        .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_a_non_retryable_error() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry("op", POLICY, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Failure(false))
        })
        .await;
        assert!(!result.unwrap_err().0);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_deadline() {
        let started = Instant::now();
        let result: Result<(), _> = retry("op", POLICY, || async { Err(Failure(true)) }).await;
        assert!(result.is_err());
        let waited = started.elapsed();
        assert!(waited <= Duration::from_secs(10), "waited {waited:?}");
        assert!(waited >= Duration::from_secs(5), "gave up too early: {waited:?}");
    }
}
