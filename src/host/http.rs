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
use crate::reply::Reply;
use crate::request::Headers;
use crate::store::SharedStore;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::cell::RefCell;
use std::rc::Rc;

pub(super) struct ApiGuard {
    vm: Rc<RefCell<Vm>>,
    exchange: Exchange,
}

impl ApiGuard {
    pub(super) fn new(vm: Rc<RefCell<Vm>>) -> Self {
        ApiGuard {
            vm,
            exchange: Exchange::new(),
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
        };
        match f(&mut self.exchange, &mut vm.worker, &mut host) {
            Flow::Continue => Action::Continue,
            Flow::Pause => Action::Pause,
        }
    }
}

impl Context for ApiGuard {}

impl HttpContext for ApiGuard {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.step(|x, w, h| x.on_request_headers(w, h, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.step(|x, w, h| x.on_request_body(w, h, body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.step(|x, w, h| x.on_request_trailers(w, h))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.step(|x, w, h| x.on_response_headers(w, h, end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.step(|x, w, h| x.on_response_body(w, h, body_size, end_of_stream))
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.step(|x, w, h| x.on_response_trailers(w, h))
    }

    fn on_log(&mut self) {
        self.step(|x, w, h| {
            x.on_log(w, h);
            Flow::Continue
        });
    }
}

/// The host calls of one request, over [`abi`].
struct HostStream<'a> {
    metrics: &'a Metrics,
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
}
