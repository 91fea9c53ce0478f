//! One request's life, from its headers to its log line, as pure Rust. The host layer
//! (`src/host/`) only turns proxy-wasm callbacks into calls of [`Exchange`] and carries out the host
//! calls it asks for through [`StreamHost`].
//!
//! The stages, in order (each refusal skips the rest; discovery still records the request):
//! 1. request head: [`Exchange::on_request_headers`] — readable pseudo-headers, then
//!    [`crate::pipeline::decide`] (route → JWT → API key → authz → rate limit → schema head), then
//!    header changes, and the plan for each body ([`body::BodyGate`]);
//! 2. request body: [`Exchange::on_request_body`] / [`Exchange::on_request_trailers`] — schema body,
//!    request redaction (redact, block, report), discovery peek;
//! 3. response head: [`Exchange::on_response_headers`] — rate-limit headers, response redaction plan
//!    (206 and `content-range` count as unscannable), discovery;
//! 4. response body: [`Exchange::on_response_body`] / [`Exchange::on_response_trailers`];
//! 5. log: [`Exchange::on_log`] — the discovery observation goes into the worker's table.
//!
//! Trailers end a body exactly as `end_of_stream` does: a body that was held is judged whole in the
//! trailers callback, so nothing held back is released unjudged (the SDK's default trailers callback
//! would let it go).

pub mod body;
pub mod counter;
pub mod sim;
mod worker;

pub use counter::Counter;
pub use worker::{Admit, LogLimiter, Worker};

use crate::config::{Mode, Policy};
use crate::discovery::observe::{Observation, Side};
use crate::pipeline::{decide, original_uri, Event, HeaderChange, WorkerEnv};
use crate::ratelimit::service::{ServiceCall, ServiceResult};
use crate::redact::{BodyDecision, HeaderScan, Redaction};
use crate::refusal::{self, Denial};
use crate::reply::Reply;
use crate::request::{Headers, Request};
use crate::store::SharedStore;
use body::BodyGate;
use std::rc::Rc;
use std::sync::Arc;

/// What a callback tells the proxy: go on, or hold the stream (headers or body) for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Pause,
}

/// A host call failed (the host's status code, or malformed data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFault(pub u32);

/// The host calls one request may make. Every call is fallible; none may panic.
pub trait StreamHost {
    fn request_headers(&mut self) -> Result<Headers, HostFault>;
    fn response_headers(&mut self) -> Result<Headers, HostFault>;
    /// `source.address` (read only when a rate limit keys on the client address).
    fn source_address(&mut self) -> Option<String>;
    /// Up to `max` bytes of the body buffered so far on `side` (the current chunk, or everything
    /// held since the last `Continue`).
    fn body(&mut self, side: Side, max: usize) -> Result<Vec<u8>, HostFault>;
    /// Replaces the first `len` bytes of that body with `bytes`.
    fn set_body(&mut self, side: Side, len: usize, bytes: &[u8]) -> Result<(), HostFault>;
    /// Sets or (with `None`) removes a header on `side`.
    fn set_header(&mut self, side: Side, name: &str, value: Option<&[u8]>)
        -> Result<(), HostFault>;
    fn add_header(&mut self, side: Side, name: &str, value: &[u8]) -> Result<(), HostFault>;
    fn send_reply(&mut self, reply: &Reply) -> Result<(), HostFault>;
    /// Resets the stream: the last resort when a body cannot be judged or rewritten.
    fn reset(&mut self);
    fn store(&self) -> &dyn SharedStore;
    fn now_ms(&mut self) -> u64;
    /// Counts an event of the pipeline.
    fn event(&mut self, event: &Event);
    /// Adds to a counter (the host resolved its metric once per VM: no lookup by name).
    fn count(&mut self, counter: Counter, n: u64);
    /// Adds to a counter whose name depends on the configuration (after the policy's prefix, e.g.
    /// `redaction_pii_email`); looked up by name, so only for what [`Counter`] cannot name.
    fn count_named(&mut self, name: &str, n: u64);
    /// Starts the call to the rate limit service (`ShouldRateLimit` with `message`, a serialized
    /// `RateLimitRequest`) on `cluster`, ended by the host after `timeout_ms`. Its result comes back
    /// through [`Exchange::on_service_response`]; `Err`: it could not start (no such cluster).
    fn call_service(
        &mut self,
        cluster: &str,
        message: &[u8],
        timeout_ms: u64,
    ) -> Result<(), HostFault>;
    /// A monotonic-enough clock in microseconds, for the latency of service calls.
    fn now_us(&mut self) -> u64;
    /// Records the latency of a service call for a policy (a histogram per policy).
    fn service_latency(&mut self, policy: usize, micros: u64);
}

