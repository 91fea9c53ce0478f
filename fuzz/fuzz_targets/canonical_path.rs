#![no_main]
//! `cargo +nightly fuzz run canonical_path`: see `checks::canonical_path` for the input format and the
//! invariants.

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_targets/mod.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::canonical_path(data));
