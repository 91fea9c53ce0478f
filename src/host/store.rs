//! [`SharedStore`] over proxy-wasm shared data.

use crate::store::{SharedStore, StoreError, Versioned};
use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

pub struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<Versioned, StoreError> {
        hostcalls::get_shared_data(key).map_err(host_error)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(host_error)
    }
}

fn host_error(status: Status) -> StoreError {
    match status {
        Status::CasMismatch => StoreError::CasMismatch,
        other => StoreError::Host(format!("{other:?}")),
    }
}
