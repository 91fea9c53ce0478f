//! Sensitive-data redaction in bodies: find card numbers, IBANs, SSNs, emails, phone numbers,
//! JWTs, secrets and configured patterns as bodies pass, and mask, block or report them.
//!
//! # Where to start
//! - [`compile_section`] / [`compile`] read the `redaction` configuration section into an
//!   immutable [`Redaction`] (shared by every request of a worker).
//! - [`redact`] processes a whole body at once; [`StreamRedactor`] processes it chunk by chunk
//!   and gives byte-for-byte the same output.
//! - [`detectors`](self) are pure validated detectors; `scan` is the single pass over the bytes
//!   (JSON, form and text lexers, detector dispatch by first byte); `rewrite` writes output;
//!   `mask` renders masks; `json` keeps the JSON context; `stream` holds chunks back.
//!
//! # Guarantees
//! - One pass, byte-exact: every byte outside a reported match is copied unchanged; nothing is
//!   reformatted or reordered. Masks are ASCII without `"` or `\`, so a valid JSON document stays
//!   valid JSON (a JSON number that is a card becomes a JSON string holding the mask; a forced
//!   field-rule number too).
//! - Matched values are never logged, counted by value or returned anywhere except, masked, in
//!   the rewritten body. [`Findings`] holds counts per class only.
//! - No panics; memory per body is bounded (see [`StreamRedactor`]).
//!
//! # What it does not do
//! - It does not decompress bodies: the host asks upstream for identity encoding and applies
//!   `on_unknown_encoding` to whatever still arrives encoded or with an unknown content type.
//! - It does not decode base64, double percent-encoding or compressed bodies. What it does
//!   decode before matching (JSON escapes, percent-encoding, XML references, Unicode digits,
//!   spaces and dashes) is in `decode` and `docs/detectors.md`; a control escape such as `\n`
//!   ends a token.
//! - Field rules apply to JSON member names and form field names; XML bodies are scanned as text.

mod decode;
mod detectors;
mod json;
mod mask;
mod rewrite;
mod scan;
mod stream;
mod utf;

pub use mask::MaskStyle;
pub use scan::{redact, Findings, Outcome};
pub use stream::StreamRedactor;

use crate::reader::{Node, Result};
use json::PointerSeg;
use mask::{Canon, HmacKey};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What to do when a body holds sensitive data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Replace each match by its mask.
    Redact,
    /// Replace the whole response by an error: the body never reaches the client.
    Block,
    /// Pass the body unchanged; count the classes found.
    Report,
}

/// What to do with a body that cannot be scanned (still compressed, or of an unknown type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownEncoding {
    /// Let it through and count it.
    Pass,
    /// Refuse it as [`Action::Block`] would.
    Block,
}

/// How a body is lexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// Member names and string values (keys are scanned too), numbers that are cards. A body that
    /// stops being JSON (a byte that no JSON token can start with) is scanned as text from there.
    Json,
    /// `application/x-www-form-urlencoded`: field rules on names, detectors on values.
    Form,
    /// Plain text, HTML, CSV, ...: every byte is scanned.
    Text,
    /// XML is scanned as text (tags included).
    Xml,
}

impl BodyKind {
    /// The lexer for a `content-type` header value; `None` for types that are not scanned
    /// (binary, multipart, absent).
    pub fn from_content_type(content_type: &str) -> Option<BodyKind> {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let (top, sub) = media.split_once('/')?;
        if sub == "json" || sub.ends_with("+json") || sub == "x-ndjson" || sub == "jsonl" {
            Some(BodyKind::Json)
        } else if sub == "x-www-form-urlencoded" {
            Some(BodyKind::Form)
        } else if sub == "xml" || sub.ends_with("+xml") {
            Some(BodyKind::Xml)
        } else if top == "text" || sub == "javascript" || sub == "graphql" {
            Some(BodyKind::Text)
        } else {
            None
        }
    }
}

