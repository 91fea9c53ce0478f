#![no_main]
//! `cargo +nightly fuzz run redact_encodings -- -dict=fuzz/dict/redact.dict`: see
//! `checks::redact_encodings` for the input format and the invariants.

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_targets/mod.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::redact_encodings(data));
