//! `ApiGuard`: one request's callbacks, handed to the pure [`Exchange`]. This file only translates:
//! proxy-wasm callbacks in, host calls out ([`HostStream`]), through the panic-free calls of
//! [`super::abi`].
//!
//! Holding headers: Envoy's Wasm filter turns a paused header callback into "stop everything", after
//! which no body callback arrives, unless the filter config has `allow_on_headers_stop_iteration: true`.
//! So by default request and response headers go on while apiguard buffers the body; with the policy's
//! `allow_on_headers_stop_iteration` (set it together with Envoy's field) they wait for the verdict.

use super::abi::{self, HostError};
use super::metrics::Metrics;
use super::root::Vm;
use super::store::HostStore;
use crate::discovery::observe::Side;
use crate::exchange::{Counter, Exchange, Flow, HostFault, StreamHost};
use crate::pipeline::Event;
use crate::ratelimit::service::proto::MAX_RESPONSE_BYTES;
use crate::ratelimit::service::{ServiceResult, METHOD_NAME, SERVICE_NAME};
use crate::reply::Reply;
use crate::request::Headers;
use crate::store::SharedStore;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

pub(super) struct ApiGuard {
    vm: Rc<RefCell<Vm>>,
    exchange: Exchange,
    /// The token of the rate limit service call this request waits for.
    service_call: Option<u32>,
}

impl ApiGuard {
    pub(super) fn new(vm: Rc<RefCell<Vm>>) -> Self {
        ApiGuard {
            vm,
            exchange: Exchange::new(),
            service_call: None,
        }
    }

    /// Runs one step of the exchange with the VM's worker state and the host.
    fn step(
        &mut self,
        f: impl FnOnce(&mut Exchange, &mut crate::exchange::Worker, &mut HostStream) -> Flow,
    ) -> Action {
        let vm = Rc::clone(&self.vm);
        let mut vm = vm.borrow_mut();
        let vm = &mut *vm;
        let mut host = HostStream {
            metrics: &vm.metrics,
            service_call: None,
        };
        let flow = f(&mut self.exchange, &mut vm.worker, &mut host);
        if let Some(token) = host.service_call {
            self.service_call = Some(token);
        }

        match flow {
            Flow::Continue => Action::Continue,
            Flow::Pause => Action::Pause,
        }
    }
}

/// `timed!(stage, self, step)`: the step; in the `stage-timing` build, also its in-VM time, added to
/// the stage's counters. Nothing at all in the shipped build.
#[cfg(not(feature = "stage-timing"))]
macro_rules! timed {
    ($stage:literal, $guard:expr, $step:expr) => {
        $step
    };
}

#[cfg(feature = "stage-timing")]
macro_rules! timed {
    ($stage:literal, $guard:expr, $step:expr) => {{
        let started = abi::now_nanos().unwrap_or(0);
        let action = $step;
        let nanos = abi::now_nanos().unwrap_or(0).saturating_sub(started);
        timing::record(&$guard.vm.borrow().worker.policy.name, $stage, nanos);
        action
    }};
}

impl Context for ApiGuard {
    /// The rate limit service answered (status 0, `response_size` bytes in the gRPC receive
    /// buffer) or the call ended with gRPC status `status_code` (4 at the timeout; 14 when the
    /// service is unreachable or the cluster does not speak HTTP/2).
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        if self.service_call != Some(token_id) {
            return;
        }
        self.service_call = None;
        let result = if status_code == 0 {
            // One byte over the decoder's limit is enough for it to refuse the message.
            let max = response_size.min(MAX_RESPONSE_BYTES + 1);
            match abi::buffer(BufferType::GrpcReceiveBuffer, max) {
                Ok(bytes) => ServiceResult::Reply(bytes),
                Err(e) => ServiceResult::Failed(e.0),
            }
        } else {
            ServiceResult::Failed(status_code)
        };
        if timed!(
            "service_response",
            self,
            self.step(|x, w, h| { x.on_service_response(w, h, result) })
        ) == Action::Continue
        {
            if let Err(e) = abi::resume_request() {
                log::warn!("cannot resume the request after the rate limit service: {e:?}");
            }
        }
    }
}

impl HttpContext for ApiGuard {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        timed!(
            "request_headers",
            self,
            self.step(|x, w, h| { x.on_request_headers(w, h, end_of_stream) })
        )
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        timed!(
            "request_body",
            self,
            self.step(|x, w, h| { x.on_request_body(w, h, body_size, end_of_stream) })
        )
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        timed!(
            "request_trailers",
            self,
            self.step(|x, w, h| x.on_request_trailers(w, h))
        )
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        timed!(
            "response_headers",
            self,
            self.step(|x, w, h| { x.on_response_headers(w, h, end_of_stream) })
        )
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        timed!(
            "response_body",
            self,
            self.step(|x, w, h| { x.on_response_body(w, h, body_size, end_of_stream) })
        )
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        timed!(
            "response_trailers",
            self,
            self.step(|x, w, h| x.on_response_trailers(w, h))
        )
    }

    fn on_log(&mut self) {
        timed!(
            "log",
            self,
            self.step(|x, w, h| {
                x.on_log(w, h);
                Flow::Continue
            })
        );
    }
}

