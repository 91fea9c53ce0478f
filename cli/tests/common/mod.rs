//! Helpers for the `apiguard` binary's tests: run it, find the repository, Envoy and the module.
#![allow(dead_code, reason = "each test file uses a part of the helpers")]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (cli/ is one level down).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `../shared/conformance/` beside the checkout, read in place (as the root crate's tests do).
pub fn conformance(rel: &str) -> PathBuf {
    repo().join("../shared/conformance").join(rel)
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `apiguard ARGS` from the repository root.
pub fn apiguard(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_apiguard"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run apiguard");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `apiguard check --format json FILE`: the exit code and the findings.
pub fn check_json(file: &Path) -> (i32, Vec<serde_json::Value>) {
    let out = apiguard(&["check", "--format", "json", file.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: not JSON ({e}): {}{}",
            file.display(),
            out.stdout,
            out.stderr
        )
    });
    (
        out.code,
        doc["findings"].as_array().cloned().unwrap_or_default(),
    )
}

/// A scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("apiguard-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Envoy and the built filter, as the root crate's e2e tests find them (`APIGUARD_ENVOY`,
/// `APIGUARD_WASM`, else `.venv` and `target/`). A missing piece fails the test: never a silent pass.
pub fn envoy_and_wasm() -> (PathBuf, PathBuf) {
    let envoy = std::env::var_os("APIGUARD_ENVOY")
        .map(PathBuf::from)
        .or_else(|| {
            std::fs::read_dir(repo().join(".venv/lib"))
                .ok()?
                .filter_map(Result::ok)
                .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
                .find(|p| p.is_file())
        });
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| repo().join(d))
        .unwrap_or_else(|| repo().join("target"));
    let wasm = std::env::var_os("APIGUARD_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("wasm32-wasip1/release/apiguard.wasm"));
    match envoy {
        Some(e) if e.is_file() && wasm.is_file() => (e, wasm),
        _ => panic!("this test runs Envoy with the filter: APIGUARD_ENVOY and APIGUARD_WASM (or `make envoy build`) are needed; run `make test`"),
    }
}

/// `envoy --mode validate -c FILE`: whether Envoy accepts it, and its log.
pub fn envoy_validate(envoy: &Path, file: &Path) -> (bool, String) {
    let out = Command::new(envoy)
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "info",
            "-c",
        ])
        .arg(file)
        .output()
        .expect("run envoy");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), log)
}
