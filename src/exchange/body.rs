//! The body state machine, one per direction: what a body must wait for, and what happens at its
//! end (the last data chunk or the trailers, whichever comes first).
//!
//! A body is **held** (paused in the proxy, which buffers it) while something must see it whole:
//! the schema check (request), a `block` redaction policy, or a `redact` policy while the body is
//! at most [`REDACT_HOLD_BYTES`]. Past its bound a held body is refused (schema: 413; `block`:
//! `redaction_too_large`) or, for `redact` and `report`, **streams**: each chunk is scanned as it
//! passes, with the redactor's bounded hold-back (`src/redact/stream.rs`).
//!
//! Held bodies are judged whole at their end, including when trailers end them; nothing is
//! released before its verdict. A streamed `redact` body whose trailers arrive while the redactor
//! still holds bytes back cannot be finished (the proxy offers no way to add body bytes from the
//! trailers callback): the stream is reset and `redaction_trailers_reset` counted — never a
//! truncated or unredacted body.

use super::{Counter, Exchange, Flow, StreamHost, Worker};
use crate::config::Policy;
use crate::discovery::observe::Side;
use crate::pipeline;
use crate::redact::{Action as RedactAction, BodyKind, Findings, Redaction, StreamRedactor};
use crate::refusal::{self, Denial};
use crate::schema::BodyCheck;
use std::sync::Arc;

/// A `redact` body up to this size is held and rewritten whole, so that trailers can end it;
/// longer ones stream. Below Envoy's default buffer limit (1 MiB), which answers 413/500 past it.
pub const REDACT_HOLD_BYTES: usize = 256 * 1024;

/// One callback's worth of body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// `size` bytes are buffered in the proxy (this chunk, plus whatever was held before it).
    Data { size: usize, end_of_stream: bool },
    /// Trailers: the body (if any) is over.
    Trailers,
}

/// One direction's body plan.
#[derive(Default)]
pub struct BodyGate {
    /// Request only: the schema check that needs the whole body (schema index, what to check).
    schema: Option<(usize, BodyCheck)>,
    schema_limit: usize,
    redactor: Option<StreamRedactor>,
    /// Past its bound, the body flows chunk by chunk.
    streaming: bool,
    /// Discovery's first bytes, gathered across streamed chunks.
    peek: Vec<u8>,
    observed: bool,
    ended: bool,
    /// A data callback has come (so the trailers callback knows whether the proxy holds any).
    seen_data: bool,
    /// The last data callback paused: the proxy still holds the body, readable in the trailers.
    last_paused: bool,
    scratch: Vec<u8>,
}

impl BodyGate {
    pub(crate) fn for_schema(policy: &Policy, check: Option<(usize, BodyCheck)>) -> BodyGate {
        BodyGate {
            schema_limit: check.map_or(0, |(schema, _)| pipeline::body_limit(policy, schema)),
            schema: check,
            ..BodyGate::default()
        }
    }

    pub(crate) fn scan(&mut self, policy: Arc<Redaction>, kind: BodyKind) {
        self.redactor = Some(StreamRedactor::new(policy, kind));
    }

    /// Whether nothing may pass before the body's verdict (so headers may be held too).
    pub(crate) fn must_see_whole_body(&self) -> bool {
        self.schema.is_some()
            || self
                .redactor
                .as_ref()
                .is_some_and(|r| r.policy().action == RedactAction::Block)
    }

    /// The size up to which the body is held, `None` when it streams.
    fn hold_limit(&self) -> Option<usize> {
        if self.streaming {
            return None;
        }
        if self.schema.is_some() {
            return Some(self.schema_limit);
        }
        let policy = self.redactor.as_ref()?.policy();
        match policy.action {
            RedactAction::Block => Some(policy.max_buffer_bytes),
            RedactAction::Redact => Some(policy.max_buffer_bytes.min(REDACT_HOLD_BYTES)),
            RedactAction::Report => None,
        }
    }
}

/// The body bytes a callback can see: their size, and the bytes once read.
struct Buffered {
    size: usize,
    end: bool,
    trailers: bool,
    bytes: Option<Vec<u8>>,
}

