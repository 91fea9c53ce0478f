//! The process-wide key-value store every worker of one Envoy shares (proxy-wasm shared data), behind
//! a small fallible trait so that the logic using it runs in tests against [`memory::MemoryStore`].
//!
//! Shared data has compare-and-swap but no delete, no expiry and no create-if-absent: writing with a
//! CAS token to a key that does not exist yet always succeeds. Users of this trait create their keys
//! once (in `on_configure`) before relying on CAS.

/// Why a read or write failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Another writer changed the value since it was read: read again and retry.
    CasMismatch,
    /// Anything else the host reported.
    Host(String),
}

/// A value and the CAS token that must be presented to replace it.
pub type Versioned = (Option<Vec<u8>>, Option<u32>);

pub trait SharedStore {
    fn get(&self, key: &str) -> Result<Versioned, StoreError>;
    /// Writes `value`; with `cas: Some(token)`, only if the value is still the one read with that token.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// An in-process [`SharedStore`] with Envoy's semantics, for tests, benchmarks and fuzz targets (the one
/// copy they all share; unused by the filter itself, so the `.wasm` does not carry it).
pub mod memory {
    use super::{SharedStore, StoreError, Versioned};
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Shared data as Envoy implements it: a map of value and CAS token, one counter for all tokens.
    #[derive(Debug, Default)]
    pub struct MemoryStore {
        map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        next_cas: RefCell<u32>,
        pub writes: RefCell<usize>,
        /// Reads, as `writes` counts writes (each one a host call in Envoy).
        pub reads: RefCell<usize>,
    }

    impl SharedStore for MemoryStore {
        fn get(&self, key: &str) -> Result<Versioned, StoreError> {
            *self.reads.borrow_mut() += 1;
            Ok(match self.map.borrow().get(key) {
                Some((value, cas)) => (Some(value.clone()), Some(*cas)),
                None => (None, None),
            })
        }

        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            let mut map = self.map.borrow_mut();
            if let (Some(expected), Some((_, current))) = (cas.filter(|c| *c != 0), map.get(key)) {
                if expected != *current {
                    return Err(StoreError::CasMismatch);
                }
            }
            let mut next = self.next_cas.borrow_mut();
            // Token 0 means "no check": never hand it out.
            *next = next.wrapping_add(1).max(1);
            map.insert(key.to_string(), (value.to_vec(), *next));
            *self.writes.borrow_mut() += 1;
            Ok(())
        }
    }
}
