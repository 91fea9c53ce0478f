#![no_main]
//! `cargo +nightly fuzz run body_flow`: see `checks::body_flow` for the input format and the invariants.

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_targets/mod.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::body_flow(data));
