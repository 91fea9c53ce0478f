//! The generic cell rate algorithm (GCRA), as pure arithmetic: one number of state per key, the
//! theoretical arrival time (TAT) of the next request at the sustained rate, in nanoseconds since
//! the Unix epoch. A bucket is full when its TAT is in the past, so a stale entry means the same as
//! no entry at all (which is what lets the slot table reclaim it).
//!
//! All arithmetic is in `u128` nanoseconds and saturates: limits up to `u64::MAX` requests per
//! period, and periods up to `u64::MAX` milliseconds, never overflow or panic.

/// Nanoseconds in a millisecond (the host clock's resolution).
pub const NS_PER_MS: u128 = 1_000_000;
/// Nanoseconds in a second.
pub const NS_PER_SEC: u128 = 1_000_000_000;

/// A compiled limit: `requests` per `period`, at most `capacity` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Nanoseconds between two requests at the sustained rate, rounded up, so that the limiter is
    /// never more generous than configured (the error is below one nanosecond per request).
    /// `None` when `requests` is 0: every request is refused.
    interval_ns: Option<u128>,
    /// The bucket depth: how many requests may pass at once after a quiet period.
    capacity: u64,
    /// The configured period, for the retry advice of a zero limit.
    period_ns: u128,
}

impl Rate {
    /// `requests` per `period_ms` milliseconds with a bucket of `capacity`. A zero `requests` or
    /// `capacity` refuses everything; a zero period is treated as one millisecond.
    pub fn new(requests: u64, period_ms: u64, capacity: u64) -> Rate {
        let period_ns = u128::from(period_ms.max(1)) * NS_PER_MS;
        let interval_ns =
            (requests > 0 && capacity > 0).then(|| period_ns.div_ceil(u128::from(requests)).max(1));
        Rate {
            interval_ns,
            capacity,
            period_ns,
        }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }
}

/// What one request finds, and the state to store if it passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub allowed: bool,
    /// Whether [`Step::new_tat_ns`] must be stored: always when allowed; when refused, only to
    /// record a TAT pulled back after the clock went backwards.
    pub write: bool,
    /// The TAT to store.
    pub new_tat_ns: u128,
    /// Requests that could still pass right now, after this one.
    pub remaining: u64,
    /// Nanoseconds until the bucket is full again.
    pub reset_ns: u128,
    /// Nanoseconds until one request may pass (0 when allowed).
    pub retry_after_ns: u128,
}

/// Decides one request against the stored `tat_ns` (0 for a key never seen) at `now_ns`.
///
/// A TAT further ahead than a full bucket allows can only come from a clock that went backwards
/// (on the host, or between two workers' reads): it is pulled back to "bucket empty now" and that
/// is stored, so after a backwards jump the key goes on at its sustained rate, measured in real
/// elapsed time, instead of being locked out until the clock catches up.
pub fn decide(rate: &Rate, tat_ns: u128, now_ns: u128) -> Step {
    let Some(interval) = rate.interval_ns else {
        return Step {
            allowed: false,
            write: false,
            new_tat_ns: tat_ns,
            remaining: 0,
            reset_ns: rate.period_ns,
            retry_after_ns: rate.period_ns,
        };
    };
    let tolerance = interval.saturating_mul(u128::from(rate.capacity));
    let ceiling = now_ns.saturating_add(tolerance);
    let clamped = tat_ns > ceiling;
    let tat = tat_ns.min(ceiling);
    let base = tat.max(now_ns);
    let new_tat = base.saturating_add(interval);
    let ahead = new_tat - now_ns;
    if ahead <= tolerance {
        Step {
            allowed: true,
            write: true,
            new_tat_ns: new_tat,
            remaining: u64::try_from((tolerance - ahead) / interval).unwrap_or(u64::MAX),
            reset_ns: ahead,
            retry_after_ns: 0,
        }
    } else {
        Step {
            allowed: false,
            write: clamped,
            new_tat_ns: tat,
            remaining: 0,
            reset_ns: base - now_ns,
            retry_after_ns: ahead - tolerance,
        }
    }
}

