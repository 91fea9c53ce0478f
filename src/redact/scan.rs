//! The single pass over a body's bytes.
//!
//! A lexer for the body kind (JSON, form, text) walks the bytes once; inside scannable content
//! (JSON strings, form values, text) a 256-entry byte table says whether a byte can start a
//! match, and only at token starts (a byte whose predecessor is not a word byte) are the
//! detectors for that first byte tried: digits → card, SSN, phone; `A`-`Z` → IBAN, AWS key;
//! `e` → JWT; `g`/`x`/`s`/`r` → GitHub, GitLab, Slack, Stripe; `@` → email (local part read
//! backwards); `+`/`(` → phone; `-` → PEM private key. There are no regexes for the built-ins.
//!
//! # Fast path
//! Most bytes start nothing. `Engine::plain_run` crosses runs of them in a tight loop, keeping
//! only `prev_word` (for the run's last byte), and cheap first-bytes gates decide at each token
//! start whether any detector could match there (`may_start`, `few_digits`,
//! `lone_short_number`); everything else goes through the per-byte dispatch of
//! `Engine::content`, which stays the reference: tests run both on random and adversarial
//! bodies, one-shot and split at every chunk boundary, and require the same output and counts.
//!
//! # Windows and determinism
//! A detector at position `i` reads at most `window` bytes from `i` (and the few bytes before
//! it). When the scan is not at the end of the body it stops `window` bytes before the end of
//! what it has, so a streamed body is scanned with exactly the same inputs as a whole one and
//! gives exactly the same matches and output; all state (lexer, JSON path, partial member
//! name, dropped region) lives in [`Engine`].
//!
//! # Dropped regions
//! Field-rule values and private-key blocks are not bounded by the window: their bytes are
//! dropped as they pass (and hashed incrementally for the hash mask) and the mask is written
//! when they end: at the closing quote, the end of the number, the next `&`, the PEM `END` line,
//! or the end of the body (a key block that never ends is masked to the end of its JSON string,
//! form value or body: fail closed).

use super::decode::{self, Enc, View};
use super::detectors as d;
use super::json::JsonCtx;
use super::rewrite::Writer;
use super::utf;
use super::{BodyKind, Redaction, CARD, CUSTOM_WINDOW, EMAIL, IBAN, JWT, PHONE, PRIVATE_KEY, SSN};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::VecDeque;

/// Bytes kept before the scan position: the longest email local part plus one, and room for
/// the two bytes of left context other detectors read.
pub(crate) const LOOKBACK: usize = 72;

/// Raw bytes looked at to decide whether a candidate needs the decoded view.
const VIEW_PROBE: usize = 48;
/// Most decoded bytes a detector reads (the longest email domain, with room around it).
const VIEW_MAX: usize = 320;

/// The outcome of a candidate that starts with an encoded or non-ASCII character.
enum Step {
    /// A match; scanning resumes at this offset.
    Found(usize),
    /// No match: skip the character's `len` raw bytes; `word` if it decodes to a word byte.
    Pass { word: bool, len: usize },
}

// Byte classes of the content tables.
const PLAIN: u8 = 0; // word byte that starts no detector
const START: u8 = 1; // word byte that may start a detector at a token start
const OTHER: u8 = 2; // non-word byte that starts nothing
const SPECIAL: u8 = 3; // non-word byte that may start something (@ + ( - %)
const STOP: u8 = 4; // hand back to the lexer

// Const evaluation only: indices are bytes and the table has 256 slots.
#[allow(clippy::indexing_slicing)]
const fn table(stops: &[u8], specials: &[u8]) -> [u8; 256] {
    let mut t = [OTHER; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_digit()
            || c.is_ascii_uppercase()
            || c == b'e'
            || c == b'g'
            || c == b'x'
            || c == b's'
            || c == b'r'
        {
            t[b] = START;
        } else if c.is_ascii_alphanumeric() || c == b'_' {
            // Other lower-case letters start only lower-case IBANs: checked inline (`PLAIN`).
            t[b] = PLAIN;
        } else if c >= 0xC2 && c <= 0xF4 {
            // A UTF-8 lead byte: the character may fold to a digit, a letter or `@`.
            t[b] = SPECIAL;
        }
        b += 1;
    }
    let mut k = 0;
    while k < specials.len() {
        t[specials[k] as usize] = SPECIAL;
        k += 1;
    }
    let mut k = 0;
    while k < stops.len() {
        t[stops[k] as usize] = STOP;
        k += 1;
    }
    t
}

const JSON_TABLE: [u8; 256] = table(b"\"\\", b"@+(-");
const TEXT_TABLE: [u8; 256] = table(b"\n", b"@+(-");
// XML: `&` starts a character reference.
const XML_TABLE: [u8; 256] = table(b"\n", b"@+(-&");
// In form bodies `+` is a space and `%40` an `@`.
const FORM_TABLE: [u8; 256] = table(b"&", b"@%(-");
const FORM_KEY_TABLE: [u8; 256] = table(b"&=", b"@%(-");

#[inline]
fn class_of(t: &[u8; 256], b: u8) -> u8 {
    t.get(usize::from(b)).copied().unwrap_or(OTHER)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Text,
    /// JSON between tokens.
    JsonValue,
    JsonString {
        key: bool,
    },
    JsonEscape {
        key: bool,
    },
    JsonUnicode {
        key: bool,
        left: u8,
    },
    JsonNumber,
    JsonLiteral,
    FormKey,
    FormValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    JsonString,
    JsonNumber,
    FormValue,
    PemEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Json,
    Text,
    Form,
}

struct Skip {
    class: u16,
    quote: bool,
    until: Until,
    hasher: Option<Sha256>,
}

/// What was found in a body: a count per class id, never a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    counts: Vec<u32>,
}

impl Findings {
    fn add(&mut self, class: u16) {
        let i = usize::from(class);
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        if let Some(c) = self.counts.get_mut(i) {
            *c = c.saturating_add(1);
        }
    }

    /// Adds the counts of `other`.
    pub fn merge(&mut self, other: &Findings) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    pub fn count(&self, class: usize) -> u32 {
        self.counts.get(class).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| u64::from(*c)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|c| *c == 0)
    }

    /// `(class id, count)` for every class found at least once.
    pub fn iter(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (i, *c))
    }

    /// `(class name, count)` for every class found, e.g. `[("card", 2), ("password", 1)]`.
    pub fn named<'a>(&'a self, policy: &'a Redaction) -> Vec<(&'a str, u32)> {
        self.iter()
            .map(|(i, c)| (policy.class_name(i), c))
            .collect()
    }
}

/// The result of [`redact`].
#[derive(Debug)]
pub struct Outcome<'a> {
    /// The body to send: the input itself when nothing changed or the action is not `redact`.
    pub body: Cow<'a, [u8]>,
    pub findings: Findings,
    /// Whether `body` differs from the input.
    pub changed: bool,
}

/// Scans (and, with `action: redact`, rewrites) a whole body in one pass. A UTF-16 or UTF-32
/// body (a byte order mark, or for JSON the zero-byte pattern) is scanned as UTF-8 and the
/// output written back in its own encoding (see `utf`).
pub fn redact<'a>(policy: &Redaction, kind: BodyKind, body: &'a [u8]) -> Outcome<'a> {
    let head = body.get(..4).unwrap_or(body);
    if let Some((enc, bom)) = utf::sniff(head, kind == BodyKind::Json) {
        let mut dec = utf::Decoder::new(enc);
        let mut text = Vec::new();
        let tail = dec.push(body.get(bom..).unwrap_or(&[]), true, &mut text);
        let inner = redact_utf8(policy, kind, &text);
        if !policy.rewrites() {
            return Outcome {
                body: Cow::Borrowed(body),
                findings: inner.findings,
                changed: false,
            };
        }
        let mut out = Vec::with_capacity(body.len() + 64);
        utf::Encoder::new(enc, bom > 0).push(&inner.body, true, &mut out);
        out.extend_from_slice(&tail);
        let changed = out != body;
        return Outcome {
            body: if changed {
                Cow::Owned(out)
            } else {
                Cow::Borrowed(body)
            },
            findings: inner.findings,
            changed,
        };
    }
    redact_utf8(policy, kind, body)
}

