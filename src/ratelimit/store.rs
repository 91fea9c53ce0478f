//! The slot table in shared data, and the compare-and-swap loop that makes each decision and its
//! update one atomic step across every worker of one Envoy.
//!
//! Shared data has no delete and no expiry, so a policy owns a fixed table of `max_keys` slots
//! (`<name>.rl.<policy>.<index>`) plus one overflow slot (`<name>.rl.<policy>.overflow`), created
//! lazily as keys arrive and never more. A key's home slot is `seed.hash(key) % max_keys`; it may
//! also live in the next [`PROBES`] - 1 slots. Each slot stores the key itself and its GCRA TAT:
//! - a slot holding the key is its state;
//! - a slot whose TAT is in the past holds a full bucket for another key: it is *stale*, and a new
//!   key may take it over (the old key loses nothing: a full bucket is what it would start with);
//! - a slot that does not exist yet ends the probe sequence (no key can live beyond it, since slots
//!   are never removed).
//!
//! When every probed slot holds a live bucket of another key, the request uses the overflow slot,
//! whose one budget all such keys share (counted as [`SlotEvent::Overflow`]): under a flood of
//! distinct keys, memory stays bounded and the newest keys are limited together.
//!
//! Shared data creates a key on any write, whatever CAS token is given, so creating a slot uses a
//! token that no existing slot can carry in practice ([`CREATE_TOKEN`]): when two workers create the
//! same slot at once, the second write meets an existing key and fails as a CAS mismatch, and that
//! worker reads again. Nothing has to be created in `on_configure`.

use super::gcra::{self, Rate, Step};
use super::key::Seed;
use crate::store::{SharedStore, StoreError};

/// Slots a key may occupy, starting at its home slot.
pub const PROBES: u32 = 4;
/// The CAS token used to create a slot. Envoy's CAS counter would have to land on exactly this
/// value for the same slot to be overwritten (about one chance in 2^32 per creation race).
pub const CREATE_TOKEN: u32 = u32::MAX;
/// Header of a stored slot: format name and version. `G1`: the TAT and the key; `G2` (tier
/// `local_then_service` only) also holds the key's [`Marks`].
const MAGIC: [u8; 2] = *b"G1";
const MAGIC_MARKS: [u8; 2] = *b"G2";
/// Bytes of a slot value besides the key: magic and a 16-byte TAT.
pub const SLOT_OVERHEAD: usize = 18;
/// Bytes a `G2` slot adds for its [`Marks`].
pub const MARKS_BYTES: usize = 24;

/// What a `local_then_service` key's slot remembers of the rate limit service (all zero for other
/// tiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Marks {
    /// When the service last decided the key, or the slot was taken (ms since the epoch): the age
    /// of the local state that `service.refresh` bounds.
    pub asked_ms: u64,
    /// Until when the service's `OVER_LIMIT` holds (ms; in the past: none).
    pub over_until_ms: u64,
    /// The service's limit with that `OVER_LIMIT`: requests per unit, unit in seconds (0: unknown).
    pub quota: (u32, u32),
}

/// One policy's slot table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotTable {
    /// `<name>.rl.<policy>.`
    prefix: String,
    size: u32,
    /// `local_then_service`: the age after which a key's local state is stale (`service.refresh`).
    refresh_ms: Option<u64>,
}

/// Something about the table worth counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotEvent {
    /// A slot was created in shared data (memory grew by one entry; at most `max_keys + 1` ever).
    SlotCreated,
    /// A stale slot was taken over by a new key.
    SlotReclaimed,
    /// Every probed slot was live with other keys: the shared overflow budget decided.
    Overflow,
    /// A write lost a CAS race and the decision was made again.
    CasRetry,
}

/// Why no decision could be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableError {
    /// Every attempt lost a CAS race.
    CasExhausted,
    /// The host refused a read or write.
    Store(String),
}

/// A decision and what happened on the way to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub step: Step,
    pub events: Vec<SlotEvent>,
    /// The key's marks as read (for a remembered `OVER_LIMIT`: nothing was written).
    pub marks: Marks,
    /// The local state was older than `refresh_ms`: the service must be asked (the stored marks
    /// now date from this request).
    pub stale: bool,
}

enum Found {
    /// The key's own slot.
    Own {
        slot: String,
        cas: Option<u32>,
        tat: u128,
        marks: Marks,
    },
    /// A slot the key may take: absent (`cas: None`) or stale.
    Free { slot: String, cas: Option<u32> },
}

