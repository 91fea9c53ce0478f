//! A simulated proxy for [`Exchange`]: it buffers bodies the way Envoy's Wasm filter does (a paused
//! body stays in the proxy and grows; a continued one is released to the other side), records every
//! host call, and notes every call Envoy could not serve safely (reading or writing a body the proxy
//! no longer holds). Unit tests, the fuzz targets and the benchmarks drive requests through it and
//! check what the upstream and the client would have received.

use super::{Counter, Exchange, Flow, HostFault, StreamHost, Worker};
use crate::config::Policy;
use crate::discovery::observe::Side;
use crate::pipeline::Event;
use crate::reply::Reply;
use crate::request::Headers;
use crate::store::memory::MemoryStore;
use crate::store::SharedStore;
use std::collections::BTreeMap;
use std::rc::Rc;

/// The proxy side of one request.
#[derive(Default)]
pub struct SimHost {
    pub request: Headers,
    pub response: Headers,
    /// Per side (request, response): what the proxy holds for the filter now.
    pub held: [Vec<u8>; 2],
    /// Per side: what the proxy has let through (to the upstream, to the client).
    pub released: [Vec<u8>; 2],
    /// Per side: the proxy still holds the body (no `Continue` since the last data).
    pub readable: [bool; 2],
    pub reply: Option<Reply>,
    pub reset: bool,
    /// Every stream host call, in order, with the clock reads (`now`) and metric increments
    /// (`metric <counter>`) the real host makes; shared-data calls are counted by [`Self::store`].
    pub calls: Vec<String>,
    /// Calls Envoy could not have served safely.
    pub violations: Vec<String>,
    pub counters: BTreeMap<String, u64>,
    pub events: Vec<Event>,
    pub header_changes: Vec<(Side, String, Option<Vec<u8>>)>,
    /// Headers added (another copy), with their values.
    pub headers_added: Vec<(Side, String, Vec<u8>)>,
    pub store: MemoryStore,
    pub now: u64,
    /// Rate limit service calls started: (cluster, message, timeout in ms).
    pub service_calls: Vec<(String, Vec<u8>, u64)>,
    /// When set, a service call cannot start (as with an unknown cluster).
    pub service_unreachable: bool,
    /// Latencies recorded: (policy, microseconds).
    pub latencies: Vec<(usize, u64)>,
}

fn ix(side: Side) -> usize {
    match side {
        Side::Request => 0,
        Side::Response => 1,
    }
}

impl SimHost {
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    fn held_mut(&mut self, side: Side) -> &mut Vec<u8> {
        let [request, response] = &mut self.held;
        match side {
            Side::Request => request,
            Side::Response => response,
        }
    }

    fn readable(&self, side: Side) -> bool {
        self.readable.get(ix(side)).copied().unwrap_or(false)
    }
}

impl StreamHost for SimHost {
    fn request_headers(&mut self) -> Result<Headers, HostFault> {
        self.calls.push("request_headers".into());
        Ok(self.request.clone())
    }

    fn response_headers(&mut self) -> Result<Headers, HostFault> {
        self.calls.push("response_headers".into());
        Ok(self.response.clone())
    }

    fn source_address(&mut self) -> Option<String> {
        self.calls.push("source_address".into());
        Some("10.0.0.1:5555".into())
    }

    fn body(&mut self, side: Side, max: usize) -> Result<Vec<u8>, HostFault> {
        self.calls.push(format!("body {side:?}"));
        if !self.readable(side) {
            // Envoy's pointer to a released chunk is stale: this would read freed memory.
            self.violations
                .push(format!("{side:?} body read after release"));
            return Err(HostFault(1));
        }
        let held = self.held_mut(side);
        Ok(held.get(..max.min(held.len())).unwrap_or_default().to_vec())
    }

    fn set_body(&mut self, side: Side, len: usize, bytes: &[u8]) -> Result<(), HostFault> {
        self.calls.push(format!("set_body {side:?}"));
        if !self.readable(side) {
            self.violations
                .push(format!("{side:?} body written after release"));
            return Err(HostFault(1));
        }
        let held = self.held_mut(side);
        let len = len.min(held.len());
        held.splice(..len, bytes.iter().copied());
        Ok(())
    }

    fn set_header(
        &mut self,
        side: Side,
        name: &str,
        value: Option<&[u8]>,
    ) -> Result<(), HostFault> {
        self.calls.push(format!("set_header {name}"));
        self.header_changes
            .push((side, name.to_string(), value.map(<[u8]>::to_vec)));
        Ok(())
    }

    fn add_header(&mut self, side: Side, name: &str, value: &[u8]) -> Result<(), HostFault> {
        self.calls.push(format!("add_header {name}"));
        self.headers_added
            .push((side, name.to_string(), value.to_vec()));
        Ok(())
    }

    fn send_reply(&mut self, reply: &Reply) -> Result<(), HostFault> {
        self.calls.push("send_reply".into());
        self.reply = Some(reply.clone());
        Ok(())
    }

    fn reset(&mut self) {
        self.calls.push("reset".into());
        self.reset = true;
    }

    fn store(&self) -> &dyn SharedStore {
        &self.store
    }

    fn now_ms(&mut self) -> u64 {
        self.calls.push("now".into());
        self.now
    }

