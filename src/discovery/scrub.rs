//! The last word on what discovery may emit: every name-like text that reaches the inventory
//! (path template segments, query parameter names, JSON member names, operation and service names,
//! host labels, JWT issuers) is decoded as its receiver reads it and checked by the redaction
//! detectors and a name-and-number heuristic. A match becomes a typed placeholder and a data
//! class on the endpoint, so no injected value reaches the collector, whatever the traffic.
//!
//! Placeholders: `{card}`, `{email}`, `{phone}`, `{ssn}` for those detectors; `{value}` for any
//! other detector (IBAN, JWT, secrets) and for the heuristic: free text (a space, NBSP or `+` after
//! decoding: `john%20smith`), or seven digits or more (`536%2022%201234`, `+1 (415) 555…`).
//! Data classes are the redaction class names (`card`, `email`, `phone`, `ssn`, `iban`, ...).
//!
//! Applied in [`super::inventory::Inventory::record`] (every observation goes through it before
//! it is stored, so nothing bypasses it) and to JSON member names as shapes are built.

use super::observe::{Observation, Side};
use crate::reader::Node;
use crate::redact::{self, BodyKind, Redaction};
use std::sync::OnceLock;

/// Longest text checked; longer texts are `{value}` (callers cap names well below this).
const MAX_SCRUB_BYTES: usize = 512;
/// Digits (after decoding) that make a name a value.
const MAX_NAME_DIGITS: usize = 6;

fn detectors() -> Option<&'static Redaction> {
    static POLICY: OnceLock<Option<Redaction>> = OnceLock::new();
    POLICY
        .get_or_init(|| {
            let v = serde_json::json!({"action": "report"});
            redact::compile("discovery", &Node::root(&v)).ok()
        })
        .as_ref()
}

/// A text that must not be emitted as it is: its placeholder, and the data class found (if a
/// detector found one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scrubbed {
    pub placeholder: &'static str,
    pub class: Option<&'static str>,
}

/// Percent-decodes (`%XX`, also multi-byte UTF-8) without treating `+` as a space.
fn percent_decode(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let h = b.get(i + 1).and_then(|x| char::from(*x).to_digit(16));
            let l = b.get(i + 2).and_then(|x| char::from(*x).to_digit(16));
            if let (Some(h), Some(l)) = (h, l) {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn placeholder_for(class: &str) -> &'static str {
    match class {
        "card" => "{card}",
        "email" => "{email}",
        "phone" => "{phone}",
        "ssn" => "{ssn}",
        _ => "{value}",
    }
}

/// The data class a typed placeholder stands for (`{card}` → `card`), if it is one.
pub fn class_of_placeholder(placeholder: &str) -> Option<&'static str> {
    match placeholder {
        "{card}" => Some("card"),
        "{email}" => Some("email"),
        "{phone}" => Some("phone"),
        "{ssn}" => Some("ssn"),
        _ => None,
    }
}

fn static_class(class: &str) -> &'static str {
    redact::BUILTIN_CLASSES
        .iter()
        .find(|c| **c == class)
        .copied()
        .unwrap_or("value")
}

/// Checks one name-like text. `None`: it may be emitted as it is.
pub fn check(text: &str) -> Option<Scrubbed> {
    if text.is_empty() || (text.starts_with('{') && text.ends_with('}') && text.len() <= 16) {
        return None; // empty, or already a placeholder
    }
    if text.len() > MAX_SCRUB_BYTES {
        return Some(Scrubbed {
            placeholder: "{value}",
            class: None,
        });
    }
    let decoded = percent_decode(text);
    let Some(policy) = detectors() else {
        return Some(Scrubbed {
            placeholder: "{value}",
            class: None,
        });
    };
    // Detectors read the decoded text, with `+` kept (a phone) and read as a space (a query).
    for candidate in [decoded.as_str(), &decoded.replace('+', " ")] {
        let found = redact::redact(policy, BodyKind::Text, candidate.as_bytes()).findings;
        let first = found.iter().next().map(|(class, _)| class);
        if let Some(class) = first {
            let name = policy.class_name(class);
            return Some(Scrubbed {
                placeholder: placeholder_for(name),
                class: Some(static_class(name)),
            });
        }
    }
    // Free text: words separated by any space-like character (after decoding).
    let spaced = decoded
        .chars()
        .any(|c| c.is_whitespace() || c == '+' || c == '\u{a0}');
    let digits = decoded.chars().filter(|c| c.is_numeric()).count();
    if spaced || digits > MAX_NAME_DIGITS || decoded.contains('@') {
        return Some(Scrubbed {
            placeholder: "{value}",
            class: None,
        });
    }
    None
}