/// A call to the rate limit service in flight, and what the head stage does once it is answered.
struct Pending {
    call: ServiceCall,
    started_us: u64,
    rest: Rest,
}

/// What the request-head stage still has to do when the request goes on.
struct Rest {
    headers: Vec<HeaderChange>,
    body_check: Option<(usize, crate::schema::BodyCheck)>,
    rule: Option<usize>,
    end_of_stream: bool,
}

/// One request.
#[derive(Default)]
pub struct Exchange {
    /// The request as read in the head stage (refusals from body callbacks quote its URI).
    request: Option<Request>,
    /// The matched rule's mode: whether refusals are sent or only counted.
    enforced: bool,
    /// The filter answered this request itself; its own reply also passes through the response
    /// callbacks, which must then leave it alone.
    responded: bool,
    /// Headers to add to the upstream's response (rate-limit headers).
    response_headers: Vec<(&'static str, String)>,
    /// The rule's redaction policy, for the response.
    response_redaction: Option<Arc<Redaction>>,
    pub(crate) request_body: BodyGate,
    pub(crate) response_body: BodyGate,
    /// Response headers wait for the body's verdict (blocking redaction, held headers allowed).
    holding_response_headers: bool,
    /// The response was blocked after its headers had gone: every later body byte is dropped.
    response_blocked: bool,
    /// What discovery learns of this request (sampled requests only), recorded in `on_log`.
    observation: Option<Observation>,
    /// The rate limit service call the request waits for.
    pending: Option<Pending>,
    /// The rate limit service's `response_headers_to_add`, for the upstream's response.
    service_response_headers: Vec<(String, String)>,
    /// The clock at the request's head (ms; 0 when the policy needs no clock).
    started_ms: u64,
}

impl Exchange {
    pub fn new() -> Exchange {
        Exchange {
            enforced: true,
            ..Exchange::default()
        }
    }

    pub fn on_request_headers(
        &mut self,
        worker: &mut Worker,
        host: &mut dyn StreamHost,
        end_of_stream: bool,
    ) -> Flow {
        let policy = Rc::clone(&worker.policy);
        host.count(Counter::Requests, 1);
        let headers = match host.request_headers() {
            Ok(headers) => headers,
            Err(fault) => {
                // Judged as if it had no headers: a protected route refuses it.
                self.log(
                    worker,
                    host,
                    &format!("cannot read request headers ({fault:?})"),
                );
                Headers::default()
            }
        };
        let mut request = Request::new(headers, !end_of_stream);
        if uses_client_address(&policy) {
            request = request.with_source_address(host.source_address());
        }
        if request.has_unreadable_pseudo_header() {
            self.request = Some(request);
            self.enforced = policy.mode == Mode::Enforce;
            host.count(Counter::UnreadableRequest, 1);
            return self
                .judge(worker, host, &Denial::BadRequest("unreadable_request"), &[])
                .unwrap_or(Flow::Continue);
        }
        // Only token lifetimes, rate limits and discovery need the clock (one host call).
        let now_ms = if policy.providers.is_empty()
            && policy.rate_limits.is_empty()
            && policy.discovery.is_none()
        {
            0
        } else {
            host.now_ms()
        };
        self.started_ms = now_ms;
        let verdict = {
            let mut keys = worker::Keys {
                jwks: &mut worker.jwks,
                store: host.store(),
            };
            let mut env = WorkerEnv {
                keys: &mut keys,
                cache: &mut worker.cache,
                store: host.store(),
                seed: worker.seed.as_ref(),
                now_ms,
            };
            decide(&policy, &request, &mut env)
        };
        if let (Some(config), Some(discovery)) =
            (policy.discovery.as_ref(), worker.discovery.as_mut())
        {
            if discovery.sample(config) {
                self.observation = Some(discovery.observe(config, &request));
            }
        }
        self.enforced = verdict.enforced;
        for event in &verdict.events {
            host.event(event);
            if let Event::UnknownKid { provider } = event {
                worker.jwks.note_unknown_kid(*provider);
            }
        }
        self.request = Some(request);
        if let Some(denial) = &verdict.denial {
            if self.enforced {
                return self.refuse(worker, host, denial, &verdict.response_headers);
            }
            // The pipeline's events already counted it (`ReportOnlyDenied`).
            self.log(
                worker,
                host,
                &format!("report mode, would refuse: {}", detail(denial)),
            );
        }
        self.response_headers = verdict.response_headers;
        let rest = Rest {
            headers: verdict.headers,
            // A body to check only matters when the headers did not refuse the request already.
            body_check: verdict.body_check.filter(|_| verdict.denial.is_none()),
            rule: verdict.rule,
            end_of_stream,
        };
        if let Some(call) = verdict.service_call.filter(|_| verdict.denial.is_none()) {
            // The request waits for the rate limit service (Envoy ends the call at its timeout).
            let started_us = host.now_us();
            return match host.call_service(&call.cluster, &call.message, call.timeout_ms) {
                Ok(()) => {
                    self.pending = Some(Pending {
                        call,
                        started_us,
                        rest,
                    });
                    Flow::Pause
                }
                Err(_) => {
                    self.pending = Some(Pending {
                        call,
                        started_us,
                        rest,
                    });
                    match self.on_service_response(worker, host, ServiceResult::NotSent) {
                        // Nothing was paused yet: go on in this callback.
                        Flow::Continue => Flow::Continue,
                        Flow::Pause => Flow::Pause,
                    }
                }
            };
        }
        self.proceed(worker, host, rest)
    }

