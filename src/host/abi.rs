//! The proxy-wasm host calls that carry request data, declared here so that none of them can panic.
//!
//! The SDK's wrappers (proxy-wasm 0.2.5) turn every status they did not expect into `panic!`, and
//! `get_map`, `get_map_value` and even `get_map_bytes` (for names) call `String::from_utf8(..).unwrap()`:
//! one header byte that is not UTF-8 traps the VM, and Envoy then fails the worker's traffic. Every
//! function here returns what the host said: statuses as [`HostError`], values as bytes. What a byte
//! means is decided by the pure core, never here.
//!
//! Memory: the host allocates returned data through the SDK's `proxy_on_memory_allocate` (a boxed
//! slice of exactly the requested size), so ownership is taken back with `Vec::from_raw_parts(p, n, n)`.

// The one place that declares host imports: the SDK's own wrappers panic (see above).
#![allow(unsafe_code)]

use crate::request::{encode_header_map, Headers};
use proxy_wasm::types::{BufferType, MapType};
use std::ptr::{null, null_mut};

/// A status other than `Ok` from the host (proxy-wasm ABI numbering), or data it sent malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
/// Not an ABI status: the host's serialized header map did not parse.
const MALFORMED: u32 = u32::MAX;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_add_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer: u32,
        start: usize,
        max_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_size: usize,
    ) -> u32;
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_close_stream(stream: u32) -> u32;
}

fn status(code: u32) -> Result<(), HostError> {
    if code == OK {
        Ok(())
    } else {
        Err(HostError(code))
    }
}

/// Takes ownership of data the host allocated in this VM (`None` for no data).
fn owned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: the host filled `data`/`size` with memory it obtained from `proxy_on_memory_allocate`,
    // which hands out a boxed slice of exactly `size` bytes; nobody else holds it.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// Every header of a map, names and values as bytes, in the host's order.
pub fn header_pairs(map: MapType) -> Result<Headers, HostError> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: out-pointers to locals; the host writes a pointer and a length.
    let code = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
    status(code)?;
    match owned(data, size) {
        None => Ok(Headers::default()),
        // Kept as the host wrote it: one buffer, not two allocations per header.
        Some(bytes) => Headers::from_wire(bytes).ok_or(HostError(MALFORMED)),
    }
}

/// One header's value (the first, as Envoy answers), `None` when absent.
pub fn header_value(map: MapType, name: &str) -> Result<Option<Vec<u8>>, HostError> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: `name` outlives the call; out-pointers to locals.
    let code = unsafe {
        proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    match code {
        OK => Ok(Some(owned(data, size).unwrap_or_default())),
        NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

/// Sets (replaces every copy of) a header, or removes it with `None`.
pub fn set_header(map: MapType, name: &str, value: Option<&[u8]>) -> Result<(), HostError> {
    // SAFETY: `name` and `value` outlive the call.
    let code = unsafe {
        match value {
            Some(v) => proxy_replace_header_map_value(
                map as u32,
                name.as_ptr(),
                name.len(),
                v.as_ptr(),
                v.len(),
            ),
            None => proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()),
        }
    };
    status(code)
}

/// Adds one more copy of a header.
pub fn add_header(map: MapType, name: &str, value: &[u8]) -> Result<(), HostError> {
    // SAFETY: `name` and `value` outlive the call.
    let code = unsafe {
        proxy_add_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    };
    status(code)
}

/// Up to `max` bytes of a buffer from its start (empty when the host has none).
pub fn buffer(buffer: BufferType, max: usize) -> Result<Vec<u8>, HostError> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: out-pointers to locals.
    let code = unsafe { proxy_get_buffer_bytes(buffer as u32, 0, max, &mut data, &mut size) };
    match code {
        OK => Ok(owned(data, size).unwrap_or_default()),
        NOT_FOUND => Ok(Vec::new()),
        other => Err(HostError(other)),
    }
}

/// Replaces the first `len` bytes of a buffer with `bytes`.
pub fn set_buffer(buffer: BufferType, len: usize, bytes: &[u8]) -> Result<(), HostError> {
    // SAFETY: `bytes` outlives the call.
    let code =
        unsafe { proxy_set_buffer_bytes(buffer as u32, 0, len, bytes.as_ptr(), bytes.len()) };
    status(code)
}

/// Answers the request locally (Envoy sends it after the callback returns).
pub fn send_response(
    status_code: u16,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> Result<(), HostError> {
    let headers = encode_header_map(headers);
    // SAFETY: every pointer is to a live local for the duration of the call.
    let code = unsafe {
        proxy_send_local_response(
            u32::from(status_code),
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    };
    status(code)
}

/// A property such as `source.address`, as bytes.
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
    let mut serialized = Vec::new();
    for part in path {
        serialized.extend_from_slice(part.as_bytes());
        serialized.push(0);
    }
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: `serialized` outlives the call; out-pointers to locals.
    let code =
        unsafe { proxy_get_property(serialized.as_ptr(), serialized.len(), &mut data, &mut size) };
    match code {
        OK => Ok(owned(data, size)),
        NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

/// The host's clock, in nanoseconds since the Unix epoch.
pub fn now_nanos() -> Result<u64, HostError> {
    let mut nanos = 0u64;
    // SAFETY: out-pointer to a local.
    let code = unsafe { proxy_get_current_time_nanoseconds(&mut nanos) };
    status(code).map(|()| nanos)
}

/// Resets the HTTP stream (both directions).
pub fn reset_stream() -> Result<(), HostError> {
    // SAFETY: no pointers. Stream type 0 is the HTTP request stream; Envoy resets the whole stream.
    status(unsafe { proxy_close_stream(0) })
}

/// Resumes a request paused in its headers callback (the SDK's `resume_http_request` panics on
/// any status but Ok).
pub fn resume_request() -> Result<(), HostError> {
    // SAFETY: no pointers. 0 is `StreamType::HttpRequest`.
    status(unsafe { proxy_continue_stream(0) })
}

/// Records a value in a histogram metric (the SDK's `record_metric` panics on unexpected statuses).
pub fn record_metric(metric_id: u32, value: u64) -> Result<(), HostError> {
    // SAFETY: no pointers.
    status(unsafe { proxy_record_metric(metric_id, value) })
}