/// Whole seconds, rounded up: `retry-after` must never invite a client back too early.
pub fn ceil_secs(ns: u128) -> u64 {
    u64::try_from(ns.div_ceil(NS_PER_SEC)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u128 = 1_700_000_000_000 * NS_PER_MS;

    fn run(rate: &Rate, tat: &mut u128, now: u128) -> Step {
        let step = decide(rate, *tat, now);
        if step.write {
            *tat = step.new_tat_ns;
        }
        step
    }

    #[test]
    fn a_fresh_key_gets_exactly_its_capacity_at_once() {
        let rate = Rate::new(100, 60_000, 20);
        let mut tat = 0;
        let allowed = (0..50)
            .filter(|_| run(&rate, &mut tat, NOW).allowed)
            .count();
        assert_eq!(allowed, 20);
    }

    #[test]
    fn remaining_counts_down_to_zero_and_the_next_request_waits_one_interval() {
        let rate = Rate::new(10, 10_000, 3);
        let mut tat = 0;
        let remaining: Vec<u64> = (0..3)
            .map(|_| run(&rate, &mut tat, NOW).remaining)
            .collect();
        assert_eq!(remaining, vec![2, 1, 0]);
        let refused = run(&rate, &mut tat, NOW);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_ns, NS_PER_SEC);
        assert_eq!(refused.reset_ns, 3 * NS_PER_SEC);
        assert_eq!(ceil_secs(refused.retry_after_ns), 1);
    }

    #[test]
    fn time_refills_one_request_per_interval() {
        let rate = Rate::new(60, 60_000, 60);
        let mut tat = 0;
        for _ in 0..60 {
            assert!(run(&rate, &mut tat, NOW).allowed);
        }
        assert!(!run(&rate, &mut tat, NOW).allowed);
        assert!(!run(&rate, &mut tat, NOW + NS_PER_SEC - 1).allowed);
        assert!(run(&rate, &mut tat, NOW + NS_PER_SEC).allowed);
        assert!(!run(&rate, &mut tat, NOW + NS_PER_SEC).allowed);
        // Over a whole period after the burst: exactly one per second.
        let mut allowed = 0;
        for ms in (1_000..61_000).step_by(100) {
            if run(&rate, &mut tat, NOW + ms * NS_PER_MS).allowed {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 59);
    }

    #[test]
    fn a_zero_limit_refuses_everything_and_advises_one_period() {
        for rate in [Rate::new(0, 60_000, 10), Rate::new(10, 60_000, 0)] {
            let mut tat = 0;
            let step = run(&rate, &mut tat, NOW);
            assert!(!step.allowed);
            assert_eq!(ceil_secs(step.retry_after_ns), 60);
        }
    }

    #[test]
    fn huge_limits_never_overflow_and_always_allow() {
        let rate = Rate::new(u64::MAX, u64::MAX, u64::MAX);
        let mut tat = 0;
        for i in 0..1000 {
            let step = run(&rate, &mut tat, NOW + i);
            assert!(step.allowed);
            assert!(step.remaining > u64::MAX / 2);
        }
        let rate = Rate::new(1, u64::MAX, u64::MAX);
        let mut tat = 0;
        assert!(run(&rate, &mut tat, u128::from(u64::MAX)).allowed);
        let step = run(&rate, &mut tat, u128::MAX);
        assert!(step.allowed);
    }

    #[test]
    fn a_clock_that_jumps_back_grants_nothing_at_once_and_locks_out_for_one_interval_only() {
        let rate = Rate::new(10, 10_000, 10);
        let mut tat = 0;
        for _ in 0..10 {
            assert!(run(&rate, &mut tat, NOW).allowed);
        }
        let earlier = NOW - 3_600 * NS_PER_SEC;
        let step = run(&rate, &mut tat, earlier);
        assert!(!step.allowed, "a backwards jump must not refill the bucket");
        assert_eq!(step.retry_after_ns, NS_PER_SEC);
        assert!(run(&rate, &mut tat, earlier + NS_PER_SEC).allowed);
        assert!(!run(&rate, &mut tat, earlier + NS_PER_SEC).allowed);
    }

    #[test]
    fn only_allowed_requests_and_pulled_back_tats_are_written() {
        let rate = Rate::new(1, 1_000, 1);
        let allowed = decide(&rate, 0, NOW);
        assert!(allowed.allowed && allowed.write);
        let refused = decide(&rate, allowed.new_tat_ns, NOW);
        assert!(!refused.allowed && !refused.write);
        let pulled_back = decide(&rate, NOW + 3_600 * NS_PER_SEC, NOW);
        assert!(!pulled_back.allowed && pulled_back.write);
        assert_eq!(pulled_back.new_tat_ns, NOW + NS_PER_SEC);
    }

    #[test]
    fn a_clock_that_jumps_forward_finds_a_full_bucket_not_more() {
        let rate = Rate::new(5, 1_000, 5);
        let mut tat = 0;
        for _ in 0..5 {
            assert!(run(&rate, &mut tat, NOW).allowed);
        }
        let later = NOW + 86_400 * NS_PER_SEC;
        let allowed = (0..20)
            .filter(|_| run(&rate, &mut tat, later).allowed)
            .count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn a_rate_that_does_not_divide_the_period_is_never_exceeded() {
        let rate = Rate::new(3, 1_000, 1);
        let mut tat = 0;
        let mut allowed = 0;
        for ms in 0..10_000u128 {
            if run(&rate, &mut tat, NOW + ms * NS_PER_MS).allowed {
                allowed += 1;
            }
        }
        assert!(allowed <= 30, "allowed {allowed}");
        assert!(allowed >= 29, "allowed {allowed}");
    }
}
