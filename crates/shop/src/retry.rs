//! One retry schedule for everything that tries again: exponential from `base`,
//! capped, with "equal jitter" (half fixed, half random) so that many retries spread
//! out instead of arriving together.

use std::time::Duration;

/// The wait before attempt `attempt + 1` after `attempt` failures.
pub fn backoff(attempt: i64, base: Duration, cap: Duration) -> Duration {
    let base = base.as_millis().max(1) as u64;
    let exp = base.saturating_mul(1u64 << attempt.clamp(0, 20));
    let capped = exp.min(cap.as_millis().max(2) as u64);
    Duration::from_millis(capped / 2 + fastrand::u64(0..=capped / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped_with_jitter() {
        let (base, cap) = (Duration::from_secs(1), Duration::from_secs(300));
        for attempt in 0..40 {
            let d = backoff(attempt, base, cap).as_millis() as u64;
            let full = (1_000u64 << attempt.min(20)).min(300_000);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d}");
        }
    }
}
