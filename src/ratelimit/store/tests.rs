use super::*;
use crate::store::memory::MemoryStore;
use std::cell::{Cell, RefCell};

const NOW: u128 = 1_700_000_000_000 * gcra::NS_PER_MS;
const SEED: Seed = Seed(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);

fn table(size: u32) -> SlotTable {
    SlotTable::new("apiguard", "p", size)
}

fn take(t: &SlotTable, store: &dyn SharedStore, key: &str, rate: &Rate, now: u128) -> bool {
    t.decide(store, &SEED, key, rate, now, 8, true)
        .unwrap()
        .step
        .allowed
}

/// Slots that exist in shared data (the memory the table uses).
fn slots_in_use(t: &SlotTable, store: &MemoryStore) -> usize {
    let mut names: Vec<String> = (0..t.size()).map(|i| t.slot_name(i)).collect();
    names.push(t.overflow_name());
    names
        .iter()
        .filter(|n| store.get(n).unwrap().0.is_some())
        .count()
}

/// A store that lets a second writer act between a worker's read and its write, `conflicts`
/// times: the write then carries a stale CAS token, as when two Envoy workers race.
struct Interleaving<'a> {
    inner: &'a MemoryStore,
    conflicts: Cell<usize>,
    second_writer: RefCell<SecondWriter<'a>>,
}

type SecondWriter<'a> = Box<dyn FnMut(&MemoryStore) + 'a>;

impl<'a> Interleaving<'a> {
    fn new(
        inner: &'a MemoryStore,
        conflicts: usize,
        second_writer: impl FnMut(&MemoryStore) + 'a,
    ) -> Self {
        Interleaving {
            inner,
            conflicts: Cell::new(conflicts),
            second_writer: RefCell::new(Box::new(second_writer)),
        }
    }
}

impl SharedStore for Interleaving<'_> {
    fn get(&self, key: &str) -> Result<crate::store::Versioned, StoreError> {
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        if self.conflicts.get() > 0 {
            self.conflicts.set(self.conflicts.get() - 1);
            (self.second_writer.borrow_mut())(self.inner);
        }
        self.inner.set(key, value, cas)
    }
}

struct Broken;

impl SharedStore for Broken {
    fn get(&self, _: &str) -> Result<crate::store::Versioned, StoreError> {
        Err(StoreError::Host("BadArgument".into()))
    }
    fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), StoreError> {
        Err(StoreError::Host("BadArgument".into()))
    }
}

#[test]
fn one_key_gets_exactly_its_capacity() {
    let store = MemoryStore::default();
    let t = table(100);
    let rate = Rate::new(10, 60_000, 10);
    let allowed = (0..25)
        .filter(|_| take(&t, &store, "alice", &rate, NOW))
        .count();
    assert_eq!(allowed, 10);
}

#[test]
fn refused_and_peeked_requests_write_nothing() {
    let store = MemoryStore::default();
    let t = table(100);
    let rate = Rate::new(2, 60_000, 2);
    take(&t, &store, "alice", &rate, NOW);
    take(&t, &store, "alice", &rate, NOW);
    let writes = *store.writes.borrow();
    assert!(!take(&t, &store, "alice", &rate, NOW));
    let peek = t
        .decide(&store, &SEED, "bob", &rate, NOW, 8, false)
        .unwrap();
    assert!(peek.step.allowed);
    assert_eq!(*store.writes.borrow(), writes);
}

#[test]
fn a_second_writer_between_read_and_write_forces_a_retry_and_both_count() {
    let store = MemoryStore::default();
    let t = table(100);
    let rate = Rate::new(5, 60_000, 5);
    let other = t.clone();
    let racing = Interleaving::new(&store, 3, |inner| {
        assert!(take(&other, inner, "alice", &rate, NOW));
    });
    let outcome = t
        .decide(&racing, &SEED, "alice", &rate, NOW, 8, true)
        .unwrap();
    assert!(outcome.step.allowed);
    // Three conflicting writes, then ours: four of five used, one left.
    assert_eq!(outcome.step.remaining, 1);
    let retries = outcome
        .events
        .iter()
        .filter(|e| **e == SlotEvent::CasRetry)
        .count();
    assert_eq!(retries, 3);
    assert!(take(&t, &store, "alice", &rate, NOW));
    assert!(!take(&t, &store, "alice", &rate, NOW));
}