impl Buffered {
    /// The first `max` bytes (read from the proxy once).
    fn read(
        &mut self,
        host: &mut dyn StreamHost,
        side: Side,
        max: usize,
    ) -> Result<Vec<u8>, super::HostFault> {
        if let Some(bytes) = &self.bytes {
            return Ok(bytes
                .get(..max.min(bytes.len()))
                .unwrap_or_default()
                .to_vec());
        }
        if max == 0 {
            return Ok(Vec::new());
        }
        host.body(side, max)
    }
}

impl Exchange {
    pub(super) fn on_body(
        &mut self,
        worker: &mut Worker,
        host: &mut dyn StreamHost,
        side: Side,
        chunk: Chunk,
    ) -> Flow {
        if self.responded {
            return Flow::Continue;
        }
        if side == Side::Response && self.response_blocked {
            if let Chunk::Data { size, .. } = chunk {
                if host.set_body(side, size, &[]).is_err() {
                    host.reset();
                }
            }
            return Flow::Continue;
        }
        if self.gate(side).ended {
            return Flow::Continue;
        }
        let mut body = match chunk {
            Chunk::Data {
                size,
                end_of_stream,
            } => Buffered {
                size,
                end: end_of_stream,
                trailers: false,
                bytes: None,
            },
            Chunk::Trailers => {
                // Only a body the proxy still holds can be read now (after a `Continue` the proxy's
                // pointer to the last chunk is stale). It is at most the proxy's buffer limit.
                let gate = self.gate(side);
                let bytes = if gate.last_paused || !gate.seen_data {
                    match host.body(side, usize::MAX) {
                        Ok(bytes) => bytes,
                        Err(fault) => {
                            return self.unreadable(worker, host, fault);
                        }
                    }
                } else {
                    Vec::new()
                };
                Buffered {
                    size: bytes.len(),
                    end: true,
                    trailers: true,
                    bytes: Some(bytes),
                }
            }
        };
        let flow = self.body_step(worker, host, side, &mut body);
        let gate = self.gate_mut(side);
        gate.seen_data |= !body.trailers;
        gate.last_paused = flow == Flow::Pause;
        flow
    }

    fn body_step(
        &mut self,
        worker: &mut Worker,
        host: &mut dyn StreamHost,
        side: Side,
        body: &mut Buffered,
    ) -> Flow {
        // Held: wait for the end, or deal with a body that outgrew its bound.
        while let Some(limit) = self.gate(side).hold_limit() {
            if body.size <= limit {
                if !body.end {
                    return Flow::Pause;
                }
                return match body.read(host, side, body.size) {
                    Ok(whole) => self.end_held(worker, host, side, &whole),
                    Err(fault) => self.unreadable(worker, host, fault),
                };
            }
            if let Some(flow) = self.outgrown(worker, host, side) {
                return flow;
            }
        }
        self.stream(worker, host, side, body)
    }

    /// The end of a held body: judge it whole.
    fn end_held(
        &mut self,
        worker: &mut Worker,
        host: &mut dyn StreamHost,
        side: Side,
        body: &[u8],
    ) -> Flow {
        self.gate_mut(side).ended = true;
        self.observe(worker, side, body, true);
        if let Some((schema, check)) = self.gate_mut(side).schema.take() {
            let (event, denial) = pipeline::check_body(&worker.policy, schema, check, body);
            host.event(&event);
            if let Some(denial) = denial {
                if let Some(flow) = self.judge(worker, host, &denial, &[]) {
                    return flow;
                }
            }
        }
        let Some(mut redactor) = self.gate_mut(side).redactor.take() else {
            return Flow::Continue;
        };
        let mut out = std::mem::take(&mut self.gate_mut(side).scratch);
        out.clear();
        redactor.push(body, true, &mut out);
        self.count_findings(host, &redactor, side);
        let flow = match redactor.policy().action {
            RedactAction::Block if !redactor.findings().is_empty() => {
                host.count(Counter::RedactionBlocked, 1);
                self.block(worker, host, side, body.len())
            }
            RedactAction::Redact if out != body => {
                if host.set_body(side, body.len(), &out).is_err() {
                    self.unwritable(worker, host)
                } else {
                    Flow::Continue
                }
            }
            _ => Flow::Continue,
        };
        self.gate_mut(side).scratch = out;
        flow
    }

