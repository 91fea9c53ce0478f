//! `ApiGuard`: one request. Headers are judged by the pipeline at once; bodies are read only when the
//! matched rule needs them (a schema to check, a redaction policy), and the rule's verdict on them is
//! carried out in the body callbacks.
//!
//! Holding headers: Envoy's Wasm filter turns a paused header callback into "stop everything", after
//! which no body callback arrives, unless the filter config has `allow_on_headers_stop_iteration: true`.
//! So by default request and response headers go on while apiguard buffers the body; with the policy's
//! `allow_on_headers_stop_iteration` (set it together with Envoy's field) they wait for the verdict.

use super::metrics::Metrics;
use super::request::HostRequest;
use super::root::Worker;
use super::store::HostStore;
use crate::config::Policy;
use crate::discovery::observe::{Observation, Side};
use crate::discovery::HeaderList;
use crate::jwt::extract::TokenSource;
use crate::pipeline::{self, decide, original_uri, Event, HeaderChange, WorkerEnv};
use crate::redact::{Action as RedactAction, BodyDecision, Redaction, StreamRedactor};
use crate::reply::{self, Denial};
use crate::schema::BodyCheck;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

pub(super) struct ApiGuard {
    worker: Rc<RefCell<Worker>>,
    /// The matched rule's mode: whether refusals are sent or only counted.
    enforced: bool,
    /// The filter answered this request itself; its own reply also passes through the response
    /// callbacks, which must then leave it alone.
    responded: bool,
    /// Headers to add to the upstream's response (rate-limit headers).
    response_headers: Vec<(&'static str, String)>,
    /// The request body must be buffered and checked against this schema.
    body_check: Option<(usize, BodyCheck)>,
    request_redactor: Option<StreamRedactor>,
    /// The rule's redaction policy, for the response.
    response_redaction: Option<Arc<Redaction>>,
    response_redactor: Option<StreamRedactor>,
    /// Request headers are held (paused) until the body's verdict.
    holding_request: bool,
    /// Response headers are held until the body's verdict (blocking redaction).
    holding_response: bool,
    /// The response was blocked after its headers had gone: every further body byte is dropped.
    response_blocked: bool,
    /// `scheme://host/path`, for refusals sent from body callbacks.
    original_uri: String,
    scratch: Vec<u8>,
    /// What discovery learns of this request (sampled requests only), recorded in `on_log`.
    observation: Option<Observation>,
    /// The first bytes of each body (up to discovery's `max_body_bytes`), gathered across chunks.
    request_peek: Vec<u8>,
    response_peek: Vec<u8>,
    request_body_observed: bool,
    response_body_observed: bool,
}

impl ApiGuard {
    pub(super) fn new(worker: Rc<RefCell<Worker>>) -> Self {
        ApiGuard {
            worker,
            enforced: true,
            responded: false,
            response_headers: Vec::new(),
            body_check: None,
            request_redactor: None,
            response_redaction: None,
            response_redactor: None,
            holding_request: false,
            holding_response: false,
            response_blocked: false,
            original_uri: String::new(),
            scratch: Vec::new(),
            observation: None,
            request_peek: Vec::new(),
            response_peek: Vec::new(),
            request_body_observed: false,
            response_body_observed: false,
        }
    }