#[test]
fn two_workers_creating_the_same_slot_at_once_lose_no_update() {
    let store = MemoryStore::default();
    let t = table(100);
    let rate = Rate::new(3, 60_000, 3);
    let other = t.clone();
    // Both read "absent"; the other worker creates the slot first.
    let racing = Interleaving::new(&store, 1, |inner| {
        assert!(take(&other, inner, "alice", &rate, NOW));
    });
    let outcome = t
        .decide(&racing, &SEED, "alice", &rate, NOW, 8, true)
        .unwrap();
    assert!(outcome.step.allowed);
    assert!(outcome.events.contains(&SlotEvent::CasRetry));
    assert!(!outcome.events.contains(&SlotEvent::SlotCreated));
    assert!(take(&t, &store, "alice", &rate, NOW));
    assert!(!take(&t, &store, "alice", &rate, NOW));
}

#[test]
fn cas_retries_are_bounded_and_exhaustion_is_reported() {
    let store = MemoryStore::default();
    let t = table(100);
    let rate = Rate::new(1_000, 60_000, 1_000);
    let other = t.clone();
    let racing = Interleaving::new(&store, usize::MAX, |inner| {
        take(&other, inner, "alice", &rate, NOW);
    });
    assert_eq!(
        t.decide(&racing, &SEED, "alice", &rate, NOW, 5, true),
        Err(TableError::CasExhausted)
    );
}

#[test]
fn host_failures_are_reported_not_hidden() {
    let t = table(100);
    let rate = Rate::new(1, 1_000, 1);
    assert!(matches!(
        t.decide(&Broken, &SEED, "alice", &rate, NOW, 5, true),
        Err(TableError::Store(_))
    ));
}

#[test]
fn many_workers_interleaving_admit_exactly_the_budget() {
    let store = MemoryStore::default();
    let workers: Vec<SlotTable> = (0..8).map(|_| table(64)).collect();
    let rate = Rate::new(100, 60_000, 100);
    let allowed = Cell::new(0);
    for _ in 0..40 {
        for (w, t) in workers.iter().enumerate() {
            // Every write of this worker is preceded by another worker's request.
            let other = &workers[(w + 1) % workers.len()];
            let racing = Interleaving::new(&store, 1, |inner| {
                if take(other, inner, "shared", &rate, NOW) {
                    allowed.set(allowed.get() + 1);
                }
            });
            if take(t, &racing, "shared", &rate, NOW) {
                allowed.set(allowed.get() + 1);
            }
        }
    }
    assert_eq!(allowed.get(), 100);
}

#[test]
fn interleaved_workers_over_a_period_admit_the_budget_plus_the_refill() {
    let rate = Rate::new(100, 60_000, 100);
    let store = MemoryStore::default();
    let workers: Vec<SlotTable> = (0..4).map(|_| table(64)).collect();
    let allowed = Cell::new(0);
    for tick in 0..1_200u128 {
        let now = NOW + tick * 50 * gcra::NS_PER_MS;
        for (w, t) in workers.iter().enumerate() {
            let other = &workers[(w + 3) % workers.len()];
            let racing = Interleaving::new(&store, 1, |inner| {
                if take(other, inner, "k", &rate, now) {
                    allowed.set(allowed.get() + 1);
                }
            });
            if take(t, &racing, "k", &rate, now) {
                allowed.set(allowed.get() + 1);
            }
        }
    }
    // 100 at once, then one per 600 ms over the remaining 59.95 s: 99 more.
    assert_eq!(allowed.get(), 199);
}

#[test]
fn many_workers_taking_turns_admit_exactly_the_budget() {
    let store = MemoryStore::default();
    let workers: Vec<SlotTable> = (0..4).map(|_| table(16)).collect();
    let rate = Rate::new(50, 60_000, 50);
    let mut allowed = 0;
    for _ in 0..30 {
        for t in &workers {
            if take(t, &store, "k", &rate, NOW) {
                allowed += 1;
            }
        }
    }
    assert_eq!(allowed, 50);
}