/// The host calls of one request, over [`abi`].
struct HostStream<'a> {
    metrics: &'a Metrics,
    /// A rate limit service call started in this callback.
    service_call: Option<u32>,
}

fn fault(e: HostError) -> HostFault {
    HostFault(e.0)
}

fn headers(map: MapType) -> Result<Headers, HostFault> {
    abi::header_pairs(map).map_err(fault)
}

fn buffer(side: Side) -> BufferType {
    match side {
        Side::Request => BufferType::HttpRequestBody,
        Side::Response => BufferType::HttpResponseBody,
    }
}

fn map(side: Side) -> MapType {
    match side {
        Side::Request => MapType::HttpRequestHeaders,
        Side::Response => MapType::HttpResponseHeaders,
    }
}

impl StreamHost for HostStream<'_> {
    fn request_headers(&mut self) -> Result<Headers, HostFault> {
        headers(MapType::HttpRequestHeaders)
    }

    fn response_headers(&mut self) -> Result<Headers, HostFault> {
        headers(MapType::HttpResponseHeaders)
    }

    fn source_address(&mut self) -> Option<String> {
        abi::property(&["source", "address"])
            .ok()
            .flatten()
            .and_then(|bytes| String::from_utf8(bytes).ok())
    }

    fn body(&mut self, side: Side, max: usize) -> Result<Vec<u8>, HostFault> {
        abi::buffer(buffer(side), max).map_err(fault)
    }

    fn set_body(&mut self, side: Side, len: usize, bytes: &[u8]) -> Result<(), HostFault> {
        abi::set_buffer(buffer(side), len, bytes).map_err(fault)
    }

    fn set_header(
        &mut self,
        side: Side,
        name: &str,
        value: Option<&[u8]>,
    ) -> Result<(), HostFault> {
        abi::set_header(map(side), name, value).map_err(fault)
    }

    fn add_header(&mut self, side: Side, name: &str, value: &[u8]) -> Result<(), HostFault> {
        abi::add_header(map(side), name, value).map_err(fault)
    }

    fn send_reply(&mut self, reply: &Reply) -> Result<(), HostFault> {
        let headers: Vec<(&str, &[u8])> = reply
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_bytes()))
            .chain(
                reply
                    .extra_headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_bytes())),
            )
            .collect();
        abi::send_response(reply.status, &headers, reply.body.as_bytes()).map_err(fault)
    }

    fn reset(&mut self) {
        if let Err(e) = abi::reset_stream() {
            log::warn!("cannot reset the stream: {e:?}");
        }
    }

    fn store(&self) -> &dyn SharedStore {
        &HostStore
    }

    fn now_ms(&mut self) -> u64 {
        super::now_ms()
    }

    fn event(&mut self, event: &Event) {
        self.metrics.record(event);
    }

    fn count(&mut self, counter: Counter, n: u64) {
        self.metrics.add(counter, n);
    }

    fn count_named(&mut self, name: &str, n: u64) {
        self.metrics.add_named(name, n);
    }

    fn call_service(
        &mut self,
        cluster: &str,
        message: &[u8],
        timeout_ms: u64,
    ) -> Result<(), HostFault> {
        // The SDK's own call: only it can register the token with the SDK's dispatcher, which
        // routes the answer to this context. Envoy returns Ok, or ParseFailure (no such cluster)
        // or InternalFailure, all three handled by the SDK without a panic; its panic arm is for
        // statuses Envoy returns only on invalid memory, which these live slices are not.
        match hostcalls::dispatch_grpc_call(
            cluster,
            SERVICE_NAME,
            METHOD_NAME,
            vec![],
            Some(message),
            Duration::from_millis(timeout_ms),
        ) {
            Ok(token) => {
                self.service_call = Some(token);
                Ok(())
            }
            Err(status) => Err(HostFault(status as u32)),
        }
    }

    fn now_us(&mut self) -> u64 {
        abi::now_nanos().map_or(0, |nanos| nanos / 1000)
    }

    fn service_latency(&mut self, policy: usize, micros: u64) {
        self.metrics.service_latency(policy, micros);
    }
}

/// The `stage-timing` build's counters: nanoseconds and calls per callback, ids defined on first use.
#[cfg(feature = "stage-timing")]
mod timing {
    use proxy_wasm::hostcalls;
    use proxy_wasm::types::MetricType;
    use std::cell::RefCell;

    thread_local! {
        /// (stage, id of `_ns`, id of `_calls`); at most one entry per callback kind.
        static IDS: RefCell<Vec<(&'static str, u32, u32)>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn record(prefix: &str, stage: &'static str, nanos: u64) {
        IDS.with(|ids| {
            let mut ids = ids.borrow_mut();
            let found = ids.iter().find(|(s, _, _)| *s == stage).copied();
            let entry = found.or_else(|| {
                let define = |what: &str| {
                    let name = format!("{prefix}_stage_{stage}_{what}");
                    hostcalls::define_metric(MetricType::Counter, &name).ok()
                };
                let entry = (stage, define("ns")?, define("calls")?);
                ids.push(entry);
                Some(entry)
            });
            if let Some((_, ns, calls)) = entry {
                let _ = hostcalls::increment_metric(ns, i64::try_from(nanos).unwrap_or(0).max(1));
                let _ = hostcalls::increment_metric(calls, 1);
            }
        });
    }
}
