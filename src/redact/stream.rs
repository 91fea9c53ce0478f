//! Chunk-by-chunk redaction with a bounded hold-back.
//!
//! # Memory bound
//! Between two chunks a [`StreamRedactor`] holds at most `window + 72` bytes of the body
//! (`window` is 512 bytes, 8256 with the JWT detector on, at least 1024 with custom detectors;
//! see [`Redaction::window`]) plus its fixed state: the JSON path (at most 128 levels, member
//! names cut at 256 bytes, kept only when pointers are configured), the member name being read
//! (256 bytes) and custom-detector matches ahead in the current 1 KiB window. While a chunk is
//! processed, that chunk is held too. The decoded view of a candidate (`decode`) is a scratch
//! buffer of at most 320 bytes and 320 offsets, reused for the whole body. Field-rule values and
//! private-key blocks longer than the window are dropped as they pass (not held) and their mask
//! is written when they end.
//!
//! A UTF-16 or UTF-32 body (see `utf`) is transcoded as it streams: the hold-back is then
//! counted in UTF-8 bytes, plus at most 3 bytes of an incomplete code unit and 5 of an
//! incomplete UTF-8 (or private six-byte) sequence; the first 4 bytes are held until they tell
//! the encoding.
//!
//! # Output
//! The concatenation of everything [`StreamRedactor::push`] appends to `out` is byte-for-byte
//! what [`super::redact`] gives for the whole body, however the body is split. With an action
//! other than `redact`, each chunk is appended to `out` unchanged as soon as it arrives.

use super::scan::{Engine, Findings, LOOKBACK};
use super::utf::{self, Decoder, Encoder};
use super::{BodyKind, Redaction};
use std::sync::Arc;

/// One body being redacted as it streams (one per request and direction).
pub struct StreamRedactor {
    policy: Arc<Redaction>,
    kind: BodyKind,
    engine: Engine,
    /// The first bytes, until four of them (or the end) tell the encoding.
    head: Vec<u8>,
    decided: bool,
    /// Transcoding for a UTF-16/32 body: bytes → UTF-8 for the engine, its output back.
    transcode: Option<(Decoder, Encoder)>,
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
            kind,
            engine,
            head: Vec::new(),
            decided: false,
            transcode: None,
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
        if self.decided {
            self.feed(chunk, end_of_stream, out);
        } else {
            self.head.extend_from_slice(chunk);
            if self.head.len() < 4 && !end_of_stream {
                return;
            }
            self.decided = true;
            let head = std::mem::take(&mut self.head);
            let sniffed = utf::sniff(head.get(..4).unwrap_or(&head), self.kind == BodyKind::Json);
            let skip = match sniffed {
                Some((enc, bom)) => {
                    self.transcode = Some((Decoder::new(enc), Encoder::new(enc, bom > 0)));
                    bom
                }
                None => 0,
            };
            self.feed(head.get(skip..).unwrap_or(&[]), end_of_stream, out);
        }
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

    /// Runs the engine on the next body bytes (transcoded first for a UTF-16/32 body).
    fn feed(&mut self, bytes: &[u8], end: bool, out: &mut Vec<u8>) {
        let Some((dec, enc)) = self.transcode.as_mut() else {
            self.buf.extend_from_slice(bytes);
            self.engine
                .run(&self.policy, &self.buf, self.base, end, out);
            return;
        };
        let tail = dec.push(bytes, end, &mut self.buf);
        let mut text_out = Vec::new();
        self.engine
            .run(&self.policy, &self.buf, self.base, end, &mut text_out);
        if self.policy.rewrites() {
            enc.push(&text_out, end, out);
            if end {
                out.extend_from_slice(&tail);
            }
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
        self.buf.len() + self.head.len()
    }

    pub fn policy(&self) -> &Arc<Redaction> {
        &self.policy
    }
}
