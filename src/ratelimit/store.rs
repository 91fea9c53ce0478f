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
/// Header of a stored slot: format name and version.
const MAGIC: [u8; 2] = *b"G1";
/// Bytes of a slot value besides the key: magic and a 16-byte TAT.
pub const SLOT_OVERHEAD: usize = 18;

/// One policy's slot table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotTable {
    /// `<name>.rl.<policy>.`
    prefix: String,
    size: u32,
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
}

enum Found {
    /// The key's own slot.
    Own {
        slot: String,
        cas: Option<u32>,
        tat: u128,
    },
    /// A slot the key may take: absent (`cas: None`) or stale.
    Free { slot: String, cas: Option<u32> },
}

impl SlotTable {
    pub fn new(namespace: &str, policy: &str, size: u32) -> SlotTable {
        SlotTable {
            prefix: format!("{namespace}.rl.{policy}."),
            size: size.max(1),
        }
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
    /// TAT pulled back after the clock went backwards (see [`gcra::decide`]).
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
        let home = u32::try_from(seed.hash(key) % u64::from(self.size)).unwrap_or(0);
        let mut events = Vec::new();
        for _ in 0..attempts.max(1) {
            let (slot, cas, tat, kind) = match self.probe(store, home, key, now_ns)? {
                Some(Found::Own { slot, cas, tat }) => (slot, cas, tat, None),
                Some(Found::Free { slot, cas }) => {
                    let kind = if cas.is_none() {
                        SlotEvent::SlotCreated
                    } else {
                        SlotEvent::SlotReclaimed
                    };
                    (slot, cas, 0, Some(kind))
                }
                None => {
                    if !events.contains(&SlotEvent::Overflow) {
                        events.push(SlotEvent::Overflow);
                    }
                    let slot = self.overflow_name();
                    let (value, cas) = store.get(&slot).map_err(store_error)?;
                    let tat = value.as_deref().and_then(decode).map_or(0, |(tat, _)| tat);
                    let created = value.is_none().then_some(SlotEvent::SlotCreated);
                    (slot, cas, tat, created)
                }
            };
            let step = gcra::decide(rate, tat, now_ns);
            if !step.write || !commit {
                return Ok(Outcome { step, events });
            }
            let token = Some(cas.unwrap_or(CREATE_TOKEN));
            match store.set(&slot, &encode(step.new_tat_ns, key), token) {
                Ok(()) => {
                    events.extend(kind);
                    return Ok(Outcome { step, events });
                }
                Err(StoreError::CasMismatch) => events.push(SlotEvent::CasRetry),
                Err(other) => return Err(store_error(other)),
            }
        }
        Err(TableError::CasExhausted)
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
                Some((tat, stored)) if stored == key => {
                    return Ok(Some(Found::Own { slot, cas, tat }));
                }
                Some((tat, _)) if tat > now_ns => {}
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

fn encode(tat_ns: u128, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(SLOT_OVERHEAD + key.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&tat_ns.to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out
}

fn decode(value: &[u8]) -> Option<(u128, &str)> {
    let rest = value.strip_prefix(&MAGIC)?;
    let (tat, key) = rest.split_first_chunk::<16>()?;
    Some((u128::from_le_bytes(*tat), std::str::from_utf8(key).ok()?))
}

#[cfg(test)]
mod tests;
