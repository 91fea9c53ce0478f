//! apiguard: an API-security filter for Envoy and Istio, built as a proxy-wasm module.
//!
//! # Where to start
//! - [`config`] turns the plugin configuration (one JSON document) into an immutable [`config::Policy`]
//!   once, in `on_configure`; every error names the JSON path that is wrong.
//! - [`canonical`] puts a request path into the one canonical form rules, schemas and discovery match.
//! - [`route`] picks the first route rule that matches a request.
//! - [`jwt`] finds, parses and verifies JSON Web Tokens (no host calls: keys, clock and cache are passed in).
//! - [`pipeline`] combines these into one verdict per request, and [`refusal`] turns a refusal into the exact
//!   status, body and headers the client sees.
//! - [`host`] is the only module that talks to the proxy (proxy-wasm); it is compiled for `wasm32` only.
//!
//! # What apiguard does not do
//! - It never trusts keys carried in a token (`jwk`, `jku`, `x5u`, `x5c`): keys come only from configuration
//!   or from the configured JWKS endpoint.
//! - It does not decrypt JWE tokens (five segments are refused as malformed).
//!
//! # Panic policy
//! A panic inside the filter traps the VM and Envoy then fails traffic, so non-test code does not call
//! `unwrap`, `expect`, `panic!` or index slices unchecked (denied in `Cargo.toml`). Every bad input maps to a
//! documented response (`docs/responses.md`).
//!
//! # Input limits
//! Tokens longer than the provider's `max_token_bytes` (default 8 KiB) are refused before decoding; JWKS
//! documents longer than `max_jwks_bytes` (default 64 KiB) are refused; the verified-token cache holds at most
//! `cache.max_entries` tokens per worker.

pub mod apikey;
pub mod authz;
pub mod canonical;
pub mod config;
pub mod discovery;
pub mod exchange;
pub mod http_names;
pub mod json_text;
pub mod jwt;
pub mod media;
pub mod pipeline;
pub mod ratelimit;
pub mod reader;
pub mod redact;
pub mod refusal;
pub mod reply;
pub mod request;
pub mod route;
pub mod schema;
mod sorting;
pub mod store;
pub mod time;

#[cfg(target_arch = "wasm32")]
mod host;