impl SlotTable {
    pub fn new(namespace: &str, policy: &str, size: u32) -> SlotTable {
        SlotTable {
            prefix: format!("{namespace}.rl.{policy}."),
            size: size.max(1),
            refresh_ms: None,
        }
    }

    pub fn with_refresh(self, refresh_ms: Option<u64>) -> SlotTable {
        SlotTable { refresh_ms, ..self }
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    fn slot_name(&self, index: u32) -> String {
        // Without `format!`: this runs once per probe of every request.
        let mut name = String::with_capacity(self.prefix.len() + 10);
        name.push_str(&self.prefix);
        push_decimal(&mut name, index);
        name
    }

    fn overflow_name(&self) -> String {
        let mut name = String::with_capacity(self.prefix.len() + 8);
        name.push_str(&self.prefix);
        name.push_str("overflow");
        name
    }

    /// Decides one request for `key` and, when `commit` is true and the request passes, stores the
    /// new state with compare-and-swap, reading and deciding again after a lost race, at most
    /// `attempts` times. A refused request (or `commit: false`) writes nothing, except to record a
    /// TAT pulled back after the clock went backwards (see [`gcra::decide`]). A key whose marks
    /// hold a live `OVER_LIMIT` writes nothing either; with `refresh_ms`, an allowed request on a
    /// state older than that is `stale` and stores its time as the new age.
    #[allow(clippy::too_many_arguments)] // one call site; a struct would only rename these
    pub fn decide(
        &self,
        store: &dyn SharedStore,
        seed: &Seed,
        key: &str,
        rate: &Rate,
        now_ns: u128,
        attempts: u32,
        commit: bool,
    ) -> Result<Outcome, TableError> {
        let home = self.home(seed, key);
        let now_ms = u64::try_from(now_ns / gcra::NS_PER_MS).unwrap_or(u64::MAX);
        // A new key's state is as fresh as the slot.
        let fresh = Marks {
            asked_ms: now_ms,
            ..Marks::default()
        };
        let mut events = Vec::new();
        for _ in 0..attempts.max(1) {
            let (slot, cas, tat, marks, kind) = match self.probe(store, home, key, now_ns)? {
                Some(Found::Own {
                    slot,
                    cas,
                    tat,
                    marks,
                }) => (slot, cas, tat, marks, None),
                Some(Found::Free { slot, cas }) => {
                    let kind = if cas.is_none() {
                        SlotEvent::SlotCreated
                    } else {
                        SlotEvent::SlotReclaimed
                    };
                    (slot, cas, 0, fresh, Some(kind))
                }
                None => {
                    if !events.contains(&SlotEvent::Overflow) {
                        events.push(SlotEvent::Overflow);
                    }
                    let slot = self.overflow_name();
                    let (value, cas) = store.get(&slot).map_err(store_error)?;
                    // The overflow slot is shared: it never holds an `OVER_LIMIT` (see `remember`).
                    let (tat, marks) = value
                        .as_deref()
                        .and_then(decode)
                        .map_or((0, fresh), |(tat, marks, _)| (tat, marks));
                    let created = value.is_none().then_some(SlotEvent::SlotCreated);
                    (slot, cas, tat, marks, created)
                }
            };
            let step = gcra::decide(rate, tat, now_ns);
            let stale = step.allowed
                && self
                    .refresh_ms
                    .is_some_and(|r| now_ms.saturating_sub(marks.asked_ms) >= r);
            if marks.over_until_ms > now_ms || !step.write || !commit {
                return Ok(Outcome {
                    step,
                    events,
                    marks,
                    stale,
                });
            }
            let stored = if stale { fresh } else { marks };
            let token = Some(cas.unwrap_or(CREATE_TOKEN));
            let marks_kept = self.refresh_ms.map(|_| &stored);
            match store.set(&slot, &encode(step.new_tat_ns, marks_kept, key), token) {
                Ok(()) => {
                    events.extend(kind);
                    return Ok(Outcome {
                        step,
                        events,
                        marks,
                        stale,
                    });
                }
                Err(StoreError::CasMismatch) => events.push(SlotEvent::CasRetry),
                Err(other) => return Err(store_error(other)),
            }
        }
        Err(TableError::CasExhausted)
    }

    /// Stores `marks` (the service's `OVER_LIMIT`) in `key`'s own slot, keeping its TAT. A key
    /// without a slot of its own (in the shared overflow slot, or taken over) is not remembered:
    /// its next request asks the service again. Best effort: after a lost race or a host error the
    /// marks stay as they were (`false`), and the next request asks again.
    pub fn remember(
        &self,
        store: &dyn SharedStore,
        seed: &Seed,
        key: &str,
        marks: &Marks,
        now_ns: u128,
    ) -> bool {
        let Ok(Some(Found::Own { slot, cas, tat, .. })) =
            self.probe(store, self.home(seed, key), key, now_ns)
        else {
            return false;
        };
        store
            .set(&slot, &encode(tat, Some(marks), key), cas)
            .is_ok()
    }

    fn home(&self, seed: &Seed, key: &str) -> u32 {
        u32::try_from(seed.hash(key) % u64::from(self.size)).unwrap_or(0)
    }

    /// Looks for the key's slot, or the first slot it may take, along the probe sequence.
    fn probe(
        &self,
        store: &dyn SharedStore,
        home: u32,
        key: &str,
        now_ns: u128,
    ) -> Result<Option<Found>, TableError> {
        let mut free = None;
        for offset in 0..PROBES.min(self.size) {
            let index = u32::try_from((u64::from(home) + u64::from(offset)) % u64::from(self.size))
                .unwrap_or(0);
            let slot = self.slot_name(index);
            let (value, cas) = store.get(&slot).map_err(store_error)?;
            let Some(value) = value else {
                // Never written: the key cannot live further on.
                return Ok(Some(free.unwrap_or(Found::Free { slot, cas: None })));
            };
            // A value without a token cannot be replaced safely; the create token makes the
            // write fail as a race rather than overwrite blindly.
            let cas = Some(cas.unwrap_or(CREATE_TOKEN));
            match decode(&value) {
                Some((tat, marks, stored)) if stored == key => {
                    return Ok(Some(Found::Own {
                        slot,
                        cas,
                        tat,
                        marks,
                    }));
                }
                Some((tat, _, _)) if tat > now_ns => {}
                // Stale, or not a slot this version wrote: free to take.
                _ => {
                    if free.is_none() {
                        free = Some(Found::Free { slot, cas });
                    }
                }
            }
        }
        Ok(free)
    }
}

/// `n` in decimal, as `format!("{n}")` writes it.
fn push_decimal(out: &mut String, n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            // `rest % 10` < 10: the cast cannot truncate.
            *d = b'0' + (rest % 10) as u8;
        }
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for d in digits.get(at..).unwrap_or_default() {
        out.push(char::from(*d));
    }
}