#[test]
fn two_keys_never_share_a_budget_even_when_their_home_slots_collide() {
    let store = MemoryStore::default();
    // Four slots and four probes: every key fits, whatever its hash.
    let t = table(4);
    let rate = Rate::new(3, 60_000, 3);
    for key in ["a", "b", "c", "d"] {
        let allowed = (0..10)
            .filter(|_| take(&t, &store, key, &rate, NOW))
            .count();
        assert_eq!(allowed, 3, "key {key}");
    }
    for key in ["a", "b", "c", "d"] {
        assert!(!take(&t, &store, key, &rate, NOW), "key {key}");
    }
}

#[test]
fn a_full_table_sends_new_keys_to_one_shared_overflow_budget() {
    let store = MemoryStore::default();
    let t = table(2);
    let rate = Rate::new(2, 60_000, 2);
    take(&t, &store, "a", &rate, NOW);
    take(&t, &store, "b", &rate, NOW);
    let first = t.decide(&store, &SEED, "c", &rate, NOW, 8, true).unwrap();
    assert!(first.events.contains(&SlotEvent::Overflow));
    assert!(first.events.contains(&SlotEvent::SlotCreated));
    assert!(take(&t, &store, "d", &rate, NOW));
    assert!(!take(&t, &store, "e", &rate, NOW));
    // The tracked keys keep their own budgets.
    assert!(take(&t, &store, "a", &rate, NOW));
    assert!(!take(&t, &store, "a", &rate, NOW));
}

#[test]
fn a_stale_slot_is_reclaimed_by_a_new_key_with_a_full_budget() {
    let store = MemoryStore::default();
    let t = table(1);
    let rate = Rate::new(2, 1_000, 2);
    assert!(take(&t, &store, "a", &rate, NOW));
    // "a" is live: "b" overflows.
    let b = t.decide(&store, &SEED, "b", &rate, NOW, 8, true).unwrap();
    assert!(b.events.contains(&SlotEvent::Overflow));
    // A second later "a" has a full bucket again: its slot is stale.
    let later = NOW + gcra::NS_PER_SEC;
    let c = t.decide(&store, &SEED, "c", &rate, later, 8, true).unwrap();
    assert!(c.events.contains(&SlotEvent::SlotReclaimed));
    assert!(take(&t, &store, "c", &rate, later));
    assert!(!take(&t, &store, "c", &rate, later));
}

#[test]
fn memory_stays_bounded_by_the_table_whatever_the_number_of_keys() {
    let store = MemoryStore::default();
    let t = table(50);
    let rate = Rate::new(10, 60_000, 10);
    for i in 0..2_000 {
        take(&t, &store, &format!("client-{i}"), &rate, NOW + i as u128);
    }
    assert!(slots_in_use(&t, &store) <= 51);
    assert_eq!(slots_in_use(&t, &store), 51);
}

#[test]
fn a_key_found_beyond_a_slot_that_went_stale_keeps_its_state() {
    let store = MemoryStore::default();
    let t = table(1_000);
    let rate_short = Rate::new(1, 1_000, 1);
    let rate = Rate::new(2, 60_000, 2);
    // Find a key whose home slot equals "x"'s home, so it lands one slot further.
    let home = |k: &str| SEED.hash(k) % 1_000;
    let other = (0..100_000)
        .map(|i| format!("k{i}"))
        .find(|k| home(k) == home("x") && k != "x")
        .unwrap();
    assert!(take(&t, &store, "x", &rate_short, NOW));
    assert!(take(&t, &store, &other, &rate, NOW));
    assert!(take(&t, &store, &other, &rate, NOW));
    // "x" goes stale; "other" must still be found further on, with its budget spent.
    let later = NOW + 2 * gcra::NS_PER_SEC;
    assert!(!take(&t, &store, &other, &rate, later));
}

#[test]
fn a_slot_this_version_cannot_read_is_taken_over() {
    let store = MemoryStore::default();
    let t = table(1);
    store.set(&t.slot_name(0), b"garbage", None).unwrap();
    let rate = Rate::new(1, 1_000, 1);
    let outcome = t.decide(&store, &SEED, "a", &rate, NOW, 8, true).unwrap();
    assert!(outcome.step.allowed);
    assert!(outcome.events.contains(&SlotEvent::SlotReclaimed));
}

