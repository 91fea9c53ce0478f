use super::*;
use crate::config::Policy;
use crate::store::memory::MemoryStore;
use serde_json::json;

/// Times start here: shared state reads 0 as "never fetched".
const T0: u64 = 1_000_000;

const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","kid":"abc","x":"EB54wykhS7YJFD6RYJNnwbWEz3cI7CF5bCDTXlrwI5k","y":"92bCBTvMFQ8lKbS2MbgjT3YfmYo6HnPEE2tsAqWUJw8"}]}"#;

fn policy() -> Policy {
    Policy::from_value(&json!({"jwt_providers": {"idp": {"remote_jwks": {
        "cluster": "jwks", "uri": "http://idp/keys", "timeout": "2s", "cache_duration": "100s",
        "retry": {"base_interval": "1s", "max_interval": "8s"}, "refetch_on_unknown_kid": "10s"
    }}}}))
    .unwrap()
}

fn ok() -> FetchResult {
    FetchResult::Response {
        status: 200,
        body: JWKS.as_bytes().to_vec(),
    }
}

fn workers(n: u64, store: &MemoryStore) -> Vec<JwksCoordinator> {
    let policy = policy();
    (0..n)
        .map(|id| {
            let c = policy.jwks_coordinator(id + 1);
            c.ensure_shared_records(store).unwrap();
            c
        })
        .collect()
}

#[test]
fn one_worker_fetches_and_every_other_worker_installs_the_same_keys() {
    let store = MemoryStore::default();
    let mut ws = workers(3, &store);
    let orders: Vec<_> = ws
        .iter_mut()
        .map(|w| w.on_tick(&store, T0 + 1_000))
        .collect();
    assert_eq!(
        orders.iter().map(Vec::len).sum::<usize>(),
        1,
        "exactly one worker wins the lease"
    );
    assert_eq!(orders[0][0].path, "/keys");
    assert_eq!(orders[0][0].cluster, "jwks");
    assert_eq!(orders[0][0].authority, "idp");

    assert_eq!(
        ws[0].on_fetch_done(&store, 0, T0 + 1_100, ok()),
        FetchOutcome::Installed { keys: 1 }
    );
    assert!(
        ws[1].keys(0).is_none(),
        "others learn of it on their next tick"
    );
    for w in ws.iter_mut() {
        assert!(
            w.on_tick(&store, T0 + 2_000).is_empty(),
            "nobody fetches again while the keys are fresh"
        );
        assert!(w.keys(0).is_some());
    }
}

#[test]
fn a_request_can_pull_keys_another_worker_fetched_without_waiting_for_a_tick() {
    let store = MemoryStore::default();
    let mut ws = workers(2, &store);
    let _ = ws[0].on_tick(&store, T0);
    ws[0].on_fetch_done(&store, 0, T0 + 10, ok());
    ws[1].sync(&store, 0);
    assert!(ws[1].keys(0).is_some());
}

/// The same key under another `kid`: a different key set.
fn rotated() -> FetchResult {
    FetchResult::Response {
        status: 200,
        body: JWKS.replace("\"abc\"", "\"rotated\"").into_bytes(),
    }
}

#[test]
fn keys_are_refreshed_before_they_expire_and_the_generation_moves_when_they_change() {
    let store = MemoryStore::default();
    let mut ws = workers(2, &store);
    let _ = ws[0].on_tick(&store, T0);
    ws[0].on_fetch_done(&store, 0, T0, ok());
    let (_, gen1) = ws[0].keys(0).unwrap();
    assert!(ws[0].on_tick(&store, T0 + 79_999).is_empty());
    let orders = ws[1].on_tick(&store, T0 + 80_000);
    assert_eq!(orders.len(), 1, "refresh at 80% of cache_duration");
    ws[1].on_fetch_done(&store, 0, T0 + 80_100, rotated());
    let _ = ws[0].on_tick(&store, T0 + 80_200);
    assert!(
        ws[0].keys(0).unwrap().1 > gen1,
        "the refreshed keys void older cached verifications"
    );
}

#[test]
fn a_refresh_that_brings_the_same_keys_keeps_the_generation_on_every_worker() {
    let store = MemoryStore::default();
    let mut ws = workers(2, &store);
    let _ = ws[0].on_tick(&store, T0);
    ws[0].on_fetch_done(&store, 0, T0, ok());
    let _ = ws[1].on_tick(&store, T0 + 10);
    let gens: Vec<u64> = ws.iter().map(|w| w.keys(0).unwrap().1).collect();
    // The same document, and the same keys written differently (members reordered, spaces).
    let reordered = FetchResult::Response {
        status: 200,
        body: br#"{"keys":[ {"kid":"abc","kty":"EC","alg":"ES256","crv":"P-256","y":"92bCBTvMFQ8lKbS2MbgjT3YfmYo6HnPEE2tsAqWUJw8","x":"EB54wykhS7YJFD6RYJNnwbWEz3cI7CF5bCDTXlrwI5k"} ]}"#.to_vec(),
    };
    assert_eq!(ws[1].on_tick(&store, T0 + 80_000).len(), 1);
    ws[1].on_fetch_done(&store, 0, T0 + 80_100, ok());
    let _ = ws[0].on_tick(&store, T0 + 80_200);
    assert_eq!(ws[0].on_tick(&store, T0 + 160_200).len(), 1);
    ws[0].on_fetch_done(&store, 0, T0 + 160_300, reordered);
    let _ = ws[1].on_tick(&store, T0 + 160_400);
    let after: Vec<u64> = ws.iter().map(|w| w.keys(0).unwrap().1).collect();
    assert_eq!(after, gens);
}

