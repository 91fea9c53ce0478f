//! The only module that talks to the proxy. It turns proxy-wasm callbacks into calls of the pure core
//! ([`crate::exchange`]) and carries out the host calls the core asks for.
//!
//! Request data (headers, bodies, properties) is read and written through [`abi`], which declares
//! those host calls itself: the SDK's `hostcalls` wrappers panic on any status they did not expect
//! and on header bytes that are not UTF-8, and a panic traps the VM. The SDK is still used for the
//! context traits and for calls whose inputs the filter controls (metrics, shared data, ticks,
//! outgoing HTTP calls, logging).
//!
//! Behaviour on host errors: reading request headers fails closed (the request is judged as if it had
//! no headers, so a protected route refuses it); a refusal that cannot be sent resets the stream; a
//! body that must be judged or rewritten but cannot be read or written resets the stream; a header
//! change that fails is logged; shared-data and metric errors are logged and otherwise ignored.

mod abi;
mod http;
mod metrics;
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
    abi::now_nanos().map_or(0, |nanos| nanos / 1_000_000)
}