fn redact_utf8<'a>(policy: &Redaction, kind: BodyKind, body: &'a [u8]) -> Outcome<'a> {
    let mut engine = Engine::new(policy, kind);
    let mut out = Vec::new();
    if engine.writer.enabled {
        out.reserve(body.len() + 64);
    }
    engine.run(policy, body, 0, true, &mut out);
    let changed = engine.writer.changed;
    Outcome {
        body: if changed {
            Cow::Owned(out)
        } else {
            Cow::Borrowed(body)
        },
        findings: engine.findings,
        changed,
    }
}

/// The scanner's state: everything needed to resume at `pos` with the next bytes.
pub(crate) struct Engine {
    lex: Lex,
    form: bool,
    /// How the content spells characters (for the decoded view).
    enc: Enc,
    /// Scratch space for the decoded view of a candidate.
    view: View,
    /// Whether the JSON escape being lexed decodes to a word character.
    esc_word: bool,
    /// Absolute offset just after the last encoded character that glues a card (`_` or a
    /// lower-case letter outside a-f spelled `\u0078`, `%78`, `&#x78;`), or `u64::MAX`.
    glue_at: u64,
    /// Whether the byte before `pos` is a word byte (JSON escapes count as non-word).
    prev_word: bool,
    /// No match may start before this absolute offset (start of the current string, line or
    /// form value, end of an escape sequence, end of the previous match).
    floor: u64,
    /// As `floor`, but not moved by JSON escapes: the start of the current string, line or form
    /// value, or the end of the previous match (decoded e-mail local parts reach back to it).
    hard_floor: u64,
    pub(crate) pos: u64,
    pub(crate) writer: Writer,
    json: JsonCtx,
    form_key: Vec<u8>,
    form_key_overlong: bool,
    skip: Option<Skip>,
    /// Custom-detector matches found ahead in the current unit: (start, end, class).
    custom_q: VecDeque<(u64, u64, u16)>,
    /// Where the current unit continues beyond the searched window.
    custom_more: Option<u64>,
    custom_next: u64,
    unit: Unit,
    new_line: bool,
    pub(crate) findings: Findings,
    /// Tests only: no fast path (`plain_run`), every byte through the per-byte dispatch.
    #[cfg(test)]
    pub(crate) per_byte: bool,
}

fn rel(abs: u64, base: u64) -> usize {
    usize::try_from(abs.saturating_sub(base)).unwrap_or(usize::MAX)
}

fn abs(i: usize, base: u64) -> u64 {
    base.saturating_add(i as u64)
}

fn window(buf: &[u8], i: usize, w: usize) -> &[u8] {
    buf.get(i..buf.len().min(i.saturating_add(w)))
        .unwrap_or(&[])
}

fn is_number_byte(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')
}

impl Engine {
    pub(crate) fn new(policy: &Redaction, kind: BodyKind) -> Engine {
        let (lex, unit) = match kind {
            BodyKind::Json => (Lex::JsonValue, Unit::Json),
            BodyKind::Form => (Lex::FormKey, Unit::Form),
            BodyKind::Text | BodyKind::Xml => (Lex::Text, Unit::Text),
        };
        Engine {
            lex,
            form: kind == BodyKind::Form,
            enc: match kind {
                BodyKind::Json => Enc::Json,
                BodyKind::Form => Enc::Form,
                BodyKind::Text => Enc::Text,
                BodyKind::Xml => Enc::Xml,
            },
            view: View::default(),
            esc_word: false,
            glue_at: u64::MAX,
            prev_word: false,
            floor: 0,
            hard_floor: 0,
            pos: 0,
            writer: Writer {
                enabled: policy.rewrites(),
                ..Writer::default()
            },
            json: JsonCtx::default(),
            form_key: Vec::new(),
            form_key_overlong: false,
            skip: None,
            custom_q: VecDeque::new(),
            custom_more: None,
            custom_next: u64::MAX,
            unit,
            new_line: true,
            findings: Findings::default(),
            #[cfg(test)]
            per_byte: false,
        }
    }

    /// Scans `buf` (whose first byte is at absolute offset `base`) from `self.pos`. Unless `end`,
    /// stops `window` bytes before the end of `buf`; output is produced up to `LOOKBACK` bytes
    /// before the stop (all of it at the end).
    pub(crate) fn run(
        &mut self,
        p: &Redaction,
        buf: &[u8],
        base: u64,
        end: bool,
        out: &mut Vec<u8>,
    ) {
        let len = buf.len();
        let limit = if end {
            len
        } else {
            len.saturating_sub(p.window())
        };
        let mut i = rel(self.pos, base);
        while i < limit {
            i = if self.skip.is_some() {
                self.skip_run(p, buf, base, i, limit, out)
            } else {
                match self.lex {
                    Lex::Text => self.text(p, buf, base, i, limit, out),
                    Lex::JsonValue => self.json_value(p, buf, base, i, limit, out),
                    Lex::JsonString { key } => self.json_string(p, buf, base, i, limit, key, out),
                    Lex::JsonEscape { .. } | Lex::JsonUnicode { .. } => {
                        self.json_escape(buf, base, i)
                    }
                    Lex::JsonNumber => {
                        self.skip_while(buf, i, limit, is_number_byte, Lex::JsonValue)
                    }
                    Lex::JsonLiteral => {
                        self.skip_while(buf, i, limit, |b| b.is_ascii_lowercase(), Lex::JsonValue)
                    }
                    Lex::FormKey => self.form_key(p, buf, base, i, limit, out),
                    Lex::FormValue => self.form_value(p, buf, base, i, limit, out),
                }
            };
        }
        self.pos = abs(i, base);
        if end {
            if self.skip.is_some() {
                self.end_skip(p, base, len, out);
            }
            self.writer.copy_to(buf, base, abs(len, base), out);
        } else if self.skip.is_some() {
            self.writer.drop_to(self.pos);
        } else {
            let to = self.pos.saturating_sub(LOOKBACK as u64);
            self.writer.copy_to(buf, base, to, out);
        }
    }

    fn skip_while(
        &mut self,
        buf: &[u8],
        mut i: usize,
        limit: usize,
        keep: impl Fn(u8) -> bool,
        next: Lex,
    ) -> usize {
        while i < limit {
            match buf.get(i) {
                Some(&b) if keep(b) => i += 1,
                _ => {
                    self.lex = next;
                    return i;
                }
            }
        }
        i
    }

    // ----- matches -------------------------------------------------------------------------

    /// Records a match `[start, end)` (relative) and writes its mask; returns `end`.
    #[allow(clippy::too_many_arguments)] // policy, buffer, base and output are passed, not stored
    fn found(
        &mut self,
        p: &Redaction,
        buf: &[u8],
        base: u64,
        class: u16,
        start: usize,
        end: usize,
        quote: bool,
        out: &mut Vec<u8>,
    ) -> usize {
        self.findings.add(class);
        self.writer.replace(
            buf,
            base,
            abs(start, base),
            abs(end, base),
            &p.mask_spec(class, quote),
            out,
        );
        self.floor = abs(end, base);
        self.hard_floor = self.floor;
        self.prev_word = end
            .checked_sub(1)
            .and_then(|k| buf.get(k))
            .is_some_and(|b| d::is_word(*b));
        end
    }

    #[allow(clippy::too_many_arguments)] // as for `found`
    fn begin_skip(
        &mut self,
        p: &Redaction,
        buf: &[u8],
        base: u64,
        start: usize,
        class: u16,
        quote: bool,
        until: Until,
        out: &mut Vec<u8>,
    ) {
        self.writer.copy_to(buf, base, abs(start, base), out);
        self.skip = Some(Skip {
            class,
            quote,
            until,
            hasher: p.hash_key().map(|k| k.start()),
        });
    }

    fn end_skip(&mut self, p: &Redaction, base: u64, end: usize, out: &mut Vec<u8>) {
        let Some(skip) = self.skip.take() else {
            return;
        };
        self.findings.add(skip.class);
        let mac = match (skip.hasher, p.hash_key()) {
            (Some(h), Some(k)) => Some(k.finish(h)),
            _ => None,
        };
        self.writer.close_dropped(
            abs(end, base),
            &p.mask_spec(skip.class, skip.quote),
            mac.as_ref(),
            out,
        );
        self.floor = abs(end, base);
        self.hard_floor = self.floor;
        self.prev_word = false;
        if skip.until == Until::JsonNumber {
            self.lex = Lex::JsonValue;
        }
    }