/// Longest name whose verdict is remembered; longer ones are checked every time.
const MAX_CACHED_NAME: usize = 64;
/// Slots of the scrub cache (an even number: a name may sit in either slot of its pair).
const CACHE_SLOTS: usize = 512;

/// The verdicts of [`check`] on recent names (path segments, host labels, query parameter and
/// operation names), kept by each worker's inventory: the same few names come back on every
/// request, and `check` runs the detectors over each. `check` is a pure function of the name,
/// so a remembered verdict is the one it would give again. Two-way: a name may sit in either slot
/// of one pair (by a hash of its bytes) and, when both are taken, replaces the first, so a client
/// sending many names only makes the cache miss. Memory: at most `CACHE_SLOTS` names of at most
/// `MAX_CACHED_NAME` bytes (12 KiB of slots, 32 KiB of names at most).
#[derive(Debug, Default)]
pub struct ScrubCache {
    slots: Vec<Option<(Box<str>, Option<Scrubbed>)>>,
}

impl ScrubCache {
    /// [`check`], remembered.
    pub fn check(&mut self, text: &str) -> Option<Scrubbed> {
        if self.slots.is_empty() {
            self.slots.resize_with(CACHE_SLOTS, || None);
        }
        // A hash of the name's bytes picks a pair of slots.
        let pair = (text.len() <= MAX_CACHED_NAME)
            .then(|| usize::try_from(fnv1a(text) % CACHE_SLOTS as u64).unwrap_or(0) & !1);
        let pair = pair.and_then(|at| self.slots.get_mut(at..at + 2));
        let mut free = 0;
        for (k, slot) in pair.iter().flat_map(|p| p.iter()).enumerate() {
            match slot {
                Some((name, verdict)) if **name == *text => return *verdict,
                None => free = k,
                Some(_) => {}
            }
        }
        let verdict = check(text);
        if let Some(slot) = pair.and_then(|p| p.get_mut(free)) {
            *slot = Some((text.into(), verdict));
        }
        verdict
    }
}

/// FNV-1a of `text`'s bytes: the slot of a worker's caches of recent texts (names here, paths in
/// [`super::observe::PathCache`]).
pub(crate) fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The text to emit for `text`, noting any data class in `classes`.
pub fn name(text: &str, classes: &mut Vec<&'static str>, cache: &mut ScrubCache) -> String {
    match cache.check(text) {
        None => text.to_string(),
        Some(s) => {
            if let Some(c) = s.class {
                if !classes.contains(&c) {
                    classes.push(c);
                }
            }
            s.placeholder.to_string()
        }
    }
}

/// Each `sep`-separated part of `text` through [`name`], joined again by `sep`.
fn names(text: &str, sep: char, classes: &mut Vec<&'static str>, cache: &mut ScrubCache) -> String {
    let mut out = String::with_capacity(text.len());
    for (k, part) in text.split(sep).enumerate() {
        if k > 0 {
            out.push(sep);
        }
        out.push_str(&name(part, classes, cache));
    }
    out
}

/// A path template: each segment that is not already a placeholder is checked.
pub fn template(t: &str, classes: &mut Vec<&'static str>, cache: &mut ScrubCache) -> String {
    let mut out = String::with_capacity(t.len());
    for (k, seg) in t.split('/').enumerate() {
        if k > 0 {
            out.push('/');
        }
        if seg.is_empty() || seg == "**" || seg == "*" {
            out.push_str(seg);
        } else {
            out.push_str(&name(seg, classes, cache));
        }
    }
    out
}

/// A host: each DNS label is checked (`4111…1111.evil.example` → `{card}.evil.example`); a
/// port and the `{none}` / `{invalid}` markers stay.
pub fn host(h: &str, classes: &mut Vec<&'static str>, cache: &mut ScrubCache) -> String {
    if h.starts_with('{') || h.starts_with('[') {
        return h.to_string();
    }
    let (name_part, port) = match h.rsplit_once(':') {
        Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (n, Some(p)),
        _ => (h, None),
    };
    // A dotted IPv4 address is an address, not a value of the request.
    if name_part.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && name_part.split('.').count() == 4
    {
        return h.to_string();
    }
    let mut out = names(name_part, '.', classes, cache);
    if let Some(p) = port {
        out.push(':');
        out.push_str(p);
    }
    out
}