    /// The rate limit service answered (or the call failed or timed out): decides the request.
    /// `Continue`: the request goes on (the host resumes it); `Pause`: it was refused, or it is
    /// held for its body, or nothing was waiting.
    pub fn on_service_response(
        &mut self,
        worker: &mut Worker,
        host: &mut dyn StreamHost,
        result: ServiceResult,
    ) -> Flow {
        let Some(Pending {
            call,
            started_us,
            rest,
        }) = self.pending.take()
        else {
            return Flow::Pause;
        };
        let policy = Rc::clone(&worker.policy);
        let micros = host.now_us().saturating_sub(started_us);
        for &p in &call.policies {
            host.service_latency(p, micros);
        }
        let result = result.timed(micros, call.timeout_ms);
        let decision = policy.rate_limits.service_outcome(&call, &result);
        if let (false, Some(seed)) = (decision.over.is_empty(), worker.seed.as_ref()) {
            let now_ms = host.now_ms();
            policy.rate_limits.remember_over_limit(
                &call,
                &decision.over,
                host.store(),
                seed,
                now_ms,
            );
        }
        for (p, e) in &decision.events {
            host.event(&Event::RateLimit(*p, *e));
        }
        if let Some(reason) = decision.failure {
            self.log(
                worker,
                host,
                &format!(
                    "rate limit service on cluster {:?}: {reason} ({})",
                    call.cluster,
                    result.describe()
                ),
            );
        }
        if let Some(refusal) = decision.refusal {
            let denial = Denial::RateLimited(refusal);
            if self.enforced {
                host.count(Counter::Denied, 1);
                return self.send_refusal(
                    worker,
                    host,
                    &denial,
                    &decision.headers,
                    decision.response_headers,
                );
            }
            host.count(Counter::ReportOnlyDenied, 1);
            self.log(
                worker,
                host,
                &format!("report mode, would refuse: {}", detail(&denial)),
            );
        } else {
            self.response_headers.extend(decision.headers);
        }
        for (name, value) in &decision.request_headers {
            self.apply(
                worker,
                host,
                Side::Request,
                &HeaderChange::Set(name.clone(), value.clone()),
            );
        }
        self.service_response_headers = decision.response_headers;
        self.proceed(worker, host, rest)
    }