#[test]
fn slot_values_round_trip_and_hold_the_key() {
    let v = encode(u128::MAX - 5, None, "0:5:alice");
    assert_eq!(v.len(), SLOT_OVERHEAD + 9);
    assert_eq!(
        decode(&v),
        Some((u128::MAX - 5, Marks::default(), "0:5:alice"))
    );
    let marks = Marks {
        asked_ms: 7,
        over_until_ms: u64::MAX,
        quota: (10, 60),
    };
    let v = encode(u128::MAX - 5, Some(&marks), "0:5:alice");
    assert_eq!(v.len(), SLOT_OVERHEAD + MARKS_BYTES + 9);
    assert_eq!(decode(&v), Some((u128::MAX - 5, marks, "0:5:alice")));
    assert_eq!(decode(b"G1short"), None);
    assert_eq!(decode(b"G2short-but-longer-than-a-tat"), None);
    assert_eq!(decode(b""), None);
}

#[test]
fn a_stale_state_is_told_once_and_its_age_restarts() {
    let store = MemoryStore::default();
    let t = table(8).with_refresh(Some(1_000));
    let rate = Rate::new(100, 60_000, 100);
    let at = |ms: u128| NOW + ms * 1_000_000;
    // A new key's state is as fresh as its slot.
    let first = t.decide(&store, &SEED, "a", &rate, at(0), 8, true).unwrap();
    assert!(!first.stale);
    assert!(
        !t.decide(&store, &SEED, "a", &rate, at(999), 8, true)
            .unwrap()
            .stale
    );
    let old = t
        .decide(&store, &SEED, "a", &rate, at(1_000), 8, true)
        .unwrap();
    assert!(old.stale && old.step.allowed);
    assert!(
        !t.decide(&store, &SEED, "a", &rate, at(1_500), 8, true)
            .unwrap()
            .stale
    );
    // A peek says it but stores nothing.
    assert!(
        t.decide(&store, &SEED, "a", &rate, at(2_000), 8, false)
            .unwrap()
            .stale
    );
    assert!(
        t.decide(&store, &SEED, "a", &rate, at(2_000), 8, true)
            .unwrap()
            .stale
    );
    // Without refresh (tier local) nothing is ever stale.
    let local = table(8);
    assert!(
        !local
            .decide(&store, &SEED, "b", &rate, at(1_000_000), 8, true)
            .unwrap()
            .stale
    );
}

#[test]
fn a_remembered_over_limit_holds_until_it_ends_and_spends_nothing() {
    let store = MemoryStore::default();
    let t = table(8);
    let rate = Rate::new(100, 60_000, 100);
    let now_ms = u64::try_from(NOW / 1_000_000).unwrap();
    let marks = Marks {
        asked_ms: now_ms,
        over_until_ms: now_ms + 5_000,
        quota: (10, 60),
    };
    // A key without a slot of its own is not remembered.
    assert!(!t.remember(&store, &SEED, "a", &marks, NOW));
    t.decide(&store, &SEED, "a", &rate, NOW, 8, true).unwrap();
    assert!(t.remember(&store, &SEED, "a", &marks, NOW));
    let before = store.get(&t.slot_name(t.home(&SEED, "a"))).unwrap();
    let held = t
        .decide(&store, &SEED, "a", &rate, NOW + 4_999_000_000, 8, true)
        .unwrap();
    assert_eq!(held.marks, marks);
    assert_eq!(
        store.get(&t.slot_name(t.home(&SEED, "a"))).unwrap(),
        before,
        "nothing written"
    );
    let over = t
        .decide(&store, &SEED, "a", &rate, NOW + 5_000_000_000, 8, true)
        .unwrap();
    assert!(over.step.allowed);
    assert!(over.marks.over_until_ms <= now_ms + 5_000);
    // Another key is not touched.
    let other = t.decide(&store, &SEED, "b", &rate, NOW, 8, true).unwrap();
    assert_eq!(other.marks.over_until_ms, 0);
}

#[test]
fn slot_names_are_the_prefix_and_the_decimal_index() {
    let t = SlotTable::new("ag", "p", 10);
    for n in [0, 7, 10, 12345, u32::MAX] {
        assert_eq!(t.slot_name(n), format!("ag.rl.p.{n}"));
    }
    assert_eq!(t.overflow_name(), "ag.rl.p.overflow");
}
