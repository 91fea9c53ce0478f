#![no_main]
//! `cargo +nightly fuzz run rls_proto`: see `checks::rls_proto` for the input format and the invariants.

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_targets/mod.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::rls_proto(data));
