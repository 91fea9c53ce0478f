//! Verified tokens remembered per worker, so that a repeated token costs a hash-map lookup instead of
//! a signature check. Keyed by the whole token string (a lookup compares the whole token, so two
//! tokens can never share an entry), bound to the provider and to the generation of its key set (a key
//! rotation invalidates), and never used outside the token's own `nbf`/`exp` window.
//!
//! Memory bound: at most `max_entries` entries; each holds the token (at most the provider's
//! `max_token_bytes`) and its decoded payload, so roughly `max_entries * 3 * max_token_bytes`.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// What a verified token leaves behind for the request: its claims, for headers and authorization.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    pub payload: Map<String, Value>,
    /// The payload segment as received, for `forward_payload_header`.
    pub payload_b64: String,
    /// Usable from this second (`nbf - skew`) ...
    pub valid_from: u64,
    /// ... until this second (`exp + skew`; `u64::MAX` without `exp`).
    pub valid_until: u64,
}

#[derive(Debug)]
struct Entry {
    provider: usize,
    key_generation: u64,
    token: Arc<VerifiedToken>,
}

/// A fast hash over 8-byte words (FxHash's mixing step). The default SipHash costs several
/// microseconds per lookup for a kilobyte token inside the VM; its protection against chosen collisions
/// is not needed here because only tokens that verified are ever inserted, so a client cannot fill the
/// table with keys of its choosing. A lookup still compares the whole token.
#[derive(Default)]
pub struct TokenHasher(u64);

impl Hasher for TokenHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for byte in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*byte)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Debug, Default)]
pub struct TokenCache {
    entries: HashMap<Box<str>, Entry, BuildHasherDefault<TokenHasher>>,
    max_entries: usize,
}

impl TokenCache {
    /// `max_entries == 0` disables the cache.
    pub fn new(max_entries: usize) -> Self {
        TokenCache {
            entries: HashMap::default(),
            max_entries,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The verified token, if this exact token was verified for this provider with this key-set
    /// generation and is still inside its validity window at `now`.
    pub fn get(
        &mut self,
        token: &str,
        provider: usize,
        key_generation: u64,
        now: u64,
    ) -> Option<Arc<VerifiedToken>> {
        let entry = self.entries.get(token)?;
        if entry.provider != provider || entry.key_generation != key_generation {
            return None;
        }
        if now > entry.token.valid_until {
            self.entries.remove(token);
            return None;
        }
        if now < entry.token.valid_from {
            return None;
        }
        Some(Arc::clone(&entry.token))
    }

    pub fn insert(
        &mut self,
        token: &str,
        provider: usize,
        key_generation: u64,
        verified: Arc<VerifiedToken>,
        now: u64,
    ) {
        if self.max_entries == 0 {
            return;
        }
        if self.entries.len() >= self.max_entries && !self.entries.contains_key(token) {
            self.entries.retain(|_, e| e.token.valid_until >= now);
            if self.entries.len() >= self.max_entries {
                // Still full of live tokens: drop an arbitrary one (the table must stay bounded; a
                // dropped token is only verified again).
                if let Some(victim) = self.entries.keys().next().cloned() {
                    self.entries.remove(&victim);
                }
            }
        }
        self.entries.insert(
            token.into(),
            Entry {
                provider,
                key_generation,
                token: verified,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(valid_from: u64, valid_until: u64) -> Arc<VerifiedToken> {
        Arc::new(VerifiedToken {
            payload: Map::new(),
            payload_b64: String::new(),
            valid_from,
            valid_until,
        })
    }

    #[test]
    fn a_cached_token_is_returned_inside_its_window_only() {
        let mut cache = TokenCache::new(10);
        cache.insert("t", 0, 1, verified(100, 200), 150);
        assert!(cache.get("t", 0, 1, 100).is_some());
        assert!(cache.get("t", 0, 1, 200).is_some());
        assert!(cache.get("t", 0, 1, 99).is_none());
        assert!(cache.get("t", 0, 1, 201).is_none());
        assert!(cache.is_empty(), "an expired entry is dropped when seen");
    }

    #[test]
    fn another_provider_or_a_new_key_generation_misses() {
        let mut cache = TokenCache::new(10);
        cache.insert("t", 0, 1, verified(0, u64::MAX), 0);
        assert!(cache.get("t", 1, 1, 5).is_none());
        assert!(cache.get("t", 0, 2, 5).is_none());
        assert!(cache.get("t2", 0, 1, 5).is_none());
    }

    #[test]
    fn the_table_never_grows_past_its_bound() {
        let mut cache = TokenCache::new(3);
        for i in 0..100 {
            cache.insert(&format!("token{i}"), 0, 1, verified(0, 1_000), 10);
            assert!(cache.len() <= 3);
        }
        assert!(
            cache.get("token99", 0, 1, 10).is_some(),
            "the newest token is kept"
        );
    }

    #[test]
    fn expired_entries_are_reclaimed_before_live_ones() {
        let mut cache = TokenCache::new(2);
        cache.insert("old", 0, 1, verified(0, 5), 0);
        cache.insert("live", 0, 1, verified(0, 1_000), 0);
        cache.insert("new", 0, 1, verified(0, 1_000), 10);
        assert!(cache.get("live", 0, 1, 10).is_some());
        assert!(cache.get("new", 0, 1, 10).is_some());
    }

    #[test]
    fn a_zero_bound_disables_the_cache() {
        let mut cache = TokenCache::new(0);
        cache.insert("t", 0, 1, verified(0, u64::MAX), 0);
        assert!(cache.get("t", 0, 1, 1).is_none());
    }
}