/// Whether and how to scan one body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyDecision {
    Scan(BodyKind),
    /// Unscannable; `on_unknown_encoding` is `pass`: let it through (count it).
    PassUnscanned,
    /// Unscannable; `on_unknown_encoding` is `block`.
    BlockUnscanned,
}

// Class ids: built-in detectors first, then custom detectors, then field rules, then pointers.
pub(crate) const CARD: u16 = 0;
pub(crate) const IBAN: u16 = 1;
pub(crate) const SSN: u16 = 2;
pub(crate) const EMAIL: u16 = 3;
pub(crate) const PHONE: u16 = 4;
pub(crate) const JWT: u16 = 5;
pub(crate) const AWS_KEY: u16 = 6;
pub(crate) const GITHUB_TOKEN: u16 = 7;
pub(crate) const GITLAB_TOKEN: u16 = 8;
pub(crate) const SLACK_TOKEN: u16 = 9;
pub(crate) const STRIPE_KEY: u16 = 10;
pub(crate) const PRIVATE_KEY: u16 = 11;
const BUILTIN: usize = 12;

/// Names of the built-in classes, by class id (also the detector names in configuration).
pub const BUILTIN_CLASSES: [&str; BUILTIN] = [
    "card",
    "iban",
    "ssn",
    "email",
    "phone",
    "jwt",
    "aws_key",
    "github_token",
    "gitlab_token",
    "slack_token",
    "stripe_key",
    "private_key",
];

const SECRET_CLASSES: [u16; 6] = [
    AWS_KEY,
    GITHUB_TOKEN,
    GITLAB_TOKEN,
    SLACK_TOKEN,
    STRIPE_KEY,
    PRIVATE_KEY,
];

/// Scan window when JWTs are off: covers the longest email (64 + 1 + 253), secret (255 + prefix),
/// card, IBAN or phone number with its boundary look-ahead, and a PEM header line.
const BASE_WINDOW: usize = 512;
/// Window for custom detectors: each scan unit is searched in pieces of this size.
pub(crate) const CUSTOM_WINDOW: usize = 1024;

#[derive(Debug)]
pub(crate) struct Custom {
    pub regex: regex_lite::Regex,
}

/// One compiled `redaction` policy.
#[derive(Debug)]
pub struct Redaction {
    pub name: String,
    pub action: Action,
    /// Scan request bodies.
    pub request: bool,
    /// Scan response bodies.
    pub response: bool,
    /// Largest body the host may buffer whole (needed to block, since nothing may be sent
    /// before the verdict); larger bodies stream through (see `docs` in [`StreamRedactor`]).
    pub max_buffer_bytes: usize,
    pub on_unknown_encoding: UnknownEncoding,
    enabled: u16,
    custom: Vec<Custom>,
    fields: Vec<Vec<u8>>,
    pointers: Vec<Vec<PointerSeg>>,
    style: MaskStyle,
    key: Option<HmacKey>,
    labels: Vec<String>,
    window: usize,
    /// Response header names (lower case) whose values are scanned by [`Redaction::scan_header`].
    headers: Vec<String>,
}

/// The verdict on one header value ([`Redaction::scan_header`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderScan {
    /// Nothing found (or the header is not in the policy's `headers`): send it as it is.
    Clean,
    /// `action: redact`: send this value instead (each match replaced by its mask).
    Masked { value: Vec<u8>, findings: Findings },
    /// `action: block`: the response must not be sent (the host replaces it, as for a body).
    Block { findings: Findings },
    /// `action: report`: send it unchanged, count what was found.
    Report { findings: Findings },
}

impl Redaction {
    /// Whether bodies are rewritten (only with `action: redact`); otherwise they pass unchanged.
    pub fn rewrites(&self) -> bool {
        self.action == Action::Redact
    }

