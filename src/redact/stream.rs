//! Chunk-by-chunk redaction with a bounded hold-back.
//!
//! # Memory bound
//! Between two chunks a [`StreamRedactor`] holds at most `window + 72` bytes of the body
//! (`window` is 512 bytes, 8256 with the JWT detector on, at least 1024 with custom detectors;
//! see [`Redaction::window`]) plus its fixed state: the JSON path (at most 128 levels, member
//! names cut at 256 bytes, kept only when pointers are configured), the member name being read
//! (256 bytes) and custom-detector matches ahead in the current 1 KiB window. While a chunk is
//! processed, that chunk is held too. Field-rule values and private-key blocks longer than the
//! window are dropped as they pass (not held) and their mask is written when they end.
//!
//! # Output
//! The concatenation of everything [`StreamRedactor::push`] appends to `out` is byte-for-byte
//! what [`super::redact`] gives for the whole body, however the body is split. With an action
//! other than `redact`, each chunk is appended to `out` unchanged as soon as it arrives.

use super::scan::{Engine, Findings, LOOKBACK};
use super::{BodyKind, Redaction};
use std::sync::Arc;

/// One body being redacted as it streams (one per request and direction).
pub struct StreamRedactor {
    policy: Arc<Redaction>,
    engine: Engine,
    /// Body bytes from absolute offset `base` on that are still needed.
    buf: Vec<u8>,
    base: u64,
    finished: bool,
}

impl StreamRedactor {
    pub fn new(policy: Arc<Redaction>, kind: BodyKind) -> StreamRedactor {
        let engine = Engine::new(&policy, kind);
        StreamRedactor {
            policy,
            engine,
            buf: Vec::new(),
            base: 0,
            finished: false,
        }
    }

    /// Feeds the next chunk and appends to `out` the output bytes that are now final. With
    /// `end_of_stream`, everything left is written. Chunks after the end are ignored.
    pub fn push(&mut self, chunk: &[u8], end_of_stream: bool, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        if !self.policy.rewrites() {
            out.extend_from_slice(chunk);
        }
        self.buf.extend_from_slice(chunk);
        self.engine
            .run(&self.policy, &self.buf, self.base, end_of_stream, out);
        if end_of_stream {
            self.finished = true;
            self.buf = Vec::new();
            return;
        }
        let mut keep_from = self.engine.pos.saturating_sub(LOOKBACK as u64);
        if self.policy.rewrites() {
            keep_from = keep_from.min(self.engine.writer.out_pos);
        }
        let drop = usize::try_from(keep_from.saturating_sub(self.base))
            .unwrap_or(0)
            .min(self.buf.len());
        if drop > 0 {
            self.buf.drain(..drop);
            self.base = self.base.saturating_add(drop as u64);
        }
    }

    /// Counts per class found so far (never values).
    pub fn findings(&self) -> &Findings {
        &self.engine.findings
    }

    /// Whether any output byte differs from the input so far.
    pub fn changed(&self) -> bool {
        self.engine.writer.changed
    }

    /// Whether the end of the body has been pushed.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Body bytes currently held back.
    pub fn held_bytes(&self) -> usize {
        self.buf.len()
    }

    pub fn policy(&self) -> &Arc<Redaction> {
        &self.policy
    }
}
