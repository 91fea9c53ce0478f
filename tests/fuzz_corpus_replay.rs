//! Replays every seed file under `fuzz/corpus/<target>/` (the seeds committed to the repository; inputs
//! a fuzzing run keeps go to `fuzz/target/corpus-work/` and are not replayed) through the
//! same checks the `cargo +nightly fuzz` targets run (`tests/fuzz_targets/mod.rs`), on stable Rust,
//! so that `cargo test` catches a regression on every committed seed. A crash a fuzzing run finds is
//! added here as a seed once fixed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic fails the test"
)]

mod fuzz_targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus")
        .join(target)
}

#[test]
fn every_corpus_file_of_every_fuzz_target_passes_its_checks() {
    let mut failures = Vec::new();
    for (target, check) in fuzz_targets::TARGETS {
        let dir = corpus_dir(target);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
        let mut count = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            if !path.is_file() {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            count += 1;
            if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
                failures.push(path.display().to_string());
            }
        }
        assert!(
            count > 0,
            "no corpus files for fuzz target {target} in {}",
            dir.display()
        );
        eprintln!("fuzz target {target}: {count} corpus files replayed");
    }
    assert!(
        failures.is_empty(),
        "corpus files failing their check: {failures:#?}"
    );
}

/// The pipeline seeds are not all refused at the first stage: they reach authentication, the API
/// key, authorization, the rate limiter and the schema, and some pass.
#[test]
fn the_pipeline_seeds_reach_every_stage() {
    let mut outcomes = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(corpus_dir("pipeline")).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        outcomes.insert(fuzz_targets::pipeline_outcome(&data));
    }
    eprintln!("pipeline outcomes: {outcomes:?}");
    assert!(outcomes.contains("allowed"), "{outcomes:?}");
    assert!(outcomes.len() >= 6, "{outcomes:?}");
}

#[test]
fn the_pipeline_policy_of_the_fuzz_target_compiles() {
    // The other targets' fixed inputs are checked on first use; this one is worth its own name.
    apiguard::config::Policy::from_value(&fuzz_targets::pipeline_policy_json()).unwrap();
}

/// A stable-Rust stand-in for a fuzzing run of `canonical_path`: paths assembled from the pieces that
/// matter to canonicalisation (dots, escapes of dots and slashes, `;`, `\`, bad escapes, case) go
/// through the same check as the fuzz target.
#[test]
fn the_canonical_path_check_holds_for_generated_paths() {
    const PIECES: &[&str] = &[
        "/", "/", "/", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "\\", ";", ";x=1", "a", "A",
        "api", "API", "files", "Legacy", "users", "7", "orders", "static", "admin", "%", "%4",
        "%c0", "%ae", "%00", "%61", "%7e", "%25", "?", "#", "~", "\u{e9}",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = 1 + next() % 12;
        let mut input = vec![(next() % 4) as u8];
        if next() % 8 != 0 {
            input.push(b'/');
        }
        for _ in 0..len {
            let piece = PIECES[(next() % PIECES.len() as u64) as usize];
            input.extend_from_slice(piece.as_bytes());
        }
        if catch_unwind(AssertUnwindSafe(|| fuzz_targets::canonical_path(&input))).is_err() {
            panic!(
                "canonical_path check failed for {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}