    // Each counter an event moves is one `increment_metric` in `host::metrics`.
    fn event(&mut self, event: &Event) {
        for counter in Counter::of_event(event).into_iter().flatten() {
            self.calls.push(format!("metric {}", counter.name()));
        }
        if let Event::RateLimit(_, e) = event {
            self.calls.push(format!("metric rl_{}", e.metric_name()));
        }
        self.events.push(*event);
    }

    fn count(&mut self, counter: Counter, n: u64) {
        self.count_named(counter.name(), n);
    }

    fn count_named(&mut self, name: &str, n: u64) {
        if n > 0 {
            self.calls.push(format!("metric {name}"));
        }
        *self.counters.entry(name.to_string()).or_default() += n;
    }

    fn call_service(
        &mut self,
        cluster: &str,
        message: &[u8],
        timeout_ms: u64,
    ) -> Result<(), HostFault> {
        self.calls.push("call_service".into());
        if self.service_unreachable {
            return Err(HostFault(1));
        }
        self.service_calls
            .push((cluster.to_string(), message.to_vec(), timeout_ms));
        Ok(())
    }

    fn now_us(&mut self) -> u64 {
        self.calls.push("now".into());
        self.now.saturating_mul(1000)
    }

    fn service_latency(&mut self, policy: usize, micros: u64) {
        self.calls.push("metric service_latency".into());
        self.latencies.push((policy, micros));
    }
}

/// One request driven the way Envoy drives a filter.
pub struct Sim {
    pub worker: Worker,
    pub host: SimHost,
    pub exchange: Exchange,
}

impl Sim {
    /// A worker for `policy`, at a fixed clock.
    pub fn new(policy: Rc<Policy>) -> Sim {
        let jwks = policy.jwks_coordinator(1);
        Sim {
            worker: Worker::new(policy, jwks),
            host: SimHost {
                now: 1_700_000_000_000,
                ..SimHost::default()
            },
            exchange: Exchange::new(),
        }
    }

    /// The proxy stopped the request: a local reply, or a reset.
    pub fn stopped(&self) -> bool {
        self.host.reply.is_some() || self.host.reset
    }

    pub fn request(&mut self, headers: Headers, end_of_stream: bool) -> Flow {
        self.host.request = headers;
        self.exchange
            .on_request_headers(&mut self.worker, &mut self.host, end_of_stream)
    }

    /// The rate limit service's answer to the call in flight.
    pub fn service(&mut self, result: crate::ratelimit::service::ServiceResult) -> Flow {
        self.exchange
            .on_service_response(&mut self.worker, &mut self.host, result)
    }

    pub fn response(&mut self, headers: Headers, end_of_stream: bool) -> Flow {
        if self.stopped() {
            return Flow::Continue;
        }
        self.host.response = headers;
        self.exchange
            .on_response_headers(&mut self.worker, &mut self.host, end_of_stream)
    }

    /// Sends a body in these chunks, ended by the last chunk or by trailers. Returns each flow.
    pub fn body<C: AsRef<[u8]>>(&mut self, side: Side, chunks: &[C], trailers: bool) -> Vec<Flow> {
        let mut flows = Vec::new();
        for (n, chunk) in chunks.iter().enumerate() {
            if self.stopped() {
                return flows;
            }
            self.host.held_mut(side).extend_from_slice(chunk.as_ref());
            self.set_readable(side, true);
            let end = !trailers && n + 1 == chunks.len();
            let size = self.host.held_mut(side).len();
            let flow = match side {
                Side::Request => {
                    self.exchange
                        .on_request_body(&mut self.worker, &mut self.host, size, end)
                }
                Side::Response => {
                    self.exchange
                        .on_response_body(&mut self.worker, &mut self.host, size, end)
                }
            };
            self.settle(side, flow);
            flows.push(flow);
        }
        if trailers && !self.stopped() {
            if chunks.is_empty() {
                self.set_readable(side, true);
            }
            let flow = match side {
                Side::Request => self
                    .exchange
                    .on_request_trailers(&mut self.worker, &mut self.host),
                Side::Response => self
                    .exchange
                    .on_response_trailers(&mut self.worker, &mut self.host),
            };
            self.settle(side, flow);
            flows.push(flow);
        }
        flows
    }

    /// The request is over (access log).
    pub fn log(&mut self) {
        self.exchange.on_log(&mut self.worker, &mut self.host);
    }

    fn set_readable(&mut self, side: Side, readable: bool) {
        if let Some(r) = self.host.readable.get_mut(ix(side)) {
            *r = readable;
        }
    }

    fn settle(&mut self, side: Side, flow: Flow) {
        if flow == Flow::Continue && !self.stopped() {
            let held = std::mem::take(self.host.held_mut(side));
            if let Some(released) = self.host.released.get_mut(ix(side)) {
                released.extend_from_slice(&held);
            }
            self.set_readable(side, false);
        }
    }

    /// What the upstream received of the request body.
    pub fn upstream_got(&self) -> &[u8] {
        self.host.released.first().map_or(&[], Vec::as_slice)
    }

    /// What the client received of the response body.
    pub fn client_got(&self) -> &[u8] {
        self.host.released.get(1).map_or(&[], Vec::as_slice)
    }

    /// The status of the filter's own reply, if it sent one.
    pub fn status(&self) -> Option<u16> {
        self.host.reply.as_ref().map(|r| r.status)
    }
}