    /// A held body grew past its bound. `Some(flow)` ends the callback (a refusal, a block);
    /// `None`: the plan changed (the schema gave way in report mode, or the body now streams).
    fn outgrown(
        &mut self,
        worker: &mut Worker,
        host: &mut dyn StreamHost,
        side: Side,
    ) -> Option<Flow> {
        let gate = self.gate_mut(side);
        if let Some((schema, _)) = gate.schema.take() {
            let rejection = worker
                .policy
                .schemas
                .policies
                .get(schema)
                .map(crate::schema::SchemaPolicy::too_large)?;
            host.event(&pipeline::Event::SchemaRejected(rejection.reason()));
            // In report mode the body goes on under the remaining plan.
            return self.judge(worker, host, &Denial::Schema(rejection), &[]);
        }
        let action = gate.redactor.as_ref().map(|r| r.policy().action)?;
        if action == RedactAction::Block {
            gate.redactor = None;
            host.count(Counter::RedactionTooLarge, 1);
            return Some(self.block(worker, host, side, 0));
        }
        gate.streaming = true;
        None
    }

    /// A body that flows: scan what is buffered now and let it go.
    fn stream(
        &mut self,
        worker: &mut Worker,
        host: &mut dyn StreamHost,
        side: Side,
        body: &mut Buffered,
    ) -> Flow {
        if body.end {
            self.gate_mut(side).ended = true;
        }
        let wants_chunk = self.gate(side).redactor.is_some();
        let read = if wants_chunk {
            body.size
        } else {
            body.size.min(self.peek_room(worker, side))
        };
        let chunk = match body.read(host, side, read) {
            Ok(chunk) => chunk,
            Err(fault) if wants_chunk => return self.unreadable(worker, host, fault),
            Err(_) => Vec::new(),
        };
        self.peek(worker, side, &chunk, body.end);
        let Some(mut redactor) = self.gate_mut(side).redactor.take() else {
            return Flow::Continue;
        };
        let readable = !body.trailers || self.gate(side).last_paused;
        if body.trailers && !readable && redactor.policy().rewrites() && redactor.held_bytes() > 0 {
            // The proxy takes no body bytes in the trailers callback: the held-back tail would be lost.
            host.count(Counter::RedactionTrailersReset, 1);
            self.log(
                worker,
                host,
                "a streamed body ended with trailers while bytes were held back; resetting the stream",
            );
            host.reset();
            return Flow::Pause;
        }
        let mut out = std::mem::take(&mut self.gate_mut(side).scratch);
        out.clear();
        redactor.push(&chunk, body.end, &mut out);
        let mut flow = Flow::Continue;
        if redactor.policy().rewrites()
            && readable
            && out != chunk
            && host.set_body(side, chunk.len(), &out).is_err()
        {
            flow = self.unwritable(worker, host);
        }
        if body.end {
            self.count_findings(host, &redactor, side);
        } else {
            self.gate_mut(side).redactor = Some(redactor);
        }
        self.gate_mut(side).scratch = out;
        flow
    }

    /// A body that must be judged cannot be read: reset rather than let it pass unjudged.
    fn unreadable(
        &mut self,
        worker: &mut Worker,
        host: &mut dyn StreamHost,
        fault: super::HostFault,
    ) -> Flow {
        host.count(Counter::BodyUnreadable, 1);
        self.log(
            worker,
            host,
            &format!("cannot read a body ({fault:?}); resetting the stream"),
        );
        host.reset();
        Flow::Pause
    }