#[test]
fn forged_kids_cannot_make_fetches_more_often_than_the_bound_nor_move_the_generation() {
    let store = MemoryStore::default();
    let mut ws = workers(3, &store);
    let _ = ws[0].on_tick(&store, T0);
    ws[0].on_fetch_done(&store, 0, T0, ok());
    for w in ws.iter_mut() {
        let _ = w.on_tick(&store, T0 + 1);
    }
    let gens: Vec<u64> = ws.iter().map(|w| w.keys(0).unwrap().1).collect();
    // 60 s (less than the 80 s refresh) of forged tokens on every worker, ticking every 100 ms.
    let mut fetches = 0;
    let mut now = T0 + 100;
    while now < T0 + 60_000 {
        for w in ws.iter_mut() {
            w.note_unknown_kid(0);
            for order in w.on_tick(&store, now) {
                fetches += 1;
                let _ = w.on_fetch_done(&store, order.provider, now + 50, ok());
            }
        }
        now += 100;
    }
    // refetch_on_unknown_kid is 10 s: at most one fetch per 10 s for the whole Envoy.
    assert!(fetches <= 6, "{fetches} fetches in 60 s");
    assert!(
        fetches >= 5,
        "the bound still lets rotated keys in: {fetches}"
    );
    let after: Vec<u64> = ws.iter().map(|w| w.keys(0).unwrap().1).collect();
    assert_eq!(after, gens, "identical keys keep every cached verification");
}

#[test]
fn failures_back_off_exponentially_up_to_the_cap() {
    let store = MemoryStore::default();
    let mut ws = workers(1, &store);
    let mut now = T0;
    let mut delays = Vec::new();
    for _ in 0..6 {
        // Tick until the back-off allows the next attempt.
        let mut tries = 0;
        while ws[0].on_tick(&store, now).is_empty() {
            now += 100;
            tries += 1;
            assert!(tries < 1_000, "a retry must come");
        }
        match ws[0].on_fetch_done(&store, 0, now, FetchResult::NoResponse) {
            FetchOutcome::Failed { retry_in_ms, .. } => delays.push(retry_in_ms),
            other => panic!("{other:?}"),
        }
    }
    for pair in delays[..4].windows(2) {
        assert!(
            pair[1] * 10 >= pair[0] * 16,
            "roughly doubling until the cap: {delays:?}"
        );
    }
    assert!(
        delays[3..].iter().all(|d| (6_400..=8_000).contains(d)),
        "capped with jitter: {delays:?}"
    );
    assert!(delays[0] >= 800 && delays[0] <= 1_000, "{delays:?}");
    assert!(
        *delays.last().unwrap() <= 8_000 && *delays.last().unwrap() >= 6_400,
        "{delays:?}"
    );
    assert!(ws[0].keys(0).is_none());
}

#[test]
fn bad_answers_are_failures_and_keep_the_last_good_keys() {
    let store = MemoryStore::default();
    let mut ws = workers(1, &store);
    let _ = ws[0].on_tick(&store, T0);
    ws[0].on_fetch_done(&store, 0, T0, ok());
    let bad = [
        FetchResult::Response {
            status: 503,
            body: JWKS.as_bytes().to_vec(),
        },
        FetchResult::Response {
            status: 200,
            body: b"<html>".to_vec(),
        },
        FetchResult::Response {
            status: 200,
            body: br#"{"keys":[]}"#.to_vec(),
        },
        FetchResult::Response {
            status: 200,
            body: vec![b' '; 64 * 1024 + 1],
        },
    ];
    let mut now = T0 + 80_000;
    for result in bad {
        while ws[0].on_tick(&store, now).is_empty() {
            now += 500;
        }
        assert!(matches!(
            ws[0].on_fetch_done(&store, 0, now, result),
            FetchOutcome::Failed { .. }
        ));
        assert!(ws[0].keys(0).is_some(), "the last good keys stay in use");
    }
}

#[test]
fn an_unknown_kid_refetches_but_not_more_often_than_configured() {
    let store = MemoryStore::default();
    let mut ws = workers(1, &store);
    let _ = ws[0].on_tick(&store, T0);
    ws[0].on_fetch_done(&store, 0, T0, ok());
    ws[0].note_unknown_kid(0);
    assert!(
        ws[0].on_tick(&store, T0 + 5_000).is_empty(),
        "within refetch_on_unknown_kid of the last fetch"
    );
    assert_eq!(ws[0].on_tick(&store, T0 + 10_000).len(), 1);
}

#[test]
fn a_lease_held_by_a_silent_worker_expires() {
    let store = MemoryStore::default();
    let mut ws = workers(2, &store);
    assert_eq!(ws[0].on_tick(&store, T0).len(), 1);
    // Worker 0 never reports back.
    assert!(ws[1].on_tick(&store, T0 + 2_999).is_empty());
    assert_eq!(
        ws[1].on_tick(&store, T0 + 3_001).len(),
        1,
        "lease = timeout + margin"
    );
}

#[test]
fn the_state_record_round_trips_and_garbage_is_rejected() {
    let s = FetchState {
        holder: 7,
        lease_until_ms: 8,
        failures: 9,
        next_attempt_ms: 10,
        doc_fetched_at_ms: 11,
    };
    assert_eq!(FetchState::decode(&s.encode()), Some(s));
    for bad in [
        &b""[..],
        b"v1",
        b"v2 1 2 3 4 5",
        b"v1 1 2 3 4 5 6",
        b"v1 a 2 3 4 5",
        b"\xff",
    ] {
        assert_eq!(FetchState::decode(bad), None);
    }
}