/// Scrubs everything an observation would emit, in place; classes found are added to the
/// request's data classes.
pub fn observation(obs: &mut Observation, cache: &mut ScrubCache) {
    let mut classes: Vec<&'static str> = Vec::new();
    if obs.template_source != super::observe::TemplateSource::Declared {
        obs.template = template(&obs.template, &mut classes, cache);
    }
    obs.host = host(&obs.host, &mut classes, cache);
    for q in &mut obs.query_params {
        *q = name(q, &mut classes, cache);
    }
    // At most MAX_QUERY_PARAMS names (discovery::observe).
    crate::sorting::small_sort_strings(&mut obs.query_params);
    obs.query_params.dedup();
    if let Some(op) = obs.classification.operation.as_mut() {
        if let Some(n) = op.name.as_mut() {
            *n = names(n, ',', &mut classes, cache);
        }
        if let Some(s) = op.service.as_mut() {
            *s = names(s, '.', &mut classes, cache);
        }
    }
    if let Some(iss) = obs.auth.issuer.as_mut() {
        // Issuers are URLs: only a detector match (not the free-text heuristic) replaces one.
        if check(&percent_decode(iss).replace(['/', ':', '?', '=', '&'], " "))
            .is_some_and(|s| s.class.is_some())
        {
            *iss = "{value}".to_string();
        }
    }
    if !classes.is_empty() {
        obs.add_data_classes(Side::Request, &classes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubbed(t: &str) -> String {
        template(t, &mut Vec::new(), &mut ScrubCache::default())
    }

    #[test]
    fn encoded_values_in_path_segments_become_typed_placeholders() {
        let mut classes = Vec::new();
        assert_eq!(
            template(
                "/cards/4111%201111%201111%201111",
                &mut classes,
                &mut ScrubCache::default()
            ),
            "/cards/{card}"
        );
        assert_eq!(scrubbed("/ssn/536%2022%201234"), "/ssn/{ssn}");
        assert_eq!(scrubbed("/n/536%2022%2012"), "/n/{value}");
        assert_eq!(scrubbed("/ssn/536-22-1234"), "/ssn/{ssn}");
        assert_eq!(scrubbed("/users/+14155552671/sms"), "/users/{phone}/sms");
        assert_eq!(
            scrubbed("/people/john%20smith/profile"),
            "/people/{value}/profile"
        );
        assert_eq!(scrubbed("/mail/jane%40example.com"), "/mail/{email}");
        assert_eq!(scrubbed("/x/４１１１１１１１１１１１１１１１"), "/x/{card}");
        assert_eq!(classes, vec!["card"]);
    }

    #[test]
    fn ordinary_names_and_placeholders_stay() {
        for t in [
            "/users/{id}/orders",
            "/v1/pets/{uuid}",
            "/api/v2/line-items",
            "/files/report_2024.pdf",
            "/**",
        ] {
            assert_eq!(scrubbed(t), t);
        }
    }

    #[test]
    fn the_scrub_cache_gives_the_verdicts_of_check_however_full_it_is() {
        let mut cache = ScrubCache::default();
        let long = format!("{}4111111111111111", "x_".repeat(40));
        let names: Vec<String> = (0..2000)
            .map(|i| match i % 5 {
                0 => format!("item{i}"),
                1 => "4111111111111111".to_string(),
                2 => format!("user{i}@example.com"),
                3 => long.clone(),
                _ => "orders".to_string(),
            })
            .collect();
        // Twice over, so that later rounds hit the slots the first one filled (or evicted).
        for name in names.iter().chain(&names) {
            assert_eq!(cache.check(name), check(name), "{name}");
        }
        assert!(cache.slots.len() == CACHE_SLOTS);
    }

    #[test]
    fn host_labels_are_checked_but_addresses_and_ports_stay() {
        let mut c = Vec::new();
        assert_eq!(
            host(
                "4111111111111111.evil.example:8080",
                &mut c,
                &mut ScrubCache::default()
            ),
            "{card}.evil.example:8080"
        );
        assert_eq!(
            host("api.example.com", &mut c, &mut ScrubCache::default()),
            "api.example.com"
        );
        assert_eq!(
            host("10.0.0.1:9000", &mut c, &mut ScrubCache::default()),
            "10.0.0.1:9000"
        );
    }

    #[test]
    fn operation_names_carrying_values_become_placeholders() {
        let mut c = Vec::new();
        assert_eq!(
            name(
                "charge_4111111111111111",
                &mut c,
                &mut ScrubCache::default()
            ),
            "{card}",
            "glued card"
        );
        assert_eq!(
            name(
                "notify jane@example.com",
                &mut c,
                &mut ScrubCache::default()
            ),
            "{email}"
        );
        assert_eq!(
            name("getUser", &mut c, &mut ScrubCache::default()),
            "getUser"
        );
        assert_eq!(
            name("orders.list", &mut c, &mut ScrubCache::default()),
            "orders.list"
        );
    }
}