    /// Sensitive data under `block`: the request is refused; a response is refused while its
    /// headers are held, and otherwise its body is replaced (the headers are gone).
    fn block(
        &mut self,
        worker: &mut Worker,
        host: &mut dyn StreamHost,
        side: Side,
        body_len: usize,
    ) -> Flow {
        let denial = Denial::SensitiveData {
            response: side == Side::Response,
        };
        if side == Side::Request || self.holding_response_headers {
            return self
                .judge(worker, host, &denial, &[])
                .unwrap_or(Flow::Continue);
        }
        if !self.enforced {
            host.count(Counter::ReportOnlyDenied, 1);
            return Flow::Continue;
        }
        host.count(Counter::Denied, 1);
        self.response_blocked = true;
        let len = if body_len == 0 { usize::MAX } else { body_len };
        let len = match host.body(side, len) {
            Ok(held) => held.len(),
            Err(_) => 0,
        };
        if host
            .set_body(side, len, refusal::sensitive_data_body())
            .is_err()
        {
            host.reset();
        }
        Flow::Continue
    }

    /// A rewritten body or header could not be written back: never forward it unredacted.
    pub(super) fn unwritable(&mut self, worker: &mut Worker, host: &mut dyn StreamHost) -> Flow {
        host.count(Counter::BodyUnwritable, 1);
        self.log(worker, host, "cannot rewrite a body; resetting the stream");
        host.reset();
        Flow::Pause
    }

    fn count_findings(&mut self, host: &mut dyn StreamHost, redactor: &StreamRedactor, side: Side) {
        self.record_findings(host, redactor.policy(), redactor.findings(), side);
        if redactor.changed() {
            host.count(Counter::RedactionBodiesChanged, 1);
        }
    }

    /// Counts what a redaction policy found, per class (never values), and hands the classes to
    /// discovery.
    pub(super) fn record_findings(
        &mut self,
        host: &mut dyn StreamHost,
        policy: &Redaction,
        findings: &Findings,
        side: Side,
    ) {
        let named = findings.named(policy);
        for (class, count) in &named {
            host.count_named(
                &format!("redaction_{}_{}", policy.name, class),
                u64::from(*count),
            );
        }
        if let Some(observation) = self.observation.as_mut() {
            let classes: Vec<&str> = named.iter().map(|(class, _)| *class).collect();
            observation.add_data_classes(side, &classes);
        }
    }

    fn peek_room(&self, worker: &Worker, side: Side) -> usize {
        match (&self.observation, worker.policy.discovery.as_ref()) {
            (Some(_), Some(config)) if !self.gate(side).observed => config
                .max_body_bytes
                .saturating_sub(self.gate(side).peek.len()),
            _ => 0,
        }
    }

    /// Gathers discovery's first bytes of a streamed body, and hands them over once: at the end
    /// of the body, or when the cap is reached.
    fn peek(&mut self, worker: &Worker, side: Side, chunk: &[u8], end: bool) {
        let room = self.peek_room(worker, side);
        let Some(config) = worker.policy.discovery.as_ref() else {
            return;
        };
        if self.observation.is_none() || self.gate(side).observed {
            return;
        }
        let gate = self.gate_mut(side);
        gate.peek
            .extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
        let full = gate.peek.len() >= config.max_body_bytes;
        if !end && !full {
            return;
        }
        let bytes = std::mem::take(&mut gate.peek);
        self.observe(worker, side, &bytes, end && !full);
    }

    fn observe(&mut self, worker: &Worker, side: Side, body: &[u8], complete: bool) {
        let (Some(observation), Some(config)) =
            (self.observation.as_mut(), worker.policy.discovery.as_ref())
        else {
            return;
        };
        match side {
            Side::Request => observation.request_body(config, body, complete),
            Side::Response => observation.response_body(config, body, complete),
        }
        self.gate_mut(side).observed = true;
    }

    fn gate(&self, side: Side) -> &BodyGate {
        match side {
            Side::Request => &self.request_body,
            Side::Response => &self.response_body,
        }
    }

    fn gate_mut(&mut self, side: Side) -> &mut BodyGate {
        match side {
            Side::Request => &mut self.request_body,
            Side::Response => &mut self.response_body,
        }
    }
}