    /// The rest of the request-head stage once nothing refused the request: header changes, the
    /// plan for each body.
    fn proceed(&mut self, worker: &mut Worker, host: &mut dyn StreamHost, rest: Rest) -> Flow {
        let policy = Rc::clone(&worker.policy);
        let end_of_stream = rest.end_of_stream;
        let rule = rest.rule.and_then(|i| policy.rules.get(i));
        for change in &rest.headers {
            self.apply(worker, host, Side::Request, change);
        }
        self.request_body = BodyGate::for_schema(&policy, rest.body_check);

        if let Some(redaction) = rule.and_then(|r| r.redaction.as_ref()) {
            if redaction.response {
                // An identity-encoded, whole response: a compressed one or a byte range could not
                // be inspected (two ranges could rebuild what redaction hides).
                for name in ["accept-encoding", "range", "if-range"] {
                    if self.header_present(name) {
                        self.apply(
                            worker,
                            host,
                            Side::Request,
                            &HeaderChange::Remove(name.into()),
                        );
                    }
                }
                self.response_redaction = Some(Arc::clone(redaction));
            }
            if redaction.request && !end_of_stream {
                let decision = {
                    let headers = self.request.as_ref().map(Request::headers);
                    redaction.decide(
                        headers.and_then(|h| h.text("content-type")),
                        headers.and_then(|h| h.text("content-encoding")),
                    )
                };
                match decision {
                    BodyDecision::Scan(kind) => {
                        if redaction.rewrites() && self.header_present("content-length") {
                            self.apply(
                                worker,
                                host,
                                Side::Request,
                                &HeaderChange::Remove("content-length".into()),
                            );
                        }
                        self.request_body.scan(Arc::clone(redaction), kind);
                    }
                    BodyDecision::PassUnscanned => host.count(Counter::RedactionUnscanned, 1),
                    BodyDecision::BlockUnscanned => {
                        host.count(Counter::RedactionUnscanned, 1);
                        if let Some(flow) = self.judge(
                            worker,
                            host,
                            &Denial::SensitiveData { response: false },
                            &[],
                        ) {
                            return flow;
                        }
                    }
                }
            }
        }
        if policy.allow_on_headers_stop_iteration && self.request_body.must_see_whole_body() {
            return Flow::Pause;
        }
        Flow::Continue
    }

    pub fn on_request_body(
        &mut self,
        worker: &mut Worker,
        host: &mut dyn StreamHost,
        size: usize,
        end_of_stream: bool,
    ) -> Flow {
        if self.pending.is_some() {
            // Held until the rate limit service has decided (Envoy buffers what arrives).
            return Flow::Pause;
        }
        self.on_body(
            worker,
            host,
            Side::Request,
            body::Chunk::Data {
                size,
                end_of_stream,
            },
        )
    }

    pub fn on_request_trailers(&mut self, worker: &mut Worker, host: &mut dyn StreamHost) -> Flow {
        if self.pending.is_some() {
            return Flow::Pause;
        }
        self.on_body(worker, host, Side::Request, body::Chunk::Trailers)
    }

    pub fn on_response_headers(
        &mut self,
        worker: &mut Worker,
        host: &mut dyn StreamHost,
        end_of_stream: bool,
    ) -> Flow {
        let policy = Rc::clone(&worker.policy);
        let wants_headers = self.observation.is_some()
            || (!self.responded
                && self
                    .response_redaction
                    .as_ref()
                    .is_some_and(|r| !end_of_stream || !r.header_names().is_empty()));
        let headers = if wants_headers {
            host.response_headers().unwrap_or_default()
        } else {
            Headers::default()
        };
        if let (Some(observation), Some(config)) =
            (self.observation.as_mut(), policy.discovery.as_ref())
        {
            // Also for the filter's own refusals: discovery records refused requests too.
            observation.response(config, &headers);
        }
        if self.responded {
            return Flow::Continue;
        }
        for (name, value) in std::mem::take(&mut self.response_headers) {
            if host
                .add_header(Side::Response, name, value.as_bytes())
                .is_err()
            {
                self.log(worker, host, "cannot add a response header");
            }
        }
        for (name, value) in std::mem::take(&mut self.service_response_headers) {
            if host
                .add_header(Side::Response, &name, value.as_bytes())
                .is_err()
            {
                self.log(worker, host, "cannot add a response header");
            }
        }
        let Some(redaction) = self.response_redaction.take() else {
            return Flow::Continue;
        };
        if let Some(flow) = self.scan_response_headers(worker, host, &redaction, &headers) {
            return flow;
        }
        if end_of_stream {
            return Flow::Continue;
        }
        // A partial response cannot be judged: two slices could rebuild what redaction hides.
        let partial = headers.text(":status") == Some("206") || headers.count("content-range") > 0;
        let decision = if partial {
            redaction.unscannable()
        } else {
            redaction.decide(
                headers.text("content-type"),
                headers.text("content-encoding"),
            )
        };
        match decision {
            BodyDecision::Scan(kind) => {
                let holds_headers = policy.allow_on_headers_stop_iteration
                    && redaction.action == crate::redact::Action::Block;
                if (redaction.rewrites() || !holds_headers) && headers.count("content-length") > 0 {
                    // The body's length changes (or may be replaced): the client must not rely on it.
                    if host
                        .set_header(Side::Response, "content-length", None)
                        .is_err()
                    {
                        self.log(worker, host, "cannot remove content-length");
                    }
                }
                self.response_body.scan(redaction, kind);
                if holds_headers {
                    self.holding_response_headers = true;
                    return Flow::Pause;
                }
            }
            BodyDecision::PassUnscanned => host.count(Counter::RedactionUnscanned, 1),
            BodyDecision::BlockUnscanned => {
                host.count(Counter::RedactionUnscanned, 1);
                if let Some(flow) =
                    self.judge(worker, host, &Denial::SensitiveData { response: true }, &[])
                {
                    return flow;
                }
            }
        }
        Flow::Continue
    }

