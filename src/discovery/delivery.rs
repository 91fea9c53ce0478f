//! Delivery to the collector, as a pure state machine: a bounded queue of encoded batches, at most
//! one in flight, the oldest batches dropped past the byte cap, every drop counted. The host makes
//! the call (`dispatch_http_call`) and reports how it ended ([`Outcome`], and what the answer said:
//! [`Answer`]); traffic never waits for any of it.
//!
//! Retries follow OTLP/HTTP's rules: only 429, 502, 503 and 504 (and no answer at all) are
//! retried; any other status drops the batch at once. The wait is the exponential backoff with
//! jitter (between half and all of `base × 2^(failures-1)`, capped at `max_interval`), or the
//! collector's `Retry-After` when that is longer (at most [`MAX_RETRY_AFTER_MS`]). A 2xx answer
//! with an OTLP `partial_success` delivers the batch (OTLP forbids retrying it) and counts the
//! records the collector refused.
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

/// The longest `Retry-After` honoured (a collector cannot park a worker's queue for longer).
pub const MAX_RETRY_AFTER_MS: u64 = 3_600_000;

/// What the collector's answer said besides its status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Answer {
    /// `Retry-After` (delta-seconds), in milliseconds.
    pub retry_after_ms: Option<u64>,
    /// OTLP `partial_success.rejected_log_records` of a 2xx answer.
    pub rejected_records: u64,
}

/// Reads the answer of the collector: `retry_after` is the `Retry-After` header's value, `body`
/// the response body (only its `partialSuccess` / `partial_success` member is read, when it is
/// JSON). An HTTP-date `Retry-After` is not read (the backoff applies).
pub fn read_answer(retry_after: Option<&[u8]>, body: &[u8]) -> Answer {
    let retry_after_ms = retry_after
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|secs| secs.saturating_mul(1000).min(MAX_RETRY_AFTER_MS));
    let rejected_records = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let p = v
                .get("partialSuccess")
                .or_else(|| v.get("partial_success"))?;
            let n = p
                .get("rejectedLogRecords")
                .or_else(|| p.get("rejected_log_records"))?;
            n.as_u64()
                .or_else(|| n.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(0);
    Answer {
        retry_after_ms,
        rejected_records,
    }
}

