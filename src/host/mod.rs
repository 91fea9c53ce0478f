//! The only module that talks to the proxy. It turns proxy-wasm callbacks into calls of the pure core
//! and carries out what the core decides. Host calls go through `proxy_wasm::hostcalls` (which return
//! `Result`) rather than the SDK's trait helpers (which unwrap, and a panic traps the VM).
//!
//! Behaviour on host errors: reading request headers fails closed (the request is judged as if it had
//! no headers, so a protected route refuses it); a refusal that cannot be sent resets the stream; a
//! header change that fails is logged; shared-data and metric errors are logged and otherwise ignored.

mod http;
mod metrics;
mod request;
mod root;
mod store;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::ApiGuardRoot::default())
    });
}}

/// Unix time in milliseconds from the host clock (0 if the host cannot tell, which makes every token
/// look not-yet-valid rather than forever valid).
pub(crate) fn now_ms() -> u64 {
    proxy_wasm::hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