    pub fn on_response_body(
        &mut self,
        worker: &mut Worker,
        host: &mut dyn StreamHost,
        size: usize,
        end_of_stream: bool,
    ) -> Flow {
        self.on_body(
            worker,
            host,
            Side::Response,
            body::Chunk::Data {
                size,
                end_of_stream,
            },
        )
    }

    pub fn on_response_trailers(&mut self, worker: &mut Worker, host: &mut dyn StreamHost) -> Flow {
        self.on_body(worker, host, Side::Response, body::Chunk::Trailers)
    }

    /// Masks, blocks or reports the response headers the policy lists (`headers`). `Some(flow)`:
    /// the response was refused.
    fn scan_response_headers(
        &mut self,
        worker: &mut Worker,
        host: &mut dyn StreamHost,
        redaction: &Redaction,
        headers: &Headers,
    ) -> Option<Flow> {
        for name in redaction.header_names() {
            let mut values = Vec::new();
            let mut masked = false;
            for value in headers.values(name) {
                match redaction.scan_header(name, value) {
                    HeaderScan::Clean => values.push(value.to_vec()),
                    HeaderScan::Masked {
                        value: mask,
                        findings,
                    } => {
                        self.record_findings(host, redaction, &findings, Side::Response);
                        values.push(mask);
                        masked = true;
                    }
                    HeaderScan::Report { findings } => {
                        self.record_findings(host, redaction, &findings, Side::Response);
                        values.push(value.to_vec());
                    }
                    HeaderScan::Block { findings } => {
                        self.record_findings(host, redaction, &findings, Side::Response);
                        host.count(Counter::RedactionBlocked, 1);
                        let denial = Denial::SensitiveData { response: true };
                        if let Some(flow) = self.judge(worker, host, &denial, &[]) {
                            return Some(flow);
                        }
                        values.push(value.to_vec());
                    }
                }
            }
            if masked {
                host.count(Counter::RedactionHeadersChanged, 1);
                let mut written = host.set_header(Side::Response, name, None).is_ok();
                for value in &values {
                    written &= host.add_header(Side::Response, name, value).is_ok();
                }
                if !written {
                    // Never let the unmasked value out.
                    return Some(self.unwritable(worker, host));
                }
            }
        }
        None
    }

    /// The request is over: its observation goes into the worker's discovery table (the next tick
    /// sends it).
    pub fn on_log(&mut self, worker: &mut Worker, _host: &mut dyn StreamHost) {
        let Some(observation) = self.observation.take() else {
            return;
        };
        // The request's start stands for its time: no second clock read.
        let now = self.started_ms;
        if let (Some(config), Some(discovery)) =
            (worker.policy.discovery.as_ref(), worker.discovery.as_mut())
        {
            discovery.record(config, observation, now);
        }
    }

