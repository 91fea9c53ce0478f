//! Delivery to the collector with a fake clock: retry with backoff when the collector is down,
//! slow or answers 5xx; recovery; refusal; oldest batches dropped past the cap; every drop counted.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic fails the test"
)]

mod discovery_common;

use apiguard::discovery::delivery::{Outbox, Outcome, Retry};
use apiguard::discovery::event::EncodedBatch;
use apiguard::discovery::DiscoveryWorker;
use discovery_common::*;
use serde_json::json;
use std::time::Duration;

fn batch(n: usize, endpoints: u64) -> EncodedBatch {
    EncodedBatch {
        body: vec![b'x'; n],
        endpoints,
    }
}

fn retry() -> Retry {
    Retry {
        base_interval: Duration::from_secs(1),
        max_interval: Duration::from_secs(8),
        max_attempts: 6,
    }
}

#[test]
fn a_down_collector_is_retried_with_exponential_backoff_then_the_batch_is_dropped() {
    let mut o = Outbox::new(10_000, retry(), Duration::from_secs(2));
    o.push(batch(100, 3));
    let mut now = 0;
    let mut attempts_at = Vec::new();
    while o.stats().batches_dropped == 0 && now < 100_000 {
        if let Some(id) = o.start(now) {
            attempts_at.push(now);
            o.finish(id, Outcome::NoResponse, now);
        }
        now += 100;
    }
    // 1 s, 2 s, 4 s, 8 s, then capped at 8 s.
    assert_eq!(attempts_at, vec![0, 1_000, 3_000, 7_000, 15_000, 23_000]);
    let s = o.stats();
    assert_eq!(
        (
            s.attempts_failed,
            s.batches_dropped,
            s.endpoints_dropped,
            s.batches_sent
        ),
        (6, 1, 3, 0)
    );
    assert_eq!(o.queued(), 0);
}

#[test]
fn the_collector_coming_back_delivers_the_backlog_and_resets_the_backoff() {
    let mut o = Outbox::new(10_000, retry(), Duration::from_secs(2));
    o.push(batch(10, 1));
    o.push(batch(10, 1));
    let id = o.start(0).unwrap();
    o.finish(id, Outcome::Status(503), 0);
    assert_eq!(o.start(999), None, "backing off");
    let id2 = o.start(1_000).unwrap();
    assert_eq!(id2, id, "the same (oldest) batch is retried first");
    o.finish(id2, Outcome::Status(429), 1_000);
    assert_eq!(o.start(2_999), None, "second failure doubles the wait");
    let id3 = o.start(3_000).unwrap();
    o.finish(id3, Outcome::Status(204), 3_000);
    // Recovered: the next batch goes at once, and one failure waits the base interval again.
    let next = o.start(3_000).unwrap();
    assert_ne!(next, id3);
    o.finish(next, Outcome::Status(502), 3_000);
    assert!(o.start(3_999).is_none());
    let again = o.start(4_000).unwrap();
    o.finish(again, Outcome::Status(200), 4_000);
    let s = o.stats();
    assert_eq!(
        (s.batches_sent, s.attempts_failed, s.batches_dropped),
        (2, 3, 0)
    );
}

#[test]
fn a_refusing_collector_drops_the_batch_at_once() {
    let mut o = Outbox::new(10_000, retry(), Duration::from_secs(2));
    o.push(batch(10, 7));
    o.push(batch(10, 1));
    let id = o.start(0).unwrap();
    o.finish(id, Outcome::Status(400), 0);
    let s = o.stats();
    assert_eq!(
        (s.batches_dropped, s.batches_rejected, s.endpoints_dropped),
        (1, 1, 7)
    );
    assert!(o.start(0).is_some(), "no backoff after a refusal");
}

