//! Delivery to the collector, as a pure state machine: a bounded queue of encoded batches, at most
//! one in flight, retry with exponential backoff when the collector is down, slow or answers 5xx,
//! the oldest batches dropped past the byte cap, every drop counted. The host makes the call
//! (`dispatch_http_call`) and reports how it ended; traffic never waits for any of it.
//!
//! Memory: queued batches hold at most `max_queue_bytes`, plus the one in flight.

use super::event::{Counters, EncodedBatch};
use std::collections::VecDeque;
use std::time::Duration;

/// Retry policy for one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub base_interval: Duration,
    pub max_interval: Duration,
    /// Attempts per batch (the first included); then the batch is dropped and counted.
    pub max_attempts: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            base_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(30),
            max_attempts: 5,
        }
    }
}

/// How one call to the collector ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The collector answered with this status.
    Status(u16),
    /// No answer: timeout, reset, unknown cluster, or the host could not dispatch the call.
    NoResponse,
}

/// Delivery counters (all since the worker started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    pub batches_sent: u64,
    /// Attempts that failed (each retry that failed counts once).
    pub attempts_failed: u64,
    /// Batches dropped: queue over its cap, answered with a 4xx, or out of attempts.
    pub batches_dropped: u64,
    pub endpoints_dropped: u64,
    /// Of the dropped batches, those the collector refused (4xx other than 408 and 429).
    pub batches_rejected: u64,
    pub queued_bytes: u64,
}

#[derive(Debug)]
struct Pending {
    id: u64,
    batch: EncodedBatch,
    attempts: u32,
}

#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Pending>,
    queued_bytes: usize,
    max_queue_bytes: usize,
    in_flight: Option<(Pending, u64)>,
    next_attempt_ms: u64,
    /// Consecutive failures, for the backoff.
    failures: u32,
    retry: Retry,
    /// An in-flight call older than this is given up on (the host lost its answer).
    stale_after_ms: u64,
    next_id: u64,
    stats: DeliveryStats,
}

impl Outbox {
    /// `timeout` is the collector call's timeout; a call unanswered for twice that plus 5 s is
    /// counted as failed.
    pub fn new(max_queue_bytes: usize, retry: Retry, timeout: Duration) -> Outbox {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        Outbox {
            queue: VecDeque::new(),
            queued_bytes: 0,
            max_queue_bytes,
            in_flight: None,
            next_attempt_ms: 0,
            failures: 0,
            retry,
            stale_after_ms: timeout_ms.saturating_mul(2).saturating_add(5_000),
            next_id: 1,
            stats: DeliveryStats::default(),
        }
    }

    pub fn stats(&self) -> DeliveryStats {
        DeliveryStats {
            queued_bytes: self.queued_bytes as u64,
            ..self.stats
        }
    }

    /// The drop counters carried by the next batch.
    pub fn counters(&self) -> Counters {
        Counters {
            dropped_batches: self.stats.batches_dropped,
            dropped_endpoints: self.stats.endpoints_dropped,
        }
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn in_flight(&self) -> Option<u64> {
        self.in_flight.as_ref().map(|(p, _)| p.id)
    }

    fn drop_batch(&mut self, p: &Pending) {
        self.stats.batches_dropped += 1;
        self.stats.endpoints_dropped += p.batch.endpoints;
    }

    /// Queues a batch, dropping the oldest queued ones until it fits.
    pub fn push(&mut self, batch: EncodedBatch) {
        let pending = Pending {
            id: self.next_id,
            batch,
            attempts: 0,
        };
        self.next_id += 1;
        self.enqueue(pending, false);
    }

    fn enqueue(&mut self, pending: Pending, front: bool) {
        let size = pending.batch.body.len();
        if size > self.max_queue_bytes {
            self.drop_batch(&pending);
            return;
        }
        if front {
            self.queue.push_front(pending);
        } else {
            self.queue.push_back(pending);
        }
        self.queued_bytes += size;
        while self.queued_bytes > self.max_queue_bytes {
            let Some(oldest) = self.queue.pop_front() else {
                break;
            };
            self.queued_bytes = self.queued_bytes.saturating_sub(oldest.batch.body.len());
            self.drop_batch(&oldest);
        }
    }

    /// Starts the next call if one may start now: returns its id, and [`Outbox::body`] gives what
    /// to send. `None` while a call is in flight, while backing off, or with nothing queued.
    pub fn start(&mut self, now_ms: u64) -> Option<u64> {
        if let Some((pending, started)) = &self.in_flight {
            if now_ms.saturating_sub(*started) < self.stale_after_ms {
                return None;
            }
            let id = pending.id;
            self.finish(id, Outcome::NoResponse, now_ms);
        }
        if now_ms < self.next_attempt_ms {
            return None;
        }
        let mut pending = self.queue.pop_front()?;
        self.queued_bytes = self.queued_bytes.saturating_sub(pending.batch.body.len());
        pending.attempts += 1;
        let id = pending.id;
        self.in_flight = Some((pending, now_ms));
        Some(id)
    }

    /// The body of the call in flight with this id.
    pub fn body(&self, id: u64) -> Option<&[u8]> {
        match &self.in_flight {
            Some((p, _)) if p.id == id => Some(&p.batch.body),
            _ => None,
        }
    }

    /// Records how the call `id` ended. Late or unknown ids are ignored.
    pub fn finish(&mut self, id: u64, outcome: Outcome, now_ms: u64) {
        let Some((pending, _)) = self.in_flight.take_if(|(p, _)| p.id == id) else {
            return;
        };
        match outcome {
            Outcome::Status(200..=299) => {
                self.stats.batches_sent += 1;
                self.failures = 0;
                self.next_attempt_ms = now_ms;
            }
            Outcome::Status(s) if (400..500).contains(&s) && s != 408 && s != 429 => {
                // The collector will not take this batch however often it is sent.
                self.stats.attempts_failed += 1;
                self.stats.batches_rejected += 1;
                self.drop_batch(&pending);
                self.next_attempt_ms = now_ms;
            }
            Outcome::Status(_) | Outcome::NoResponse => {
                self.stats.attempts_failed += 1;
                self.failures = self.failures.saturating_add(1);
                self.next_attempt_ms = now_ms.saturating_add(self.backoff_ms());
                if pending.attempts >= self.retry.max_attempts {
                    self.drop_batch(&pending);
                } else {
                    self.enqueue(pending, true);
                }
            }
        }
    }

    /// `base × 2^(failures-1)`, at most `max_interval`.
    fn backoff_ms(&self) -> u64 {
        let base = u64::try_from(self.retry.base_interval.as_millis()).unwrap_or(u64::MAX);
        let max = u64::try_from(self.retry.max_interval.as_millis()).unwrap_or(u64::MAX);
        let shift = self.failures.saturating_sub(1).min(32);
        base.saturating_mul(1u64 << shift).min(max)
    }
}