    /// Counts a refusal; sends it when the rule enforces (`Some(Pause)`), else logs it as report
    /// mode and lets the request go on (`None`).
    fn judge(
        &mut self,
        worker: &mut Worker,
        host: &mut dyn StreamHost,
        denial: &Denial,
        rate_headers: &[(&'static str, String)],
    ) -> Option<Flow> {
        if self.enforced {
            return Some(self.refuse(worker, host, denial, rate_headers));
        }
        host.count(Counter::ReportOnlyDenied, 1);
        self.log(
            worker,
            host,
            &format!("report mode, would refuse: {}", detail(denial)),
        );
        None
    }

    /// Sends the refusal for `denial`; a refusal that cannot be sent resets the stream.
    fn refuse(
        &mut self,
        worker: &mut Worker,
        host: &mut dyn StreamHost,
        denial: &Denial,
        rate_headers: &[(&'static str, String)],
    ) -> Flow {
        host.count(Counter::Denied, 1);
        self.send_refusal(worker, host, denial, rate_headers, Vec::new())
    }

    /// Sends the reply for `denial` (plus headers named by a rate limit service).
    fn send_refusal(
        &mut self,
        worker: &mut Worker,
        host: &mut dyn StreamHost,
        denial: &Denial,
        rate_headers: &[(&'static str, String)],
        extra_headers: Vec<(String, String)>,
    ) -> Flow {
        if log::Level::Debug <= log::max_level() {
            let line = format!("refused: {}", detail(denial));
            self.log_at(log::Level::Debug, worker, host, &line);
        }
        let uri = self
            .request
            .as_ref()
            .map(|r| original_uri(r))
            .unwrap_or_default();
        let mut reply = refusal::for_denial(denial, &worker.policy, &uri, rate_headers);
        reply.extra_headers = extra_headers;
        self.responded = true;
        if let Err(fault) = host.send_reply(&reply) {
            self.log(
                worker,
                host,
                &format!("cannot send the refusal ({fault:?}); resetting the stream"),
            );
            host.reset();
        }
        Flow::Pause
    }

    fn apply(
        &mut self,
        worker: &mut Worker,
        host: &mut dyn StreamHost,
        side: Side,
        change: &HeaderChange,
    ) {
        let result = match change {
            HeaderChange::Remove(name) => host.set_header(side, name, None),
            HeaderChange::Set(name, value) => host.set_header(side, name, Some(value.as_bytes())),
        };
        if let Err(fault) = result {
            self.log(worker, host, &format!("cannot change a header ({fault:?})"));
        }
    }

    fn header_present(&self, name: &str) -> bool {
        self.request
            .as_ref()
            .is_some_and(|r| r.headers().count(name) > 0)
    }

    /// An info line caused by traffic, through the worker's [`LogLimiter`].
    fn log(&self, worker: &mut Worker, host: &mut dyn StreamHost, line: &str) {
        self.log_at(log::Level::Info, worker, host, line);
    }

    fn log_at(
        &self,
        level: log::Level,
        worker: &mut Worker,
        host: &mut dyn StreamHost,
        line: &str,
    ) {
        if level > log::max_level() {
            return;
        }
        let now = host.now_ms();
        match worker.logs.admit(now) {
            Admit::Write { suppressed_before } if suppressed_before > 0 => log::log!(
                level,
                "{}: {line} ({suppressed_before} similar line(s) suppressed)",
                worker.policy.name
            ),
            Admit::Write { .. } => log::log!(level, "{}: {line}", worker.policy.name),
            Admit::Suppress => host.count(Counter::LogSuppressed, 1),
        }
    }
}

/// Whether any rate limit reads the client address (only then is `source.address` read).
fn uses_client_address(policy: &Policy) -> bool {
    policy.rate_limits.policies.iter().any(|p| {
        p.key
            .iter()
            .chain(p.fallback_key.iter().flatten())
            .any(|part| matches!(part, crate::ratelimit::key::KeyPart::ClientAddress { .. }))
    })
}

/// A value-free description of a refusal, for logs.
fn detail(denial: &Denial) -> String {
    match denial {
        Denial::Jwt(status) => status.message().to_string(),
        Denial::NoRuleMatched => "no rule matches".to_string(),
        Denial::ApiKey { failure, .. } => failure.message().to_string(),
        Denial::Authz(insufficient) => {
            format!("insufficient privilege (scopes {:?})", insufficient.scopes)
        }
        _ => denial.name().to_string(),
    }
}

#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod tests;
