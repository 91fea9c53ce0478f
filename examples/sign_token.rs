//! Signs demo tokens with the e2e fixture keys, and prints the JWKS that verifies them.
//!
//! ```text
//! cargo run --example sign_token -- jwks                       # public JWKS (rsa1, ec256, ec384, ed1)
//! cargo run --example sign_token -- sign RS256                 # valid for 10 minutes
//! cargo run --example sign_token -- sign ES256 --exp -60       # expired a minute ago
//! cargo run --example sign_token -- sign EdDSA --aud other.example --sub bob
//! cargo run --example sign_token -- sign RS256 --tamper        # one signature bit flipped
//! ```
//! Options of `sign`: `--iss`, `--aud`, `--sub`, `--scope` (strings), `--exp SECONDS` (relative to now), `--tamper`.
//! The keys are test fixtures (`tests/fixtures/e2e/`): never trust them anywhere else.

#[allow(
    dead_code,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "shared with the e2e tests, where a bad fixture should fail loudly"
)]
#[path = "../tests/common/token.rs"]
mod token;

use std::process::ExitCode;

use serde_json::json;
use token::{Alg, Keys};

fn usage() -> ExitCode {
    eprintln!(
        "usage: sign_token jwks | sign ALG [--iss S] [--aud S] [--sub S] [--scope S] [--exp SECONDS] [--tamper]\n\
         ALG: RS256, ES256, ES384, EdDSA, HS256"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let keys = Keys::load();
    match args.first().map(String::as_str) {
        Some("jwks") => {
            println!("{}", keys.jwks());
            ExitCode::SUCCESS
        }
        Some("sign") => {
            let Some(alg) = args.get(1).and_then(|a| Alg::parse(a)) else {
                return usage();
            };
            let good = token::good_claims();
            let Some(mut claims) = good.as_object().cloned() else {
                return usage();
            };
            let mut tamper = false;
            let mut rest = args.iter().skip(2);
            while let Some(flag) = rest.next() {
                match flag.as_str() {
                    "--tamper" => tamper = true,
                    "--iss" | "--aud" | "--sub" | "--scope" => {
                        let Some(value) = rest.next() else {
                            return usage();
                        };
                        claims.insert(flag.trim_start_matches("--").to_string(), json!(value));
                    }
                    "--exp" => {
                        let Some(secs) = rest.next().and_then(|v| v.parse::<i64>().ok()) else {
                            return usage();
                        };
                        claims.insert("exp".to_string(), json!(token::now() + secs));
                    }
                    _ => return usage(),
                }
            }
            let jwt = keys.sign(alg, &serde_json::Value::Object(claims));
            println!(
                "{}",
                if tamper {
                    token::tamper_signature(&jwt)
                } else {
                    jwt
                }
            );
            ExitCode::SUCCESS
        }
        _ => usage(),
    }
}