fn store_error(e: StoreError) -> TableError {
    match e {
        StoreError::CasMismatch => TableError::CasExhausted,
        StoreError::Host(message) => TableError::Store(message),
    }
}

fn encode(tat_ns: u128, marks: Option<&Marks>, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(SLOT_OVERHEAD + MARKS_BYTES + key.len());
    out.extend_from_slice(if marks.is_some() {
        &MAGIC_MARKS
    } else {
        &MAGIC
    });
    out.extend_from_slice(&tat_ns.to_le_bytes());
    if let Some(m) = marks {
        out.extend_from_slice(&m.asked_ms.to_le_bytes());
        out.extend_from_slice(&m.over_until_ms.to_le_bytes());
        out.extend_from_slice(&m.quota.0.to_le_bytes());
        out.extend_from_slice(&m.quota.1.to_le_bytes());
    }
    out.extend_from_slice(key.as_bytes());
    out
}

fn decode(value: &[u8]) -> Option<(u128, Marks, &str)> {
    let (magic, rest) = value.split_first_chunk::<2>()?;
    let (tat, mut rest) = rest.split_first_chunk::<16>()?;
    let mut marks = Marks::default();
    match *magic {
        MAGIC => {}
        MAGIC_MARKS => {
            let (asked, more) = rest.split_first_chunk::<8>()?;
            let (over, more) = more.split_first_chunk::<8>()?;
            let (requests, more) = more.split_first_chunk::<4>()?;
            let (unit, key) = more.split_first_chunk::<4>()?;
            marks = Marks {
                asked_ms: u64::from_le_bytes(*asked),
                over_until_ms: u64::from_le_bytes(*over),
                quota: (u32::from_le_bytes(*requests), u32::from_le_bytes(*unit)),
            };
            rest = key;
        }
        _ => return None,
    }
    Some((
        u128::from_le_bytes(*tat),
        marks,
        std::str::from_utf8(rest).ok()?,
    ))
}

#[cfg(test)]
mod tests;