    /// Consumes bytes of a dropped region up to its end (not included) or `limit`.
    fn skip_run(
        &mut self,
        p: &Redaction,
        buf: &[u8],
        base: u64,
        start: usize,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> usize {
        let Some(until) = self.skip.as_ref().map(|s| s.until) else {
            return start;
        };
        let mut i = start;
        let mut done = false;
        while i < limit {
            let Some(&b) = buf.get(i) else { break };
            match self.lex {
                Lex::JsonEscape { key } => {
                    self.lex = if b == b'u' {
                        Lex::JsonUnicode { key, left: 4 }
                    } else {
                        Lex::JsonString { key }
                    };
                    i += 1;
                    continue;
                }
                Lex::JsonUnicode { key, left } if b != b'"' => {
                    self.lex = if left <= 1 {
                        Lex::JsonString { key }
                    } else {
                        Lex::JsonUnicode {
                            key,
                            left: left - 1,
                        }
                    };
                    i += 1;
                    continue;
                }
                Lex::JsonUnicode { key, .. } => {
                    self.lex = Lex::JsonString { key };
                }
                _ => {}
            }
            let in_string = matches!(self.lex, Lex::JsonString { .. });
            let stop = match until {
                Until::JsonNumber => !is_number_byte(b),
                Until::FormValue => b == b'&',
                Until::JsonString => b == b'"',
                Until::PemEnd => {
                    (in_string && b == b'"')
                        || (matches!(self.lex, Lex::FormValue | Lex::FormKey) && b == b'&')
                        || (self.lex == Lex::FormKey && b == b'=')
                }
            };
            if stop {
                done = true;
                break;
            }
            if in_string && b == b'\\' {
                if let Lex::JsonString { key } = self.lex {
                    self.lex = Lex::JsonEscape { key };
                }
                i += 1;
                continue;
            }
            if until == Until::PemEnd && b == b'-' {
                if let Some(n) = d::pem_end(window(buf, i, p.window())) {
                    i += n;
                    done = true;
                    break;
                }
            }
            i += 1;
        }
        if let Some(h) = self.skip.as_mut().and_then(|s| s.hasher.as_mut()) {
            h.update(buf.get(start..i).unwrap_or(&[]));
        }
        if done {
            self.end_skip(p, base, i, out);
        }
        i
    }

    // ----- content --------------------------------------------------------------------------

    /// Scans content bytes until a `STOP` byte of `t` (returned, not consumed) or `limit`.
    #[allow(clippy::too_many_arguments)]
    fn content(
        &mut self,
        p: &Redaction,
        buf: &[u8],
        base: u64,
        mut i: usize,
        limit: usize,
        t: &[u8; 256],
        out: &mut Vec<u8>,
    ) -> usize {
        let has_custom = !p.custom().is_empty();
        while i < limit {
            if has_custom && abs(i, base) >= self.custom_next {
                if let Some(next) = self.custom_at(p, buf, base, i, out) {
                    i = next;
                    continue;
                }
            }
            if !self.per_byte_only() {
                let stop = if has_custom {
                    limit.min(rel(self.custom_next, base))
                } else {
                    limit
                };
                i = self.plain_run(p, buf, base, i, stop, t);
                if i >= limit {
                    break;
                }
                if has_custom && abs(i, base) >= self.custom_next {
                    continue;
                }
            }
            let Some(&b) = buf.get(i) else { break };
            match class_of(t, b) {
                PLAIN | START if self.prev_word => {
                    let glue = p.enabled(CARD);
                    if glue
                        && b.is_ascii_digit()
                        && (abs(i, base) == self.glue_at
                            || i.checked_sub(1)
                                .and_then(|k| buf.get(k))
                                .is_some_and(|x| x.is_ascii_alphabetic() || *x == b'_'))
                    {
                        // The card is checked first (short numbers end it at once), the glue after.
                        if let Some(e) = self.glued_card(p, buf, base, i, out) {
                            i = e;
                            continue;
                        }
                    }
                    i += 1;
                    let stop = if has_custom {
                        limit.min(rel(self.custom_next, base))
                    } else {
                        limit
                    };
                    // Skip the rest of the word; stop where a digit follows a non-digit (a card
                    // may be glued there: `x4111…`, `id_4111…`).
                    let rest = buf.get(i..stop).unwrap_or(&[]);
                    i += word_tail(t, rest, glue, b.is_ascii_digit());
                }
                PLAIN => {
                    if b != b'_' && p.enabled(IBAN) && lower_iban_start(buf, i) {
                        if let Some(e) = self.word_start(p, buf, base, i, b, out) {
                            i = e;
                            continue;
                        }
                    }
                    self.prev_word = true;
                    i += 1;
                }
                START => {
                    if let Some(e) = self.word_start(p, buf, base, i, b, out) {
                        i = e;
                        continue;
                    }
                    self.prev_word = true;
                    i += 1;
                }
                OTHER => {
                    self.prev_word = false;
                    i += 1;
                }
                SPECIAL => {
                    if let Some(e) = self.special(p, buf, base, i, b, out) {
                        i = e;
                        if self.skip.is_some() {
                            return i;
                        }
                        continue;
                    }
                    if b >= 0x80 || matches!((b, self.enc), (b'%', Enc::Form) | (b'&', Enc::Xml)) {
                        match self.encoded_start(p, buf, base, i, out) {
                            Step::Found(e) => i = e,
                            Step::Pass { word, len } => {
                                self.prev_word = word;
                                i += len.max(1);
                            }
                        }
                        continue;
                    }
                    self.prev_word = false;
                    i += 1;
                }
                _ => {
                    if b == b'\\' && self.enc == Enc::Json {
                        match self.encoded_start(p, buf, base, i, out) {
                            Step::Found(e) => {
                                i = e;
                                continue;
                            }
                            Step::Pass { word, .. } => self.esc_word = word,
                        }
                    }
                    return i;
                }
            }
        }
        i
    }

    /// The fast path of [`Engine::content`]: from `i` to `stop`, skips the bytes on which the
    /// per-byte dispatch would run no detector and change nothing but `prev_word` (kept here for
    /// the run's last byte), and returns the first byte it cannot decide that way: a token start
    /// that passes [`may_start`], a digit glued to a word that may start a card, an `@`, `%`,
    /// `&`, `(`/`+` at a token start, `--`, a UTF-8 lead byte, a `STOP` byte, or `stop`.
    #[inline]
    fn plain_run(
        &mut self,
        p: &Redaction,
        buf: &[u8],
        base: u64,
        mut i: usize,
        stop: usize,
        t: &[u8; 256],
    ) -> usize {
        let glue = p.enabled(CARD);
        let glue_at = usize::try_from(self.glue_at.wrapping_sub(base)).unwrap_or(usize::MAX);
        let mut word = self.prev_word;
        let mut prev = i
            .checked_sub(1)
            .and_then(|k| buf.get(k))
            .copied()
            .unwrap_or(b' ');
        let s = buf.get(..stop).unwrap_or(buf);
        let iban = p.enabled(IBAN);
        loop {
            if word {
                // The rest of a word's letters: inside a word only a digit may start something.
                while let Some(&b) = s.get(i).filter(|b| b.is_ascii_alphabetic()) {
                    prev = b;
                    i += 1;
                }
            }
            let Some(&b) = s.get(i) else { break };
            match class_of(t, b) {
                OTHER => word = false,
                PLAIN | START if word => {
                    // `content` tries a glued card here (`x4111…`, `id_4111…`).
                    if glue
                        && b.is_ascii_digit()
                        && (i == glue_at || prev.is_ascii_alphabetic() || prev == b'_')
                        && glued_may_card(buf, i, p.window())
                    {
                        break;
                    }
                }
                PLAIN | START
                    if b == b'_'
                        || (b.is_ascii_alphabetic()
                            && !matches!(b, b'A' | b'e' | b'g' | b'x' | b's' | b'r')) =>
                {
                    // Letters that start only IBANs: `content`'s and `word_start`'s own test.
                    if b != b'_' && iban && lower_iban_start(buf, i) {
                        break;
                    }
                    word = true;
                }
                STOP => break,
                START if b.is_ascii_digit() => {
                    if digits_may_match(buf, i, p.window()) {
                        break;
                    }
                    word = true;
                }
                c => match quiet(p, buf, i, b, c, word) {
                    Some(w) => word = w,
                    None => break,
                },
            }
            prev = b;
            i += 1;
        }
        self.prev_word = word;
        i
    }

    /// Whether `content` must go byte by byte (tests compare it with the fast path).
    #[cfg(test)]
    fn per_byte_only(&self) -> bool {
        self.per_byte
    }

    #[cfg(not(test))]
    #[inline(always)]
    fn per_byte_only(&self) -> bool {
        false
    }

    fn before<'b>(&self, buf: &'b [u8], base: u64, i: usize, n: usize) -> &'b [u8] {
        let lo = i.saturating_sub(n).max(rel(self.floor, base)).min(i);
        buf.get(lo..i).unwrap_or(&[])
    }

    /// Detectors for a token starting with the word byte `b` at `i`.
    fn word_start(
        &mut self,
        p: &Redaction,
        buf: &[u8],
        base: u64,
        i: usize,
        b: u8,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        let raw = window(buf, i, p.window());
        if b.is_ascii_alphabetic() && !matches!(b, b'A' | b'e' | b'g' | b'x' | b's' | b'r') {
            // Letters start only IBANs here (two letters, then check digits, maybe encoded).
            let digit_like = |k: usize| {
                raw.get(k)
                    .is_some_and(|c| c.is_ascii_digit() || *c >= 0x80 || b"\\%&".contains(c))
            };
            if !(p.enabled(IBAN)
                && raw.get(1).is_some_and(u8::is_ascii_alphabetic)
                && digit_like(2))
            {
                return None;
            }
        }
        if b.is_ascii_digit() && lone_short_number(raw) {
            // The common case (ids, counts, dates' parts): no detector can match here.
            return None;
        }
        // Letters: IBANs may have their digits encoded far in; tokens are judged on a short probe.
        let probe = if b.is_ascii_digit() || raw.get(2).is_some_and(u8::is_ascii_digit) {
            VIEW_PROBE
        } else {
            8
        };
        let letters = b.is_ascii_alphabetic();
        let hit = if b.is_ascii_alphanumeric() && decode::needs_view(raw, self.enc, probe, letters)
        {
            let mut view = std::mem::take(&mut self.view);
            decode::normalize(raw, self.enc, VIEW_MAX, &mut view);
            let hit = self
                .detect(p, buf, base, i, &view.bytes, false)
                .and_then(|(class, n)| Some((class, view.raw_len(n)?)));
            self.view = view;
            hit
        } else {
            self.detect(p, buf, base, i, raw, self.form)
        };
        let (class, n) = hit?;
        Some(self.found(p, buf, base, class, i, i + n, false, out))
    }

    /// The detectors for a token whose (decoded) first byte is `w[0]`; the length is in `w`.
    fn detect(
        &self,
        p: &Redaction,
        buf: &[u8],
        base: u64,
        i: usize,
        w: &[u8],
        form: bool,
    ) -> Option<(u16, usize)> {
        let b = *w.first()?;
        Some(match b {
            b'0'..=b'9' => {
                let before = self.before(buf, base, i, 2);
                let before6 = self.before(buf, base, i, 8);
                if let Some(n) = p.enabled(CARD).then(|| d::card(w, before6, form)).flatten() {
                    (CARD, n)
                } else if let Some(n) = p.enabled(SSN).then(|| d::ssn(w, before, form)).flatten() {
                    (SSN, n)
                } else {
                    (
                        PHONE,
                        p.enabled(PHONE).then(|| d::phone_national(w, before))??,
                    )
                }
            }
            b'A'..=b'Z' | b'a'..=b'z' => {
                if let Some(n) = p.enabled(IBAN).then(|| iban_any_case(w, form)).flatten() {
                    (IBAN, n)
                } else if b == b'e' {
                    (JWT, p.enabled(JWT).then(|| d::jwt(w))??)
                } else if matches!(b, b'A' | b'g' | b'x' | b's' | b'r') {
                    secret_class(p, w)?
                } else {
                    return None;
                }
            }
            b'+' if p.enabled(PHONE) => (PHONE, d::phone_plus(w)?),
            b'(' if p.enabled(PHONE) => {
                let before = self.before(buf, base, i, 2);
                (PHONE, d::phone_national(w, before)?)
            }
            _ => return None,
        })
    }

    /// Raw length of the e-mail local part that ends at `i`. Read decoded (escapes, `%XX`,
    /// references) when it lies within the `LOOKBACK` bytes after the start of the current string,
    /// line or value (or the previous match), raw otherwise.
    fn email_local(&self, buf: &[u8], base: u64, i: usize) -> Option<usize> {
        let lo = rel(self.hard_floor, base);
        let region = buf.get(lo..i).unwrap_or(&[]);
        if lo <= i && i - lo < LOOKBACK && decode::has_encoded(region, self.enc) {
            let mut view = View::default();
            decode::normalize(region, self.enc, LOOKBACK, &mut view);
            if view.ends.last() == Some(&region.len()) {
                let skip = view.bytes.len().saturating_sub(d::MAX_LOCAL + 1);
                let n = d::email_local(view.bytes.get(skip..)?)?;
                let k = view.bytes.len() - n;
                let raw_start = if k == 0 { 0 } else { *view.ends.get(k - 1)? };
                return Some(region.len() - raw_start);
            }
        }
        d::email_local(self.before(buf, base, i, d::MAX_LOCAL + 1))
    }

    /// Whether the bytes before `i` (a digit inside a word) glue a card to a word that is not
    /// hexadecimal (`x4111…`, `id_4111…`), see [`d::glue_ok`].
    fn glued_before(&self, buf: &[u8], base: u64, i: usize) -> bool {
        if self.glue_at == abs(i, base) {
            return true;
        }
        let lo = i.saturating_sub(32).max(rel(self.floor, base)).min(i);
        let before = buf.get(lo..i).unwrap_or(&[]);
        if !before
            .last()
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        {
            return false;
        }
        let mut glue = false;
        let mut word_len = 0;
        for &b in before.iter().rev() {
            if !d::is_word(b) {
                break;
            }
            word_len += 1;
            glue |= b == b'_' || (b.is_ascii_lowercase() && !b.is_ascii_hexdigit());
        }
        // A word after `.` or `@` is a domain label (`a@example.com4111…`): not a glue.
        let label = before
            .len()
            .checked_sub(word_len + 1)
            .and_then(|k| before.get(k))
            .is_some_and(|b| matches!(b, b'.' | b'@'));
        glue && !label
    }

    /// A card glued to the word before it; only the card is masked.
    fn glued_card(
        &mut self,
        p: &Redaction,
        buf: &[u8],
        base: u64,
        i: usize,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        let raw = window(buf, i, p.window());
        let mut view = std::mem::take(&mut self.view);
        let n = if decode::needs_view(raw, self.enc, VIEW_PROBE, false) {
            decode::normalize(raw, self.enc, VIEW_MAX, &mut view);
            d::card(&view.bytes, &[], false).and_then(|n| view.raw_len(n))
        } else {
            d::card(raw, &[], self.form)
        };
        self.view = view;
        let n = n?;
        if !self.glued_before(buf, base, i) {
            return None;
        }
        Some(self.found(p, buf, base, CARD, i, i + n, false, out))
    }

    /// A candidate whose first character is encoded (a JSON escape, `%XX` in a form, an XML
    /// reference) or not ASCII: the detectors run on the decoded view.
    fn encoded_start(
        &mut self,
        p: &Redaction,
        buf: &[u8],
        base: u64,
        i: usize,
        out: &mut Vec<u8>,
    ) -> Step {
        let raw = window(buf, i, p.window());
        let Some((first, len)) = decode::first_folded(raw, self.enc) else {
            return Step::Pass {
                word: false,
                len: 1,
            };
        };
        let word = first.is_some_and(d::is_word);
        if first.is_some_and(|f| d::glue_ok(&[f])) {
            self.glue_at = abs(i + len, base);
        }
        let pass = Step::Pass { word, len };
        let Some(f) = first else {
            // A zero-width character: transparent.
            return Step::Pass {
                word: self.prev_word,
                len,
            };
        };
        let glued = self.prev_word && word;
        if glued && !(f.is_ascii_digit() && p.enabled(CARD) && self.glued_before(buf, base, i)) {
            return pass;
        }
        if !(f.is_ascii_alphanumeric() || matches!(f, b'@' | b'+' | b'(')) {
            return pass;
        }
        let mut view = std::mem::take(&mut self.view);
        decode::normalize(raw, self.enc, VIEW_MAX, &mut view);
        let hit = if glued {
            d::card(&view.bytes, &[], false).map(|n| (CARD, n))
        } else {
            self.detect(p, buf, base, i, &view.bytes, false)
        };
        let hit = hit.and_then(|(class, n)| Some((class, view.raw_len(n)?)));
        // An encoded `@` (`\u0040`, `&#64;`, `＠`): the local part before it is read raw.
        let email = if f == b'@' && p.enabled(EMAIL) {
            self.email_local(buf, base, i).and_then(|local| {
                let domain = d::email_domain(view.bytes.get(1..)?)?;
                Some((local, view.raw_len(1 + domain)?))
            })
        } else {
            None
        };
        self.view = view;
        if let Some((local, end)) = email {
            let start = i - local;
            if abs(start, base) < self.writer.out_pos && self.writer.enabled {
                return pass;
            }
            return Step::Found(self.found(p, buf, base, EMAIL, start, i + end, false, out));
        }
        match hit {
            Some((class, n)) => Step::Found(self.found(p, buf, base, class, i, i + n, false, out)),
            None => pass,
        }
    }

    /// Detectors for the non-word byte `b` at `i`.
    fn special(
        &mut self,
        p: &Redaction,
        buf: &[u8],
        base: u64,
        i: usize,
        b: u8,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        match b {
            b'@' if p.enabled(EMAIL) => self.email(p, buf, base, i, 1, out),
            b'%' if p.enabled(EMAIL) && window(buf, i, 3) == b"%40" => {
                self.email(p, buf, base, i, 3, out)
            }
            b'+' if p.enabled(PHONE) && !self.prev_word && !self.form => {
                let n = d::phone_plus(window(buf, i, p.window()))?;
                Some(self.found(p, buf, base, PHONE, i, i + n, false, out))
            }
            b'(' if p.enabled(PHONE) && !self.prev_word => {
                let before = self.before(buf, base, i, 2);
                let n = d::phone_national(window(buf, i, p.window()), before)?;
                Some(self.found(p, buf, base, PHONE, i, i + n, false, out))
            }
            b'-' if p.enabled(PRIVATE_KEY) => {
                let n = d::pem_begin(window(buf, i, p.window()))?;
                self.begin_skip(p, buf, base, i, PRIVATE_KEY, false, Until::PemEnd, out);
                // The header line is part of the dropped region; resume there.
                if let Some(h) = self.skip.as_mut().and_then(|s| s.hasher.as_mut()) {
                    h.update(buf.get(i..i + n).unwrap_or(&[]));
                }
                Some(i + n)
            }
            _ => None,
        }
    }

    fn email(
        &mut self,
        p: &Redaction,
        buf: &[u8],
        base: u64,
        i: usize,
        at_len: usize,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        let local = self.email_local(buf, base, i)?;
        let domain = d::email_domain(window(buf, i + at_len, p.window()))?;
        let start = i - local;
        if abs(start, base) < self.writer.out_pos && self.writer.enabled {
            return None;
        }
        Some(self.found(p, buf, base, EMAIL, start, i + at_len + domain, false, out))
    }

    // ----- custom detectors -------------------------------------------------------------------

    fn start_unit(&mut self, p: &Redaction, buf: &[u8], base: u64, i: usize, unit: Unit) {
        if p.custom().is_empty() {
            // Only custom detectors ever fill the queue: it is already empty.
            return;
        }
        self.custom_q.clear();
        self.custom_more = None;
        self.custom_next = u64::MAX;
        self.unit = unit;
        self.search_window(p, buf, base, i);
    }

    fn end_unit(&mut self) {
        self.custom_q.clear();
        self.custom_more = None;
        self.custom_next = u64::MAX;
    }

    fn search_window(&mut self, p: &Redaction, buf: &[u8], base: u64, i: usize) {
        let win = window(buf, i, CUSTOM_WINDOW);
        let unit_end = match self.unit {
            Unit::Json => {
                let mut esc = false;
                win.iter().position(|b| {
                    if esc {
                        esc = false;
                        false
                    } else if *b == b'\\' {
                        esc = true;
                        false
                    } else {
                        *b == b'"'
                    }
                })
            }
            Unit::Text => win.iter().position(|b| *b == b'\n'),
            Unit::Form => win.iter().position(|b| *b == b'&'),
        };
        let hay = win.get(..unit_end.unwrap_or(win.len())).unwrap_or(&[]);
        self.custom_more = (unit_end.is_none() && win.len() == CUSTOM_WINDOW)
            .then(|| abs(i + CUSTOM_WINDOW, base));
        let mut found: Vec<(u64, u64, u16)> = Vec::new();
        // regex-lite searches `str`: search each valid UTF-8 piece of the window.
        let mut piece_at = 0usize;
        while let Some(rest) = hay.get(piece_at..).filter(|r| !r.is_empty()) {
            let (text, skip) = match std::str::from_utf8(rest) {
                Ok(t) => (t, rest.len()),
                Err(e) => {
                    let valid = e.valid_up_to();
                    let bad = e.error_len().unwrap_or(rest.len() - valid).max(1);
                    (
                        std::str::from_utf8(rest.get(..valid).unwrap_or(&[])).unwrap_or(""),
                        valid + bad,
                    )
                }
            };
            for (k, c) in p.custom().iter().enumerate() {
                for m in c.regex.find_iter(text) {
                    let matched = m.as_str().as_bytes();
                    if matched.is_empty()
                        || (self.unit == Unit::Json
                            && matched.iter().any(|b| *b == b'"' || *b == b'\\'))
                    {
                        continue;
                    }
                    found.push((
                        abs(i + piece_at + m.start(), base),
                        abs(i + piece_at + m.end(), base),
                        p.custom_class(k),
                    ));
                }
            }
            piece_at += skip;
        }
        found.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut last_end = abs(i, base);
        self.custom_q.clear();
        for m in found {
            if m.0 >= last_end {
                last_end = m.1;
                self.custom_q.push_back(m);
            }
        }
        self.refresh_custom_next();
    }

    fn refresh_custom_next(&mut self) {
        let q = self.custom_q.front().map_or(u64::MAX, |m| m.0);
        self.custom_next = q.min(self.custom_more.unwrap_or(u64::MAX));
    }

    fn custom_at(
        &mut self,
        p: &Redaction,
        buf: &[u8],
        base: u64,
        i: usize,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        let here = abs(i, base);
        if self.custom_more.is_some_and(|m| here >= m) {
            self.search_window(p, buf, base, i);
        }
        let mut hit = None;
        while let Some(&(s, e, c)) = self.custom_q.front() {
            if s < here {
                self.custom_q.pop_front();
                continue;
            }
            if s == here {
                self.custom_q.pop_front();
                hit = Some((e, c));
            }
            break;
        }
        self.refresh_custom_next();
        let (e, c) = hit?;
        let end = i + rel(e, here);
        Some(self.found(p, buf, base, c, i, end, false, out))
    }

    // ----- lexers -----------------------------------------------------------------------------

    fn text(
        &mut self,
        p: &Redaction,
        buf: &[u8],
        base: u64,
        i: usize,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> usize {
        if self.new_line {
            self.new_line = false;
            self.start_unit(p, buf, base, i, Unit::Text);
        }
        let table = if self.enc == Enc::Xml {
            &XML_TABLE
        } else {
            &TEXT_TABLE
        };
        let j = self.content(p, buf, base, i, limit, table, out);
        if self.skip.is_none() && j < limit && buf.get(j) == Some(&b'\n') {
            self.prev_word = false;
            self.floor = abs(j + 1, base);
            self.hard_floor = self.floor;
            self.new_line = true;
            self.end_unit();
            return j + 1;
        }
        j
    }

    fn json_value(
        &mut self,
        p: &Redaction,
        buf: &[u8],
        base: u64,
        mut i: usize,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> usize {
        while i < limit {
            let Some(&b) = buf.get(i) else { break };
            match b {
                b' ' | b'\t' | b'\n' | b'\r' | b':' => i += 1,
                b'{' | b'[' => {
                    let force = self.json.value_force(p);
                    self.json.open(b == b'{', force);
                    i += 1;
                }
                b'}' | b']' => {
                    self.json.close();
                    i += 1;
                }
                b',' => {
                    self.json.comma();
                    i += 1;
                }
                b'"' => {
                    i += 1;
                    self.floor = abs(i, base);
                    self.hard_floor = self.floor;
                    self.prev_word = false;
                    if self.json.expect_key() {
                        self.json.begin_key();
                        self.lex = Lex::JsonString { key: true };
                    } else {
                        self.lex = Lex::JsonString { key: false };
                        if let Some(class) = self.json.value_force(p) {
                            self.begin_skip(p, buf, base, i, class, false, Until::JsonString, out);
                            return i;
                        }
                    }
                    self.start_unit(p, buf, base, i, Unit::Json);
                    return i;
                }
                b'-' | b'0'..=b'9' => {
                    if let Some(class) = self.json.value_force(p) {
                        self.begin_skip(p, buf, base, i, class, true, Until::JsonNumber, out);
                        return i;
                    }
                    self.lex = Lex::JsonNumber;
                    if b != b'-' && p.enabled(CARD) {
                        let w = window(buf, i, p.window());
                        if let Some(n) =
                            d::card_number_token(w).or_else(|| d::card_number_decimal(w))
                        {
                            return self.found(p, buf, base, CARD, i, i + n, true, out);
                        }
                    }
                    return i;
                }
                b't' | b'f' | b'n' => {
                    self.lex = Lex::JsonLiteral;
                    return i;
                }
                _ => {
                    // Not JSON (any more): scan the rest as text rather than not at all.
                    self.lex = Lex::Text;
                    self.unit = Unit::Text;
                    self.new_line = true;
                    self.floor = abs(i, base);
                    self.hard_floor = self.floor;
                    self.prev_word = false;
                    return i;
                }
            }
        }
        i
    }

    #[allow(clippy::too_many_arguments)]
    fn json_string(
        &mut self,
        p: &Redaction,
        buf: &[u8],
        base: u64,
        i: usize,
        limit: usize,
        key: bool,
        out: &mut Vec<u8>,
    ) -> usize {
        let j = self.content(p, buf, base, i, limit, &JSON_TABLE, out);
        if key {
            self.json.key_bytes(
                buf.get(i..j).unwrap_or(&[]),
                p.has_fields(),
                p.has_pointers(),
            );
        }
        if j >= limit || self.skip.is_some() {
            return j;
        }
        match buf.get(j) {
            Some(b'"') => {
                if key {
                    self.json.end_key(p);
                }
                self.lex = Lex::JsonValue;
                self.end_unit();
                j + 1
            }
            Some(b'\\') => {
                if key {
                    self.json.key_bytes(b"\\", p.has_fields(), p.has_pointers());
                }
                self.lex = Lex::JsonEscape { key };
                j + 1
            }
            _ => j,
        }
    }

    fn json_escape(&mut self, buf: &[u8], base: u64, i: usize) -> usize {
        let Some(&b) = buf.get(i) else {
            return i + 1;
        };
        let key = match self.lex {
            Lex::JsonEscape { key } | Lex::JsonUnicode { key, .. } => key,
            _ => false,
        };
        if key && b != b'"' {
            self.json.key_bytes(&[b], true, false);
        }
        let next = match self.lex {
            Lex::JsonEscape { .. } if b == b'u' => Lex::JsonUnicode { key, left: 4 },
            Lex::JsonUnicode { left, .. } if left > 1 && b != b'"' => Lex::JsonUnicode {
                key,
                left: left - 1,
            },
            Lex::JsonUnicode { .. } if b == b'"' => {
                // Malformed escape: let the string lexer see the quote.
                self.lex = Lex::JsonString { key };
                return i;
            }
            _ => Lex::JsonString { key },
        };
        self.lex = next;
        if matches!(next, Lex::JsonString { .. }) {
            self.floor = abs(i + 1, base);
            // An escape that decodes to a word character keeps the word going.
            self.prev_word = std::mem::take(&mut self.esc_word);
        }
        i + 1
    }

    fn form_key(
        &mut self,
        p: &Redaction,
        buf: &[u8],
        base: u64,
        i: usize,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> usize {
        // Names are scanned too: a body labelled as a form may hold no `=` at all.
        let j = self.content(p, buf, base, i, limit, &FORM_KEY_TABLE, out);
        let name = buf.get(i..j).unwrap_or(&[]);
        if self.form_key.len() + name.len() <= super::json::MAX_KEY {
            self.form_key
                .extend(name.iter().map(u8::to_ascii_lowercase));
        } else {
            self.form_key_overlong = true;
        }
        if self.skip.is_some() || j >= limit {
            return j;
        }
        match buf.get(j) {
            Some(b'&') => {
                self.form_key.clear();
                self.form_key_overlong = false;
                self.floor = abs(j + 1, base);
                self.hard_floor = self.floor;
                self.prev_word = false;
                j + 1
            }
            Some(b'=') => {
                let i = j + 1;
                self.lex = Lex::FormValue;
                self.floor = abs(i, base);
                self.hard_floor = self.floor;
                self.prev_word = false;
                let class = if self.form_key_overlong {
                    None
                } else {
                    p.field_class(&self.form_key)
                };
                self.form_key.clear();
                self.form_key_overlong = false;
                if let Some(class) = class {
                    self.begin_skip(p, buf, base, i, class, false, Until::FormValue, out);
                } else {
                    self.start_unit(p, buf, base, i, Unit::Form);
                }
                i
            }
            _ => j,
        }
    }

    fn form_value(
        &mut self,
        p: &Redaction,
        buf: &[u8],
        base: u64,
        i: usize,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> usize {
        let j = self.content(p, buf, base, i, limit, &FORM_TABLE, out);
        if self.skip.is_none() && j < limit && buf.get(j) == Some(&b'&') {
            self.lex = Lex::FormKey;
            self.end_unit();
            self.prev_word = false;
            return j + 1;
        }
        j
    }
}

/// Length of the word bytes at the start of `rest` (classes up to `START` in `t`); with `glue`,
/// also stops at a digit that follows a non-digit (`prev_digit` says whether the byte before
/// `rest` was one).
#[inline]
fn word_tail(t: &[u8; 256], rest: &[u8], glue: bool, mut prev_digit: bool) -> usize {
    for (k, &c) in rest.iter().enumerate() {
        let digit = c.is_ascii_digit();
        if class_of(t, c) > START || (glue && digit && !prev_digit) {
            return k;
        }
        prev_digit = digit;
    }
    rest.len()
}

/// Whether a digit glued to the word before it (at `i`) may start a card: see `glued_card`.
#[inline(never)]
fn glued_may_card(buf: &[u8], i: usize, win: usize) -> bool {
    !lone_short_number(window(buf, i, win))
}

/// Whether a card, SSN or national phone number may start at the digit at `i` (a token start):
/// not when [`lone_short_number`] or [`few_digits`] rules it out, as `word_start` would find.
#[inline(never)]
fn digits_may_match(buf: &[u8], i: usize, win: usize) -> bool {
    let w = window(buf, i, win);
    !(lone_short_number(w) || few_digits(w))
}

/// Whether the digit-led token at the start of `w` holds fewer than 9 digits before the first
/// byte that no digit-led grammar reads (anything but digits, space and `-./+()`), and that byte
/// is plain ASCII (nothing encoded can add a digit). Every match of [`d::card`] (13 digits),
/// [`d::ssn`] (9) and [`d::phone_national`] (10) is made of those bytes only: dates
/// (`2024-05-10T…`), times and short ids end here.
#[inline]
fn few_digits(w: &[u8]) -> bool {
    let mut digits = 0;
    for &c in w {
        if c.is_ascii_digit() {
            digits += 1;
            if digits >= 9 {
                return false;
            }
        } else if !matches!(c, b' ' | b'-' | b'.' | b'/' | b'+' | b'(' | b')') {
            return !may_encode(c);
        }
    }
    false
}

/// For [`Engine::plain_run`]: `prev_word` after the byte `b` (class `c`) at `i` when the
/// per-byte dispatch would run nothing there (`word`: whether the byte before is a word byte),
/// `None` when it may: a token start that passes [`may_start`], `@`, `%`, `&`, `(` or `+` at a
/// token start, `--`, a UTF-8 lead byte, a `STOP` byte.
#[inline(never)]
fn quiet(p: &Redaction, buf: &[u8], i: usize, b: u8, c: u8, word: bool) -> Option<bool> {
    match c {
        PLAIN | START => (!may_start(b, window(buf, i, p.window()))).then_some(true),
        // Not `-----BEGIN`; `+` and `(` inside a word start no phone number.
        SPECIAL if b == b'-' && buf.get(i + 1) != Some(&b'-') => Some(false),
        SPECIAL if word && matches!(b, b'+' | b'(') => Some(false),
        _ => None,
    }
}

/// Whether an encoding or a non-ASCII character may start at `c` (so the decoded view may
/// differ from the raw bytes there), in any body kind.
#[inline]
fn may_encode(c: u8) -> bool {
    c >= 0x80 || matches!(c, b'\\' | b'%' | b'&' | b'+')
}

/// Whether a detector may match the token that starts with the word byte `w[0]` (a token start:
/// the byte before is not a word byte). `false` only where `Engine::content` provably finds
/// nothing there: a digit run that [`lone_short_number`] rules out; a letter whose next two
/// characters are plain ASCII that no letter-led grammar allows (an IBAN needs a letter then a
/// digit, a JWT `eyJ`, the secrets `AKIA`/`ASIA`/`ABIA`/`ACCA`/`A3T`, `gh[pousr]_`/`github_pat_`/
/// `glpat-`, `xox`, `sk_`/`rk_`); `_`. Anything encoded or non-ASCII in those two bytes, or the
/// end of the window, is left to the detectors.
#[inline]
fn may_start(b: u8, w: &[u8]) -> bool {
    if b.is_ascii_digit() {
        return !lone_short_number(w);
    }
    if b == b'_' {
        return false;
    }
    let (Some(&c1), Some(&c2)) = (w.get(1), w.get(2)) else {
        return true;
    };
    if may_encode(c1) || may_encode(c2) {
        return true;
    }
    if !(c1.is_ascii_alphabetic() || (b == b'A' && c1 == b'3')) {
        return false;
    }
    c2.is_ascii_digit()
        || match b {
            b'e' => c2 == b'J',
            b'A' => matches!(c2, b'I' | b'C' | b'T'),
            b'g' => matches!(c2, b't' | b'p' | b'o' | b'u' | b's' | b'r'),
            b'x' => c2 == b'x',
            b's' | b'r' => c2 == b'_',
            _ => false,
        }
}

/// Whether a token that starts with the ASCII digit run of `w` cannot be a card, an SSN or a
/// national phone number whatever comes before it: fewer than 13 digits, then (after any run of
/// group separators: space, `-`, `.`, `/`, `+`) the end of the window or an ASCII byte that is
/// not a digit, not a parenthesis and cannot hide one in an encoding (`\\`, `%`, `&`). Every
/// grammar of [`d::card`], [`d::ssn`] and [`d::phone_national`] needs 13 digits in the first
/// group or a digit right after the separators that end it.
#[inline(never)]
fn lone_short_number(w: &[u8]) -> bool {
    let g1 = w.iter().take(13).take_while(|c| c.is_ascii_digit()).count();
    if g1 >= 13 {
        return false;
    }
    let rest = w.get(g1..).unwrap_or(&[]);
    let seps = rest
        .iter()
        .take_while(|c| matches!(c, b' ' | b'-' | b'.' | b'/' | b'+'))
        .count();
    !rest.get(seps).is_some_and(|c| {
        c.is_ascii_digit() || *c >= 0x80 || matches!(c, b'(' | b')' | b'\\' | b'%' | b'&')
    })
}

/// A lower-case letter, a letter, then a digit (or an encoded or non-ASCII byte): maybe an IBAN.
#[inline]
fn lower_iban_start(buf: &[u8], i: usize) -> bool {
    buf.get(i + 1).is_some_and(u8::is_ascii_alphabetic)
        && buf
            .get(i + 2)
            .is_some_and(|c| c.is_ascii_digit() || *c >= 0x80 || b"\\%&".contains(c))
}

/// An IBAN in any letter case (`de89 3704 …` is read as `DE89 3704 …`).
fn iban_any_case(w: &[u8], form: bool) -> Option<usize> {
    let head = w.get(..4)?;
    if !(head.iter().take(2).all(u8::is_ascii_alphabetic)
        && head.iter().skip(2).all(u8::is_ascii_digit))
    {
        return None;
    }
    if head.iter().take(2).all(u8::is_ascii_uppercase) {
        return d::iban(w, form);
    }
    let mut upper = [0u8; 48];
    let n = w.len().min(upper.len());
    for (slot, b) in upper.iter_mut().zip(w.iter().take(n)) {
        *slot = b.to_ascii_uppercase();
    }
    d::iban(upper.get(..n)?, form)
}

fn secret_class(p: &Redaction, w: &[u8]) -> Option<(u16, usize)> {
    let (n, kind) = d::secret(w)?;
    let class = match kind {
        d::Secret::AwsKey => super::AWS_KEY,
        d::Secret::Github => super::GITHUB_TOKEN,
        d::Secret::Gitlab => super::GITLAB_TOKEN,
        d::Secret::Slack => super::SLACK_TOKEN,
        d::Secret::Stripe => super::STRIPE_KEY,
    };
    p.enabled(class).then_some((class, n))
}

#[cfg(test)]
mod tests {
    use super::super::StreamRedactor;
    use super::*;
    use std::sync::Arc;

    /// Every window the shortcut skips is one where the detectors it stands for find nothing,
    /// whatever bytes come before it and in form bodies too.
    #[test]
    fn lone_short_numbers_are_never_cards_ssns_or_phones() {
        let alphabet: &[u8] = b"0123456789 -./+()x\"\\%&";
        let befores: [&[u8]; 4] = [b"", b"1-", b"1234 ", b"a"];
        let mut skipped = 0;
        // Every string of up to 4 bytes over the alphabet, after a few digit-led prefixes.
        for prefix in [&b"1"[..], b"123", b"415", b"0", b"078", b"4111111111"] {
            let mut stack: Vec<Vec<u8>> = vec![prefix.to_vec()];
            while let Some(w) = stack.pop() {
                if lone_short_number(&w) {
                    skipped += 1;
                    for before in befores {
                        for form in [false, true] {
                            assert_eq!(d::card(&w, before, form), None, "{w:?}");
                            assert_eq!(d::ssn(&w, before, form), None, "{w:?}");
                        }
                        assert_eq!(d::phone_national(&w, before), None, "{w:?}");
                    }
                }
                if w.len() < prefix.len() + 4 {
                    for &c in alphabet {
                        let mut next = w.clone();
                        next.push(c);
                        stack.push(next);
                    }
                }
            }
        }
        assert!(skipped > 100, "{skipped}");
        // And the shortcut leaves what may match to the detectors.
        for w in [
            &b"4111 1111 1111 1111"[..],
            b"078-05-1120",
            b"415 555 2671",
            b"1 415-555",
        ] {
            assert!(!lone_short_number(w), "{w:?}");
        }
    }

    /// A small xorshift generator: the same cases on every run.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// Pieces that start, almost start or hide each detector's grammar (encoded, glued, split),
    /// the lexers' delimiters, and plain words and numbers the fast path skips.
    const PIECES: &[&str] = &[
        "4111 1111 1111 1111",
        "4111111111111111",
        "5555-5555-5555-4444",
        "378282246310005",
        "411",
        "1111",
        "12",
        "0",
        "2024-05-10T09:30:00Z",
        "078-05-1120",
        "123-45-6789",
        "+1 415 555 2671",
        "(415) 555-2671",
        "415.555.2671",
        "+",
        "(",
        ")",
        "1 415-555",
        "DE89 3704 0044 0532 0130 00",
        "de89370400440532013000",
        "GB29NWBK60161331926819",
        "es",
        "ES91",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
        "eyJ",
        "ey",
        "e",
        "every",
        "AKIAIOSFODNN7EXAMPLE",
        "A3TX",
        "ASIA",
        "ACCA",
        "ABIA",
        "Aa1",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "github_pat_abcdefghijklmnopqrstuvwxyz",
        "gh",
        "g",
        "glpat-abcdefghijklmnopqrst",
        "xoxb-1234567890",
        "xox",
        "x",
        "sk_live_abcdefghij",
        "rk_test_",
        "s",
        "r",
        "-----BEGIN PRIVATE KEY-----",
        "-----END PRIVATE KEY-----",
        "--",
        "-",
        "a.b@example.com",
        "@",
        "%40",
        "&#64;",
        "\\u0040",
        "\\u0034",
        "\\u0078",
        "\\\"",
        "\\n",
        "%34",
        "&#x34;",
        "&amp;",
        "４",
        "\u{200b}",
        "é",
        "＠",
        "\u{2013}",
        "id_",
        "T09",
        "9e3779b97f4a7c15",
        "_",
        " ",
        "  ",
        "\"",
        "\n",
        "&",
        "=",
        ".",
        "/",
        ",",
        ":",
        "{",
        "}",
        "[",
        "]",
        "\\",
        "%",
        ";",
        "shipped",
        "status",
        "street",
        "Customer",
        "order 7 shipped",
        "EMP-123456",
        "password",
    ];

    fn body(rng: &mut Rng, pieces: usize) -> Vec<u8> {
        let mut b = Vec::new();
        if rng.below(2) == 0 {
            b.extend_from_slice(b"{\"records\": [");
        }
        for _ in 0..pieces {
            match rng.below(8) {
                0 => b.extend_from_slice(b"\", \""),
                1 => b.extend_from_slice(b"\": \""),
                2 => b.push(rng.below(256) as u8),
                _ => b.extend_from_slice(PIECES[rng.below(PIECES.len())].as_bytes()),
            }
        }
        b
    }

    /// The per-byte path (no `plain_run`) over a whole body: the reference.
    fn per_byte(p: &Redaction, kind: BodyKind, body: &[u8]) -> (Vec<u8>, Findings) {
        let mut engine = Engine::new(p, kind);
        engine.per_byte = true;
        let mut out = Vec::new();
        engine.run(p, body, 0, true, &mut out);
        if !engine.writer.changed {
            out = body.to_vec();
        }
        (out, engine.findings)
    }

    fn streamed(
        p: &Arc<Redaction>,
        kind: BodyKind,
        body: &[u8],
        cuts: &[usize],
    ) -> (Vec<u8>, Findings) {
        let mut r = StreamRedactor::new(p.clone(), kind);
        let mut out = Vec::new();
        let mut at = 0;
        for &c in cuts.iter().chain([body.len()].iter()) {
            let c = c.clamp(at, body.len());
            r.push(&body[at..c], c == body.len(), &mut out);
            at = c;
        }
        (out, r.findings().clone())
    }

    fn policies() -> Vec<Arc<Redaction>> {
        let p = |v: serde_json::Value| {
            Arc::new(crate::redact::compile("t", &crate::reader::Node::root(&v)).unwrap())
        };
        vec![
            // Every detector (the JWT window: 8 KiB).
            p(serde_json::json!({})),
            // No JWT detector: a 512-byte window, so chunk boundaries fall inside bodies.
            p(
                serde_json::json!({"detectors": ["card", "iban", "ssn", "email", "phone", "secrets", "private_key"]}),
            ),
            // Cards only (the glue check on, the rest off), a field rule and a custom detector.
            p(
                serde_json::json!({"detectors": ["card"], "fields": ["password"],
                "custom": [{"name": "employee_id", "regex": "EMP-[0-9]{6}"}]}),
            ),
        ]
    }

    const KINDS: [BodyKind; 4] = [
        BodyKind::Json,
        BodyKind::Text,
        BodyKind::Form,
        BodyKind::Xml,
    ];

    /// The fast path (`plain_run`) finds the same spans as the per-byte path: same output, same
    /// counts, one-shot and streamed in random chunks, on random bodies built from detector
    /// prefixes, encodings and delimiters.
    #[test]
    fn the_fast_path_finds_what_the_per_byte_path_finds() {
        let mut rng = Rng(0x5eed_f00d);
        let policies = policies();
        for case in 0..600 {
            let pieces = 1 + rng.below(if case % 10 == 0 { 400 } else { 40 });
            let body = body(&mut rng, pieces);
            for p in &policies {
                for kind in KINDS {
                    let want = per_byte(p, kind, &body);
                    let got = redact(p, kind, &body);
                    let shown = String::from_utf8_lossy(&body);
                    assert_eq!(got.body.as_ref(), want.0.as_slice(), "{kind:?} {shown:?}");
                    assert_eq!(got.findings, want.1, "{kind:?} {shown:?}");
                    let mut cuts: Vec<usize> = (0..rng.below(6))
                        .map(|_| rng.below(body.len() + 1))
                        .collect();
                    cuts.sort_unstable();
                    assert_eq!(
                        streamed(p, kind, &body, &cuts),
                        want,
                        "{kind:?} {cuts:?} {shown:?}"
                    );
                }
            }
        }
    }

    /// Every split point of bodies longer than the 512-byte window, and one-byte chunks: the
    /// fast path stops `window` bytes before each chunk's end and resumes with `prev_word` kept.
    #[test]
    fn the_fast_path_gives_the_same_output_at_every_chunk_boundary() {
        let mut rng = Rng(0xc0ff_ee00);
        let p = &policies()[1];
        for _ in 0..3 {
            let mut body = Vec::new();
            while body.len() < 900 {
                body.extend(self::body(&mut rng, 20));
            }
            for kind in KINDS {
                let want = per_byte(p, kind, &body);
                for cut in 0..=body.len() {
                    assert_eq!(streamed(p, kind, &body, &[cut]), want, "{kind:?} cut {cut}");
                }
                let ones: Vec<usize> = (1..body.len()).collect();
                assert_eq!(
                    streamed(p, kind, &body, &ones),
                    want,
                    "{kind:?} one-byte chunks"
                );
            }
        }
    }

    /// `may_start` says no only where the detectors find nothing: every token of up to four
    /// bytes over the letters, digits and encodings that matter, followed by a long tail that
    /// would complete any grammar.
    #[test]
    fn may_start_never_hides_a_token_the_detectors_take() {
        let p = &policies()[0];
        let alphabet = b"AegxsrBdykKSCIT3J_ploutbh0719-\\%&+ \xc3";
        let tails: [&[u8]; 4] = [
            b"IOSFODNN7EXAMPLE",
            b"_abcdefghijklmnopqrstuvwxyz0123456789",
            b"9370400440532013000",
            b"-1234567890abcdef",
        ];
        let mut checked = 0;
        let mut stack: Vec<Vec<u8>> = alphabet.iter().map(|c| vec![*c]).collect();
        while let Some(w) = stack.pop() {
            if w[0].is_ascii_alphanumeric() || w[0] == b'_' {
                for tail in tails {
                    let mut token = w.clone();
                    token.extend_from_slice(tail);
                    if !may_start(token[0], &token) {
                        checked += 1;
                        for kind in KINDS {
                            let mut engine = Engine::new(p, kind);
                            let hit = engine.word_start(p, &token, 0, 0, token[0], &mut Vec::new());
                            assert_eq!(hit, None, "{kind:?} {:?}", String::from_utf8_lossy(&token));
                        }
                    }
                }
            }
            if w.len() < 3 {
                for &c in alphabet {
                    let mut next = w.clone();
                    next.push(c);
                    stack.push(next);
                }
            }
        }
        assert!(checked > 1000, "{checked}");
    }
}
