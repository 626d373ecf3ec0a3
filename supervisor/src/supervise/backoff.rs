//! Restart delays: exponential from `minBackoff` to `maxBackoff`. A helper that ran long
//! enough to count as healthy starts over at the minimum; one that keeps crashing is still
//! restarted, every `maxBackoff`.

use std::time::Duration;

use crate::config::RestartPolicy;

/// A run at least this long (or `maxBackoff`, if longer) clears the failure count.
const HEALTHY_RUN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RestartPolicy,
    failures: u32,
}

impl Backoff {
    pub fn new(policy: RestartPolicy) -> Backoff {
        Backoff {
            policy,
            failures: 0,
        }
    }

    /// The delay before restarting a helper that just exited after running for `ran_for`.
    pub fn next_delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= HEALTHY_RUN.max(self.policy.max_backoff) {
            self.failures = 0;
        }
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        let delay = self
            .policy
            .min_backoff
            .checked_mul(factor)
            .map_or(self.policy.max_backoff, |d| d.min(self.policy.max_backoff));
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// Consecutive quick exits so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min_ms: u64, max_ms: u64) -> RestartPolicy {
        RestartPolicy {
            min_backoff: Duration::from_millis(min_ms),
            max_backoff: Duration::from_millis(max_ms),
        }
    }

    #[test]
    fn doubles_up_to_the_maximum_and_stays_there() {
        let mut b = Backoff::new(policy(100, 1000));
        let quick = Duration::from_millis(5);
        let delays: Vec<u128> = (0..8).map(|_| b.next_delay(quick).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
        for _ in 0..100 {
            assert_eq!(b.next_delay(quick), Duration::from_millis(1000));
        }
        assert_eq!(b.failures(), 108);
    }

    #[test]
    fn a_healthy_run_resets() {
        let mut b = Backoff::new(policy(100, 1000));
        for _ in 0..5 {
            b.next_delay(Duration::ZERO);
        }
        assert_eq!(
            b.next_delay(Duration::from_secs(10)),
            Duration::from_millis(100)
        );
        assert_eq!(b.next_delay(Duration::ZERO), Duration::from_millis(200));
        // With a long maxBackoff, "healthy" means outliving it.
        let mut b = Backoff::new(policy(1000, 60_000));
        for _ in 0..3 {
            b.next_delay(Duration::ZERO);
        }
        assert_eq!(
            b.next_delay(Duration::from_secs(30)),
            Duration::from_secs(8)
        );
        assert_eq!(
            b.next_delay(Duration::from_secs(60)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let mut b = Backoff::new(policy(10, 3_600_000));
        b.failures = u32::MAX - 1;
        assert_eq!(b.next_delay(Duration::ZERO), Duration::from_secs(3600));
        assert_eq!(b.next_delay(Duration::ZERO), Duration::from_secs(3600));
    }
}