    /// The class name for a class id from [`Findings`]: a built-in class, a custom detector's
    /// name, a field name, or `field` for JSON pointers. Never a value.
    pub fn class_name(&self, class: usize) -> &str {
        self.labels
            .get(class)
            .map(String::as_str)
            .unwrap_or("unknown")
    }

    pub fn class_count(&self) -> usize {
        self.labels.len()
    }

    /// Response header names (lower case) this policy scans, from its `headers` field.
    pub fn header_names(&self) -> &[String] {
        &self.headers
    }

    /// Scans one response header value when `name` (any case) is in the policy's `headers`.
    /// Values are read twice: as form/URL text (`%XX` decoded, `+` a space), then as text (`+`
    /// itself, as in a path: `/u/+14155552671`); `%XX` is decoded before matching (a `location`
    /// of `/cards/4111%201111%201111%201111`, a `content-disposition` of
    /// `filename*=UTF-8''4111%201111…`), Unicode digits and spaces folded, like bodies
    /// (`docs/detectors.md`). The masked value holds only printable ASCII masks in place of the
    /// matched bytes. Headers not listed are [`HeaderScan::Clean`] without being read.
    pub fn scan_header(&self, name: &str, value: &[u8]) -> HeaderScan {
        if !self.headers.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            return HeaderScan::Clean;
        }
        // As a form/query (`%XX`, `+` as a space), then as text (`+` as itself, as in a path).
        let form = redact(self, BodyKind::Form, value);
        let text = redact(self, BodyKind::Text, &form.body);
        let mut findings = form.findings.clone();
        findings.merge(&text.findings);
        if findings.is_empty() {
            return HeaderScan::Clean;
        }
        match self.action {
            Action::Redact => HeaderScan::Masked {
                value: text.body.into_owned(),
                findings,
            },
            Action::Block => HeaderScan::Block { findings },
            Action::Report => HeaderScan::Report { findings },
        }
    }

    /// Bytes a [`StreamRedactor`] may hold back (the scan window).
    pub fn window(&self) -> usize {
        self.window
    }

    /// What to do with a body given its `content-type` and `content-encoding` headers.
    pub fn decide(
        &self,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> BodyDecision {
        let encoded = content_encoding
            .map(str::trim)
            .is_some_and(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"));
        match content_type.and_then(BodyKind::from_content_type) {
            Some(kind) if !encoded => BodyDecision::Scan(kind),
            _ => self.unscannable(),
        }
    }

    /// What to do with a body that cannot be scanned (a byte range, an unknown encoding).
    pub fn unscannable(&self) -> BodyDecision {
        match self.on_unknown_encoding {
            UnknownEncoding::Pass => BodyDecision::PassUnscanned,
            UnknownEncoding::Block => BodyDecision::BlockUnscanned,
        }
    }

    pub(crate) fn enabled(&self, class: u16) -> bool {
        self.enabled & (1 << class) != 0
    }

    pub(crate) fn custom(&self) -> &[Custom] {
        &self.custom
    }

    pub(crate) fn custom_class(&self, idx: usize) -> u16 {
        u16::try_from(BUILTIN + idx).unwrap_or(u16::MAX)
    }

    pub(crate) fn field_class(&self, key_lower: &[u8]) -> Option<u16> {
        let at = self.fields.iter().position(|f| f == key_lower)?;
        u16::try_from(BUILTIN + self.custom.len() + at).ok()
    }

    pub(crate) fn has_pointers(&self) -> bool {
        !self.pointers.is_empty()
    }

    /// Whether any field rule is configured (member names need to be read at all).
    pub(crate) fn has_fields(&self) -> bool {
        !self.fields.is_empty()
    }

    pub(crate) fn pointers(&self) -> &[Vec<PointerSeg>] {
        &self.pointers
    }

    pub(crate) fn pointer_class(&self) -> u16 {
        u16::try_from(self.labels.len().saturating_sub(1)).unwrap_or(u16::MAX)
    }

    pub(crate) fn mask_spec(&self, class: u16, quote: bool) -> mask::MaskSpec<'_> {
        let canon = match class {
            CARD | IBAN | SSN | PHONE => Canon::Alnum,
            EMAIL => Canon::Lower,
            _ => Canon::Raw,
        };
        mask::MaskSpec {
            style: self.style,
            key: self.key.as_ref(),
            label: self.class_name(usize::from(class)),
            canon,
            is_card: class == CARD,
            quote,
        }
    }

    pub(crate) fn hash_key(&self) -> Option<&HmacKey> {
        if self.style == MaskStyle::Hash {
            self.key.as_ref()
        } else {
            None
        }
    }
}