/// The statuses OTLP/HTTP retries.
pub fn is_retryable(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
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
    /// Batches dropped: queue over its cap, refused (a status that is not retried), or out of
    /// attempts.
    pub batches_dropped: u64,
    pub endpoints_dropped: u64,
    /// Of the dropped batches, those the collector refused (a status other than 2xx, 429, 502,
    /// 503, 504).
    pub batches_rejected: u64,
    /// Log records a collector refused in an OTLP partial success (the batch counts as sent).
    pub records_rejected: u64,
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

    /// Records how the call `id` ended. Late or unknown ids are ignored. No jitter, no answer.
    pub fn finish(&mut self, id: u64, outcome: Outcome, now_ms: u64) {
        self.finish_with(id, outcome, Answer::default(), None, now_ms);
    }

    /// Records how the call `id` ended and what its answer said. `jitter` is a random draw (the
    /// worker's own generator): the backoff waits between half and all of its interval; `None`
    /// waits all of it.
    pub fn finish_with(
        &mut self,
        id: u64,
        outcome: Outcome,
        answer: Answer,
        jitter: Option<u64>,
        now_ms: u64,
    ) {
        let Some((pending, _)) = self.in_flight.take_if(|(p, _)| p.id == id) else {
            return;
        };
        match outcome {
            Outcome::Status(200..=299) => {
                self.stats.batches_sent += 1;
                self.stats.records_rejected += answer.rejected_records;
                self.failures = 0;
                self.next_attempt_ms = now_ms;
            }
            Outcome::Status(s) if !is_retryable(s) => {
                // The collector will not take this batch however often it is sent.
                self.stats.attempts_failed += 1;
                self.stats.batches_rejected += 1;
                self.drop_batch(&pending);
                self.next_attempt_ms = now_ms;
            }
            Outcome::Status(_) | Outcome::NoResponse => {
                self.stats.attempts_failed += 1;
                self.failures = self.failures.saturating_add(1);
                let wait = self
                    .backoff_ms(jitter)
                    .max(answer.retry_after_ms.unwrap_or(0));
                self.next_attempt_ms = now_ms.saturating_add(wait);
                if pending.attempts >= self.retry.max_attempts {
                    self.drop_batch(&pending);
                } else {
                    self.enqueue(pending, true);
                }
            }
        }
    }

    /// `base × 2^(failures-1)`, at most `max_interval`; with a `jitter` draw, between half and all
    /// of it ("equal jitter": proxies that failed together do not retry together).
    fn backoff_ms(&self, jitter: Option<u64>) -> u64 {
        let base = u64::try_from(self.retry.base_interval.as_millis()).unwrap_or(u64::MAX);
        let max = u64::try_from(self.retry.max_interval.as_millis()).unwrap_or(u64::MAX);
        let shift = self.failures.saturating_sub(1).min(32);
        let full = base.saturating_mul(1u64 << shift).min(max);
        match jitter {
            None => full,
            Some(draw) => {
                let half = full / 2;
                let spread = (u128::from(full - half) * u128::from(draw)) >> 64;
                half + u64::try_from(spread).unwrap_or(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> EncodedBatch {
        EncodedBatch {
            body: vec![b'x'; 10],
            endpoints: 2,
        }
    }

    fn retry() -> Retry {
        Retry {
            base_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(30),
            max_attempts: 5,
        }
    }

    #[test]
    fn only_429_502_503_504_and_no_answer_are_retried() {
        for status in [429, 502, 503, 504] {
            let mut o = Outbox::new(10_000, retry(), Duration::from_secs(2));
            o.push(batch());
            let id = o.start(0).unwrap_or(0);
            o.finish(id, Outcome::Status(status), 0);
            assert_eq!(o.queued(), 1, "{status} is retried");
            assert_eq!(o.stats().batches_dropped, 0);
        }
        for status in [400, 401, 408, 413, 500, 501, 505, 302] {
            let mut o = Outbox::new(10_000, retry(), Duration::from_secs(2));
            o.push(batch());
            let id = o.start(0).unwrap_or(0);
            o.finish(id, Outcome::Status(status), 0);
            assert_eq!(o.queued(), 0, "{status} is not retried");
            let s = o.stats();
            assert_eq!(
                (s.batches_dropped, s.batches_rejected, s.endpoints_dropped),
                (1, 1, 2)
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_when_longer_than_the_backoff() {
        let mut o = Outbox::new(10_000, retry(), Duration::from_secs(2));
        o.push(batch());
        let id = o.start(0).unwrap_or(0);
        let answer = read_answer(Some(b" 7 "), b"");
        assert_eq!(answer.retry_after_ms, Some(7_000));
        o.finish_with(id, Outcome::Status(503), answer, None, 0);
        assert_eq!(o.start(6_999), None);
        let id = o.start(7_000).unwrap_or(0);
        // Shorter than the backoff (2 s after a second failure): the backoff wins.
        o.finish_with(
            id,
            Outcome::Status(429),
            read_answer(Some(b"1"), b""),
            None,
            7_000,
        );
        assert_eq!(o.start(8_999), None);
        assert!(o.start(9_000).is_some());
        // An HTTP-date or garbage is not read; a huge value is capped.
        assert_eq!(
            read_answer(Some(b"Wed, 21 Oct 2015 07:28:00 GMT"), b"").retry_after_ms,
            None
        );
        assert_eq!(
            read_answer(Some(b"99999999999999"), b"").retry_after_ms,
            Some(MAX_RETRY_AFTER_MS)
        );
    }

    #[test]
    fn the_backoff_has_jitter_within_half_and_all_of_the_interval() {
        let o = Outbox::new(10_000, retry(), Duration::from_secs(2));
        let mut o = o;
        o.failures = 3; // 4 s
        assert_eq!(o.backoff_ms(None), 4_000);
        assert_eq!(o.backoff_ms(Some(0)), 2_000);
        assert_eq!(o.backoff_ms(Some(u64::MAX)), 3_999);
        assert_eq!(o.backoff_ms(Some(u64::MAX / 2)), 2_999);
        let mut seen = std::collections::BTreeSet::new();
        let mut x = 0x1234_5678_u64;
        for _ in 0..64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let w = o.backoff_ms(Some(x));
            assert!((2_000..4_000).contains(&w));
            seen.insert(w / 250);
        }
        assert!(seen.len() > 4, "spread over the interval: {seen:?}");
    }

    #[test]
    fn partial_success_delivers_and_counts_the_refused_records() {
        let mut o = Outbox::new(10_000, retry(), Duration::from_secs(2));
        o.push(batch());
        let id = o.start(0).unwrap_or(0);
        let answer = read_answer(
            None,
            br#"{"partialSuccess": {"rejectedLogRecords": "3", "errorMessage": "x"}}"#,
        );
        assert_eq!(answer.rejected_records, 3);
        o.finish_with(id, Outcome::Status(200), answer, None, 0);
        let s = o.stats();
        assert_eq!((s.batches_sent, s.records_rejected, o.queued()), (1, 3, 0));
        assert_eq!(
            read_answer(None, br#"{"partial_success": {"rejected_log_records": 2}}"#)
                .rejected_records,
            2
        );
        assert_eq!(read_answer(None, b"{}").rejected_records, 0);
        assert_eq!(read_answer(None, b"\x00garbage").rejected_records, 0);
    }
}