#[test]
fn past_the_byte_cap_the_oldest_batches_are_dropped_and_counted() {
    let mut o = Outbox::new(1_000, retry(), Duration::from_secs(2));
    for i in 0..10 {
        o.push(batch(300, i));
    }
    // 3 × 300 fit in 1000; batches 0..=6 were dropped, oldest first.
    let s = o.stats();
    assert_eq!(s.batches_dropped, 7);
    assert_eq!(s.endpoints_dropped, (0..7).sum::<u64>());
    assert_eq!(s.queued_bytes, 900);
    o.push(batch(5_000, 42));
    assert_eq!(
        o.stats().batches_dropped,
        8,
        "a batch larger than the cap is dropped at once"
    );
    // The in-flight batch is not counted in the queue and survives pushes; a failed one goes back
    // to the front, where it is the oldest and dropped first if the queue overflows.
    let id = o.start(0).unwrap();
    o.push(batch(300, 1));
    assert_eq!(o.stats().batches_dropped, 8);
    o.finish(id, Outcome::NoResponse, 0);
    assert_eq!(o.stats().batches_dropped, 9);
    assert_eq!(o.stats().queued_bytes, 900);
}

#[test]
fn a_call_the_host_never_answers_is_given_up_and_late_answers_are_ignored() {
    let mut o = Outbox::new(10_000, retry(), Duration::from_secs(2));
    o.push(batch(10, 1));
    let id = o.start(0).unwrap();
    assert_eq!(o.start(8_999), None);
    // 2 × timeout + 5 s later the call counts as failed; the retry waits out the backoff.
    assert_eq!(o.start(9_000), None);
    assert_eq!(o.stats().attempts_failed, 1);
    let retried = o.start(10_000).unwrap();
    o.finish(id + 100, Outcome::Status(200), 10_000);
    assert_eq!(o.stats().batches_sent, 0, "unknown ids change nothing");
    o.finish(retried, Outcome::Status(200), 10_001);
    o.finish(retried, Outcome::Status(200), 10_002);
    assert_eq!(
        o.stats().batches_sent,
        1,
        "a second answer for one call counts once"
    );
}

#[test]
fn a_worker_flushes_on_its_tick_and_reports_drops_in_later_batches() {
    let d = discovery(json!({
        "flush_interval": "5s", "max_queue_bytes": 4096, "max_batch_bytes": 4096,
        "collector": {"cluster": "collector", "uri": "http://collector/v1/apiguard",
                      "retry": {"base_interval": "1s", "max_interval": "4s", "max_attempts": 100}}
    }));
    let mut w = DiscoveryWorker::new(&d, source(), 0);
    let mut now = 0;
    let mut sent_attempts = 0;
    // The collector is down for a minute; traffic keeps coming, every window makes a batch.
    while now < 60_000 {
        let path = format!("/items/{}/x{}", now, now / 5_000);
        w.record(&d, Exchange::get(&path).observe(&d), now);
        if let Some(id) = w.tick(&d, now) {
            assert!(w.callout(&d, id).is_some());
            sent_attempts += 1;
            w.finish_call(id, Outcome::NoResponse, now);
        }
        now += 250;
    }
    let s = w.stats();
    assert!(sent_attempts >= 10, "{sent_attempts}");
    assert!(s.delivery.batches_dropped > 0, "the cap forced drops");
    assert!(s.delivery.queued_bytes <= 4096);
    assert_eq!(s.delivery.batches_sent, 0);
    // The collector comes back: the backlog arrives, and carries the drop counters.
    w.flush(&d, now);
    let batches = deliver_all(&mut w, &d, now + 10_000);
    assert!(!batches.is_empty());
    let last = batches.last().unwrap();
    assert_eq!(last["dropped"], s.delivery.batches_dropped);
    assert_eq!(last["dropped_endpoints"], s.delivery.endpoints_dropped);
    let s2 = w.stats();
    assert_eq!(s2.delivery.batches_sent, batches.len() as u64);
    assert_eq!(
        s2.batches_built,
        s2.delivery.batches_sent + s2.delivery.batches_dropped
    );
}

#[test]
fn an_idle_worker_sends_nothing() {
    let d = discovery(json!({}));
    let mut w = DiscoveryWorker::new(&d, source(), 0);
    for t in (0..60_000).step_by(1_000) {
        assert_eq!(w.tick(&d, t), None);
    }
    assert_eq!(w.stats().batches_built, 0);
}