const DEFAULT_MAX_BUFFER: usize = 1024 * 1024;

/// Reads the `redaction` section: an object of named policies that rules reference by name.
pub fn compile_section(node: &Node<'_>) -> Result<BTreeMap<String, Arc<Redaction>>> {
    let mut out = BTreeMap::new();
    for (name, policy) in node.entries()? {
        if name.is_empty() {
            return Err(policy.error("redaction policy names must not be empty"));
        }
        out.insert(name.to_string(), Arc::new(compile(name, &policy)?));
    }
    Ok(out)
}

fn label_ok(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Reads one named redaction policy.
pub fn compile(name: &str, node: &Node<'_>) -> Result<Redaction> {
    let obj = node.object(&[
        "detectors",
        "custom",
        "fields",
        "pointers",
        "action",
        "mask",
        "bodies",
        "max_buffer_bytes",
        "on_unknown_encoding",
        "headers",
    ])?;
    let enabled = match obj.get("detectors") {
        None => (1u16 << BUILTIN) - 1,
        Some(list) => {
            let mut bits = 0u16;
            for item in list.array()? {
                let word = item.non_empty_str()?;
                let classes: Vec<u16> = if word == "secrets" {
                    SECRET_CLASSES.to_vec()
                } else if let Some(i) = BUILTIN_CLASSES.iter().position(|c| *c == word) {
                    vec![u16::try_from(i).unwrap_or(0)]
                } else {
                    return Err(item.error(format!(
                        "unknown detector {word:?}; expected one of: secrets, {}",
                        BUILTIN_CLASSES.join(", ")
                    )));
                };
                for c in classes {
                    bits |= 1 << c;
                }
            }
            bits
        }
    };
    let mut labels: Vec<String> = BUILTIN_CLASSES.iter().map(|s| s.to_string()).collect();
    let mut custom = Vec::new();
    if let Some(list) = obj.get("custom") {
        for item in list.array()? {
            let c = item.object(&["name", "regex"])?;
            let name_node = c.require("name")?;
            let cname = name_node.non_empty_str()?;
            if !label_ok(cname) {
                return Err(
                    name_node.error("use 1 to 64 characters from A-Z, a-z, 0-9, _, - and .")
                );
            }
            if labels.iter().any(|l| l == cname) {
                return Err(name_node.error(format!("{cname:?} is already a detector name")));
            }
            let regex_node = c.require("regex")?;
            let source = regex_node.non_empty_str()?;
            let regex = regex_lite::RegexBuilder::new(source)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| regex_node.error(format!("not a valid regex: {e}")))?;
            labels.push(cname.to_string());
            custom.push(Custom { regex });
        }
    }
    let mut fields: Vec<Vec<u8>> = Vec::new();
    if let Some(list) = obj.get("fields") {
        for item in list.array()? {
            let f = item.non_empty_str()?;
            if !label_ok(f) {
                return Err(item.error("use 1 to 64 characters from A-Z, a-z, 0-9, _, - and ."));
            }
            let lower = f.to_ascii_lowercase();
            if !fields.iter().any(|x| x == lower.as_bytes()) {
                labels.push(lower.clone());
                fields.push(lower.into_bytes());
            }
        }
    }
    let mut pointers = Vec::new();
    if let Some(list) = obj.get("pointers") {
        for item in list.array()? {
            let p = item.non_empty_str()?;
            let segs = json::parse_pointer(p)
                .ok_or_else(|| item.error("a JSON pointer starts with '/' (RFC 6901)"))?;
            if segs.len() > json::MAX_DEPTH {
                return Err(item.error(format!("deeper than {} levels", json::MAX_DEPTH)));
            }
            pointers.push(segs);
        }
    }
    labels.push("field".to_string());
    let action = obj
        .get("action")
        .map(|n| {
            n.one_of(&[
                ("redact", Action::Redact),
                ("block", Action::Block),
                ("report", Action::Report),
            ])
        })
        .transpose()?
        .unwrap_or(Action::Redact);
    let (style, key) = match obj.get("mask") {
        None => (MaskStyle::Token, None),
        Some(m) => {
            let m = m.object(&["style", "hash_key"])?;
            let style = m
                .get("style")
                .map(|n| {
                    n.one_of(&[
                        ("token", MaskStyle::Token),
                        ("last4", MaskStyle::Last4),
                        ("hash", MaskStyle::Hash),
                    ])
                })
                .transpose()?
                .unwrap_or(MaskStyle::Token);
            let key = match (style, m.get("hash_key")) {
                (MaskStyle::Hash, None) => {
                    return Err(m
                        .require("hash_key")
                        .err()
                        .unwrap_or_else(|| m.node().error("hash_key is required")))
                }
                (MaskStyle::Hash, Some(k)) => {
                    let s = k.str()?;
                    if s.len() < 16 {
                        return Err(k.error("use at least 16 bytes of key"));
                    }
                    Some(HmacKey::new(s.as_bytes()))
                }
                (_, Some(k)) => return Err(k.error("only used with style \"hash\"")),
                (_, None) => None,
            };
            (style, key)
        }
    };
    let (request, response) = match obj.get("bodies") {
        None => (false, true),
        Some(list) => {
            let mut rr = (false, false);
            for item in list.array()? {
                match item.one_of(&[("request", 0u8), ("response", 1u8)])? {
                    0 => rr.0 = true,
                    _ => rr.1 = true,
                }
            }
            if rr == (false, false) {
                return Err(list.error("name at least one of \"request\", \"response\""));
            }
            rr
        }
    };
    let max_buffer_bytes = obj
        .get("max_buffer_bytes")
        .map(|n| n.usize_in(1024, 64 * 1024 * 1024))
        .transpose()?
        .unwrap_or(DEFAULT_MAX_BUFFER);
    let on_unknown_encoding = obj
        .get("on_unknown_encoding")
        .map(|n| {
            n.one_of(&[
                ("pass", UnknownEncoding::Pass),
                ("block", UnknownEncoding::Block),
            ])
        })
        .transpose()?
        .unwrap_or(UnknownEncoding::Pass);
    let mut headers: Vec<String> = Vec::new();
    if let Some(list) = obj.get("headers") {
        for item in list.array()? {
            let h = item.non_empty_str()?;
            let token = h.len() <= 128
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                return Err(
                    item.error("not an HTTP header name (RFC 9110 token, at most 128 bytes)")
                );
            }
            let lower = h.to_ascii_lowercase();
            if !headers.contains(&lower) {
                headers.push(lower);
            }
        }
    }
    let mut window = BASE_WINDOW;
    if enabled & (1 << JWT) != 0 {
        window = window.max(detectors::MAX_JWT + 64);
    }
    if !custom.is_empty() {
        window = window.max(CUSTOM_WINDOW);
    }
    Ok(Redaction {
        name: name.to_string(),
        action,
        request,
        response,
        max_buffer_bytes,
        on_unknown_encoding,
        enabled,
        custom,
        fields,
        pointers,
        style,
        key,
        labels,
        window,
        headers,
    })
}

#[cfg(test)]
mod tests;
