//! What one worker VM keeps between requests, and the few things it lends each request.

use crate::config::Policy;
use crate::discovery::DiscoveryWorker;
use crate::jwt::cache::TokenCache;
use crate::jwt::jwks_state::JwksCoordinator;
use crate::jwt::keys::KeySet;
use crate::pipeline::KeyLookup;
use crate::ratelimit::Seed;
use crate::store::SharedStore;
use std::rc::Rc;
use std::sync::Arc;

/// One VM's state: built in `on_configure`, lent to every request of that VM.
pub struct Worker {
    pub policy: Rc<Policy>,
    pub cache: TokenCache,
    pub jwks: JwksCoordinator,
    /// The rate limiter's slot seed, agreed by every VM through shared data.
    pub seed: Option<Seed>,
    /// This VM's discovery table and collector outbox, when discovery is configured.
    pub discovery: Option<DiscoveryWorker>,
    /// Lines that traffic can cause go through here (see [`LogLimiter`]).
    pub logs: LogLimiter,
}

impl Worker {
    pub fn new(policy: Rc<Policy>, jwks: JwksCoordinator) -> Worker {
        Worker {
            cache: TokenCache::new(policy.jwt_cache_max_entries),
            jwks,
            seed: None,
            discovery: None,
            logs: LogLimiter::default(),
            policy,
        }
    }
}

/// The pipeline's view of the worker's remote keys; another worker may have fetched them since this
/// one's last tick, so a miss looks at shared data once.
pub(crate) struct Keys<'a> {
    pub jwks: &'a mut JwksCoordinator,
    pub store: &'a dyn SharedStore,
}

impl KeyLookup for Keys<'_> {
    fn remote_keys(&mut self, provider: usize) -> Option<(Arc<KeySet>, u64)> {
        if let Some(found) = self.jwks.keys(provider) {
            return Some(found);
        }
        self.jwks.sync(self.store, provider);
        self.jwks.keys(provider)
    }
}

/// At most [`LogLimiter::BURST`] lines at once and [`LogLimiter::PER_SECOND`] a second on average for
/// lines that requests cause (refusals in report mode, host errors): a client cannot flood the
/// proxy's log. What was left out is counted (`log_suppressed`) and said in the next line written.
#[derive(Debug, Clone, Default)]
pub struct LogLimiter {
    /// Lines that may still be written, in thousandths (refilled continuously).
    credit_milli: u64,
    last_ms: u64,
    started: bool,
    suppressed: u64,
}

/// Whether to write a line, and how many were left out before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Write { suppressed_before: u64 },
    Suppress,
}

impl LogLimiter {
    pub const BURST: u64 = 20;
    pub const PER_SECOND: u64 = 5;

    pub fn admit(&mut self, now_ms: u64) -> Admit {
        if !self.started {
            self.started = true;
            self.credit_milli = Self::BURST * 1000;
            self.last_ms = now_ms;
        }
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.credit_milli = self
            .credit_milli
            .saturating_add(elapsed.saturating_mul(Self::PER_SECOND))
            .min(Self::BURST * 1000);
        if self.credit_milli < 1000 {
            self.suppressed = self.suppressed.saturating_add(1);
            return Admit::Suppress;
        }
        self.credit_milli -= 1000;
        Admit::Write {
            suppressed_before: std::mem::take(&mut self.suppressed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_lines_is_cut_to_the_burst_and_then_the_rate() {
        let mut limiter = LogLimiter::default();
        let written = (0..1000)
            .filter(|_| matches!(limiter.admit(5_000), Admit::Write { .. }))
            .count();
        assert_eq!(written as u64, LogLimiter::BURST);
        // One second later: PER_SECOND more, and the first says how many were left out.
        assert_eq!(
            limiter.admit(6_000),
            Admit::Write {
                suppressed_before: 1000 - LogLimiter::BURST
            }
        );
        let more = (0..100)
            .filter(|_| matches!(limiter.admit(6_000), Admit::Write { .. }))
            .count();
        assert_eq!(more as u64, LogLimiter::PER_SECOND - 1);
    }

    #[test]
    fn a_clock_that_goes_back_gives_no_extra_lines() {
        let mut limiter = LogLimiter::default();
        for _ in 0..LogLimiter::BURST {
            limiter.admit(10_000);
        }
        assert_eq!(limiter.admit(1_000), Admit::Suppress);
        assert_eq!(limiter.admit(10_000), Admit::Suppress);
    }
}