    /// Sends the refusal for `denial` (the caller has checked the mode). Returns the action that ends
    /// the callback.
    fn refuse(
        &mut self,
        policy: &Policy,
        metrics: &Metrics,
        denial: &Denial,
        rate_headers: &[(&'static str, String)],
    ) -> Action {
        metrics.inc("denied");
        let reply = reply::for_denial(denial, policy, &self.original_uri, rate_headers);
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        self.responded = true;
        if let Err(e) = hostcalls::send_http_response(
            u32::from(reply.status),
            headers,
            Some(reply.body.as_bytes()),
        ) {
            log::error!(
                "{}: cannot send the refusal ({e:?}); resetting the stream",
                policy.name
            );
            let _ = hostcalls::reset_http_request();
        }
        Action::Pause
    }

    /// Counts and logs a refusal; sends it when the rule enforces. `None`: go on (report mode).
    fn judge(&mut self, policy: &Policy, metrics: &Metrics, denial: &Denial) -> Option<Action> {
        if self.enforced {
            log::debug!("{}: refused: {}", policy.name, detail(denial));
            return Some(self.refuse(policy, metrics, denial, &[]));
        }
        metrics.inc("report_only_denied");
        log::info!(
            "{}: report mode, would refuse: {}",
            policy.name,
            detail(denial)
        );
        None
    }

    fn count_findings(&mut self, metrics: &Metrics, redactor: &StreamRedactor, side: Side) {
        let policy = redactor.policy();
        let named = redactor.findings().named(policy);
        for (class, count) in &named {
            metrics.add(
                &format!("redaction_{}_{}", policy.name, class),
                u64::from(*count),
            );
        }
        if let Some(observation) = self.observation.as_mut() {
            let classes: Vec<&str> = named.iter().map(|(class, _)| *class).collect();
            observation.add_data_classes(side, &classes);
        }
        if redactor.changed() {
            metrics.inc("redaction_bodies_changed");
        }
    }
}

impl Context for ApiGuard {}

impl ApiGuard {
    /// Records the observation in this VM's discovery table (never dispatches: the next tick sends).
    fn record_observation(&mut self) {
        let Some(observation) = self.observation.take() else {
            return;
        };
        let mut worker = self.worker.borrow_mut();
        let worker = &mut *worker;
        if let (Some(config), Some(discovery)) =
            (worker.policy.discovery.as_ref(), worker.discovery.as_mut())
        {
            discovery.record(config, observation, super::now_ms());
        }
    }
}

impl HttpContext for ApiGuard {
    fn on_log(&mut self) {
        self.record_observation();
    }

    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let worker_rc = Rc::clone(&self.worker);
        let mut worker = worker_rc.borrow_mut();
        let worker = &mut *worker;
        let headers = hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_else(|e| {
            log::warn!(
                "{}: cannot read request headers ({e:?}); judging the request without them",
                worker.policy.name
            );
            Vec::new()
        });
        let request = HostRequest::new(headers, !end_of_stream);
        let policy = Rc::clone(&worker.policy);
        let mut cache = std::mem::take(&mut worker.cache);
        let seed = worker.seed;
        let verdict = {
            let mut env = WorkerEnv {
                keys: worker,
                cache: &mut cache,
                store: &HostStore,
                seed: seed.as_ref(),
                now_ms: super::now_ms(),
            };
            decide(&policy, &request, &mut env)
        };
        worker.cache = cache;
        self.original_uri = original_uri(&request);
        if let (Some(config), Some(discovery)) =
            (policy.discovery.as_ref(), worker.discovery.as_mut())
        {
            if discovery.sample(config) {
                self.observation = Some(Observation::request(config, &request));
            }
        }
        self.enforced = verdict.enforced;

        worker.metrics.inc("requests");
        for event in &verdict.events {
            worker.metrics.record(event);
            if let Event::UnknownKid { provider } = event {
                worker.jwks.note_unknown_kid(*provider);
            }
        }
        if let Some(denial) = &verdict.denial {
            let rule = verdict
                .rule
                .and_then(|i| policy.rules.get(i))
                .map_or("-", |r| r.name.as_str());
            if verdict.enforced {
                log::debug!("{}: refused (rule {rule}): {}", policy.name, detail(denial));
                return self.refuse(&policy, &worker.metrics, denial, &verdict.response_headers);
            }
            log::info!(
                "{}: report mode, would refuse (rule {rule}): {}",
                policy.name,
                detail(denial)
            );
        }
        for change in &verdict.headers {
            apply(&policy, MapType::HttpRequestHeaders, change);
        }
        self.response_headers = verdict.response_headers;
        // A body to check only matters when the headers did not refuse the request already.
        self.body_check = verdict.body_check.filter(|_| verdict.denial.is_none());

        let rule = verdict.rule.and_then(|i| policy.rules.get(i));
        if let Some(redaction) = rule.and_then(|r| r.redaction.as_ref()) {
            if redaction.response {
                // Ask for an identity-encoded response: a compressed one could not be inspected.
                apply(
                    &policy,
                    MapType::HttpRequestHeaders,
                    &HeaderChange::Remove("accept-encoding".into()),
                );
                self.response_redaction = Some(Arc::clone(redaction));
            }
            if redaction.request && !end_of_stream {
                match redaction.decide(
                    request.header("content-type"),
                    request.header("content-encoding"),
                ) {
                    BodyDecision::Scan(kind) => {
                        if redaction.rewrites() {
                            apply(
                                &policy,
                                MapType::HttpRequestHeaders,
                                &HeaderChange::Remove("content-length".into()),
                            );
                        }
                        self.request_redactor =
                            Some(StreamRedactor::new(Arc::clone(redaction), kind));
                    }
                    BodyDecision::PassUnscanned => worker.metrics.inc("redaction_unscanned"),
                    BodyDecision::BlockUnscanned => {
                        worker.metrics.inc("redaction_unscanned");
                        if let Some(action) = self.judge(
                            &policy,
                            &worker.metrics,
                            &Denial::SensitiveData { response: false },
                        ) {
                            return action;
                        }
                    }
                }
            }
        }
        let blocking_scan = self
            .request_redactor
            .as_ref()
            .is_some_and(|r| r.policy().action == RedactAction::Block);
        if policy.allow_on_headers_stop_iteration && (self.body_check.is_some() || blocking_scan) {
            self.holding_request = true;
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.responded {
            return Action::Continue;
        }
        let worker_rc = Rc::clone(&self.worker);
        let worker = worker_rc.borrow();
        let policy = Rc::clone(&worker.policy);
        // Discovery peeks at the first bytes (or, when the body is buffered anyway, reads it whole below).
        if self.body_check.is_none() && !self.request_body_observed {
            self.observe_body(
                &policy,
                BufferType::HttpRequestBody,
                body_size,
                end_of_stream,
            );
        }

        if let Some((schema, check)) = self.body_check {
            let limit = pipeline::body_limit(&policy, schema);
            if !end_of_stream && body_size <= limit {
                return Action::Pause; // buffer until the end of the body
            }
            // At most one byte past the limit is read: enough to know it is too large.
            let body = read_body(
                BufferType::HttpRequestBody,
                body_size.min(limit.saturating_add(1)),
            );
            if let (Some(observation), Some(config)) =
                (self.observation.as_mut(), policy.discovery.as_ref())
            {
                observation.request_body(config, &body, end_of_stream);
                self.request_body_observed = true;
            }
            let (event, denial) = pipeline::check_body(&policy, schema, check, &body);
            worker.metrics.record(&event);
            self.body_check = None;
            if let Some(denial) = denial {
                if let Some(action) = self.judge(&policy, &worker.metrics, &denial) {
                    return action;
                }
            }
            if let Some(mut redactor) = self.request_redactor.take() {
                // Everything buffered so far goes through the redactor at once; if the body goes on
                // (a report-mode schema let an oversized body through), the redactor stays for the rest.
                let body = read_body(BufferType::HttpRequestBody, body_size);
                self.scratch.clear();
                redactor.push(&body, end_of_stream, &mut self.scratch);
                if !end_of_stream {
                    if redactor.policy().action == RedactAction::Redact {
                        let _ = hostcalls::set_buffer(
                            BufferType::HttpRequestBody,
                            0,
                            body_size,
                            &self.scratch,
                        );
                    }
                    self.request_redactor = Some(redactor);
                    return Action::Continue;
                }
                self.count_findings(&worker.metrics, &redactor, Side::Request);
                if let Some(action) =
                    self.finish_request_redaction(&policy, &worker.metrics, &redactor, body_size)
                {
                    return action;
                }
            }
            return Action::Continue;
        }

        let Some(mut redactor) = self.request_redactor.take() else {
            return Action::Continue;
        };
        let action = redactor.policy().action;
        if action == RedactAction::Block && !end_of_stream {
            let limit = redactor.policy().max_buffer_bytes;
            self.request_redactor = Some(redactor);
            if body_size > limit {
                self.request_redactor = None;
                worker.metrics.inc("redaction_too_large");
                if let Some(action) = self.judge(
                    &policy,
                    &worker.metrics,
                    &Denial::SensitiveData { response: false },
                ) {
                    return action;
                }
                return Action::Continue;
            }
            return Action::Pause;
        }
        let chunk = read_body(BufferType::HttpRequestBody, body_size);
        self.scratch.clear();
        redactor.push(&chunk, end_of_stream, &mut self.scratch);
        if end_of_stream {
            self.count_findings(&worker.metrics, &redactor, Side::Request);
            if let Some(action) =
                self.finish_request_redaction(&policy, &worker.metrics, &redactor, body_size)
            {
                return action;
            }
        } else if action == RedactAction::Redact {
            let _ = hostcalls::set_buffer(BufferType::HttpRequestBody, 0, body_size, &self.scratch);
            self.request_redactor = Some(redactor);
        } else {
            self.request_redactor = Some(redactor);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if let Some(observation) = self.observation.as_mut() {
            // Also for the filter's own refusals: discovery records refused requests too.
            let worker = self.worker.borrow();
            if let Some(config) = worker.policy.discovery.as_ref() {
                let headers = hostcalls::get_map(MapType::HttpResponseHeaders).unwrap_or_default();
                observation.response(config, &HeaderList::new(headers));
            }
        }
        if self.responded {
            return Action::Continue;
        }
        for (name, value) in &self.response_headers {
            let _ = hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value);
        }
        let Some(redaction) = self.response_redaction.take() else {
            return Action::Continue;
        };
        if end_of_stream {
            return Action::Continue;
        }
        let worker_rc = Rc::clone(&self.worker);
        let worker = worker_rc.borrow();
        let policy = Rc::clone(&worker.policy);
        let content_type = hostcalls::get_map_value(MapType::HttpResponseHeaders, "content-type")
            .ok()
            .flatten();
        let encoding = hostcalls::get_map_value(MapType::HttpResponseHeaders, "content-encoding")
            .ok()
            .flatten();
        match redaction.decide(content_type.as_deref(), encoding.as_deref()) {
            BodyDecision::Scan(kind) => {
                let blocking = redaction.action == RedactAction::Block;
                if redaction.rewrites() || (blocking && !policy.allow_on_headers_stop_iteration) {
                    // The body's length changes (or may be replaced): the client must not rely on it.
                    let _ = hostcalls::set_map_value(
                        MapType::HttpResponseHeaders,
                        "content-length",
                        None,
                    );
                }
                self.response_redactor = Some(StreamRedactor::new(redaction, kind));
                if blocking && policy.allow_on_headers_stop_iteration {
                    self.holding_response = true;
                    return Action::Pause;
                }
            }
            BodyDecision::PassUnscanned => worker.metrics.inc("redaction_unscanned"),
            BodyDecision::BlockUnscanned => {
                worker.metrics.inc("redaction_unscanned");
                if let Some(action) = self.judge(
                    &policy,
                    &worker.metrics,
                    &Denial::SensitiveData { response: true },
                ) {
                    return action;
                }
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.responded {
            return Action::Continue;
        }
        let worker_rc = Rc::clone(&self.worker);
        let worker = worker_rc.borrow();
        let policy = Rc::clone(&worker.policy);
        if self.response_blocked {
            let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body_size, &[]);
            return Action::Continue;
        }
        if !self.response_body_observed {
            self.observe_body(
                &policy,
                BufferType::HttpResponseBody,
                body_size,
                end_of_stream,
            );
        }
        let Some(mut redactor) = self.response_redactor.take() else {
            return Action::Continue;
        };
        let action = redactor.policy().action;
        if action == RedactAction::Block {
            if body_size > redactor.policy().max_buffer_bytes {
                worker.metrics.inc("redaction_too_large");
                return self.block_response(&policy, &worker.metrics, body_size);
            }
            if !end_of_stream {
                self.response_redactor = Some(redactor);
                return Action::Pause;
            }
            let body = read_body(BufferType::HttpResponseBody, body_size);
            self.scratch.clear();
            redactor.push(&body, true, &mut self.scratch);
            self.count_findings(&worker.metrics, &redactor, Side::Response);
            if !redactor.findings().is_empty() {
                return self.block_response(&policy, &worker.metrics, body_size);
            }
            return Action::Continue;
        }
        let chunk = read_body(BufferType::HttpResponseBody, body_size);
        self.scratch.clear();
        redactor.push(&chunk, end_of_stream, &mut self.scratch);
        if action == RedactAction::Redact && (self.scratch.as_slice() != chunk.as_slice()) {
            if let Err(e) =
                hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body_size, &self.scratch)
            {
                log::warn!("{}: cannot rewrite the response body: {e:?}", policy.name);
            }
        }
        if end_of_stream {
            self.count_findings(&worker.metrics, &redactor, Side::Response);
        } else {
            self.response_redactor = Some(redactor);
        }
        Action::Continue
    }
}

impl ApiGuard {
    /// Gathers the first bytes of a body (up to discovery's `max_body_bytes`) and hands them to the
    /// observation once: at the end of the body, or when the cap is reached.
    fn observe_body(
        &mut self,
        policy: &Policy,
        buffer: BufferType,
        size: usize,
        end_of_stream: bool,
    ) {
        let (Some(observation), Some(config)) =
            (self.observation.as_mut(), policy.discovery.as_ref())
        else {
            return;
        };
        let request = buffer == BufferType::HttpRequestBody;
        let peek = if request {
            &mut self.request_peek
        } else {
            &mut self.response_peek
        };
        let room = config.max_body_bytes.saturating_sub(peek.len());
        if room > 0 && size > 0 {
            peek.extend_from_slice(&read_body(buffer, size.min(room)));
        }
        let full = peek.len() >= config.max_body_bytes;
        if !end_of_stream && !full {
            return;
        }
        let complete = end_of_stream && !full;
        let bytes = std::mem::take(peek);
        if request {
            observation.request_body(config, &bytes, complete);
            self.request_body_observed = true;
        } else {
            observation.response_body(config, &bytes, complete);
            self.response_body_observed = true;
        }
    }

    /// After the request body's redaction: block it, or forward what the redactor wrote.
    fn finish_request_redaction(
        &mut self,
        policy: &Policy,
        metrics: &Metrics,
        redactor: &StreamRedactor,
        body_size: usize,
    ) -> Option<Action> {
        match redactor.policy().action {
            RedactAction::Block if !redactor.findings().is_empty() => {
                metrics.inc("redaction_blocked");
                self.judge(policy, metrics, &Denial::SensitiveData { response: false })
            }
            RedactAction::Redact => {
                let _ =
                    hostcalls::set_buffer(BufferType::HttpRequestBody, 0, body_size, &self.scratch);
                None
            }
            _ => None,
        }
    }

    /// A response with sensitive data under `block`: replaced by an error. With held headers it is a
    /// proper 502; otherwise the headers are gone and only the body can be replaced.
    fn block_response(&mut self, policy: &Policy, metrics: &Metrics, body_size: usize) -> Action {
        metrics.inc("redaction_blocked");
        if !self.enforced {
            metrics.inc("report_only_denied");
            return Action::Continue;
        }
        if self.holding_response {
            return self.refuse(
                policy,
                metrics,
                &Denial::SensitiveData { response: true },
                &[],
            );
        }
        metrics.inc("denied");
        self.response_blocked = true;
        let _ = hostcalls::set_buffer(
            BufferType::HttpResponseBody,
            0,
            body_size,
            reply::sensitive_data_body(),
        );
        Action::Continue
    }
}

fn read_body(buffer: BufferType, size: usize) -> Vec<u8> {
    hostcalls::get_buffer(buffer, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn apply(policy: &Policy, map: MapType, change: &HeaderChange) {
    let result = match change {
        HeaderChange::Remove(name) => hostcalls::set_map_value(map, name, None),
        HeaderChange::Set(name, value) => hostcalls::set_map_value(map, name, Some(value)),
    };
    if let Err(e) = result {
        log::warn!("{}: cannot change a header: {e:?}", policy.name);
    }
}

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
