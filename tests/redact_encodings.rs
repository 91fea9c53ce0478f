//! Re-encoded values: every spelling a receiver decodes back to a card, e-mail, SSN or IBAN is
//! found in JSON, form, text and XML bodies, masked so that the decoded output no longer holds
//! it, refused by a `block` policy, and streamed at every split offset with the one-shot output.
//! Each spelling has a negative twin (a broken check digit, an invalid SSN area, an upper-case or
//! hexadecimal glue) that must pass unchanged.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic fails the test"
)]

use apiguard::reader::Node;
use apiguard::redact::{compile, redact, BodyKind, Redaction, StreamRedactor};
use serde_json::json;
use std::sync::Arc;

fn policy(action: &str) -> Arc<Redaction> {
    let v = json!({"action": action, "bodies": ["request", "response"]});
    Arc::new(compile("t", &Node::root(&v)).unwrap())
}

/// How the receiver reads a spelling back (Unicode text).
#[derive(Clone, Copy, Debug)]
enum Spell {
    /// Written as is (UTF-8), escaped only where the syntax requires it.
    Plain,
    /// Every ASCII digit escaped (`\u0034`, `%34`, `&#52;`).
    AllDigits,
    /// Only the first digit escaped.
    OneDigit,
    /// Every byte escaped (forms: `%XX` for every byte; XML: `&#xHH;` for every character).
    Everything,
}

const SPELLS: [Spell; 4] = [
    Spell::Plain,
    Spell::AllDigits,
    Spell::OneDigit,
    Spell::Everything,
];

fn encode(kind: BodyKind, spell: Spell, value: &str) -> String {
    let mut out = String::new();
    let mut first_digit = true;
    for c in value.chars() {
        let digit = c.is_ascii_digit();
        let escape = match spell {
            Spell::Plain => false,
            Spell::AllDigits => digit,
            Spell::OneDigit => digit && std::mem::take(&mut first_digit),
            Spell::Everything => true,
        };
        match kind {
            BodyKind::Json => {
                if escape || c == '"' || c == '\\' {
                    let mut buf = [0u16; 2];
                    for u in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                } else {
                    out.push(c);
                }
            }
            BodyKind::Form => {
                let unreserved = c.is_ascii_alphanumeric() || "-._~".contains(c);
                if escape || !unreserved {
                    if c == ' ' && !escape {
                        out.push('+');
                        continue;
                    }
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("%{b:02X}"));
                    }
                } else {
                    out.push(c);
                }
            }
            BodyKind::Xml => {
                if escape {
                    out.push_str(&format!("&#x{:x};", u32::from(c)));
                } else if c == '&' {
                    out.push_str("&amp;");
                } else {
                    out.push(c);
                }
            }
            BodyKind::Text => out.push(c),
        }
    }
    out
}

fn body(kind: BodyKind, encoded: &str) -> String {
    match kind {
        BodyKind::Json => format!(r#"{{"note":"pay with {encoded} thanks","n":1}}"#),
        BodyKind::Form => format!("a=1&note=pay+with+{encoded}+thanks&b=2"),
        BodyKind::Xml => format!("<r><note>pay with {encoded} thanks</note></r>"),
        BodyKind::Text => format!("pay with {encoded} thanks\n"),
    }
}

/// The receiver's reading of a body: JSON strings unescaped, forms percent-decoded, XML
/// references resolved.
fn decoded(kind: BodyKind, b: &[u8]) -> String {
    let s = String::from_utf8(b.to_vec()).unwrap();
    match kind {
        BodyKind::Json => {
            let v: serde_json::Value = serde_json::from_str(&s).expect("output stays JSON");
            v.to_string()
                .chars()
                .chain(v["note"].as_str().unwrap_or("").chars())
                .collect()
        }
        BodyKind::Form => {
            let bytes = s.replace('+', " ").into_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' && i + 2 < bytes.len() {
                    let h = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    if let Ok(v) = u8::from_str_radix(h, 16) {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                }
                out.push(bytes[i]);
                i += 1;
            }
            String::from_utf8(out).unwrap()
        }
        BodyKind::Xml => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(at) = rest.find("&#x") {
                out.push_str(&rest[..at]);
                let end = rest[at..].find(';').unwrap() + at;
                let cp = u32::from_str_radix(&rest[at + 3..end], 16).unwrap();
                out.push(char::from_u32(cp).unwrap());
                rest = &rest[end + 1..];
            }
            out.push_str(rest);
            out.replace("&amp;", "&")
        }
        BodyKind::Text => s,
    }
}

/// ASCII digits of a text after folding Unicode digits, for the oracle.
fn digits(s: &str) -> String {
    s.chars()
        .filter_map(|c| {
            let u = u32::from(c);
            if c.is_ascii_digit() {
                Some(c)
            } else if (0xFF10..0xFF1A).contains(&u) {
                char::from_u32(u - 0xFF10 + u32::from(b'0'))
            } else if (0x0660..0x066A).contains(&u) {
                char::from_u32(u - 0x0660 + u32::from(b'0'))
            } else {
                None
            }
        })
        .collect()
}

fn stream_all_splits(p: &Arc<Redaction>, kind: BodyKind, b: &[u8], one_shot: &[u8]) {
    for cut in 0..=b.len() {
        let mut r = StreamRedactor::new(p.clone(), kind);
        let mut out = Vec::new();
        r.push(&b[..cut], false, &mut out);
        r.push(&b[cut..], true, &mut out);
        assert_eq!(
            out,
            one_shot,
            "{kind:?} split at {cut}: {}",
            String::from_utf8_lossy(b)
        );
    }
}

const KINDS: [BodyKind; 4] = [
    BodyKind::Json,
    BodyKind::Form,
    BodyKind::Text,
    BodyKind::Xml,
];

/// (what, logical value as the receiver reads it, the secret digits or text that must vanish).
const POSITIVES: &[(&str, &str, &str)] = &[
    ("card plain", "4111111111111111", "4111111111111111"),
    ("card dotted", "4111.1111.1111.1111", "4111111111111111"),
    ("card slashes", "4111/1111/1111/1111", "4111111111111111"),
    (
        "card double spaces",
        "4111  1111  1111  1111",
        "4111111111111111",
    ),
    (
        "card nbsp",
        "4111\u{a0}1111\u{a0}1111\u{a0}1111",
        "4111111111111111",
    ),
    (
        "card thin space",
        "4111\u{2009}1111\u{2009}1111\u{2009}1111",
        "4111111111111111",
    ),
    ("card 8-8", "41111111 11111111", "4111111111111111"),
    (
        "card single digits",
        "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
        "4111111111111111",
    ),
    (
        "card mixed separators",
        "4111-1111 1111.1111",
        "4111111111111111",
    ),
    (
        "card full-width",
        "４１１１１１１１１１１１１１１１",
        "4111111111111111",
    ),
    ("card arabic-indic", "٤١١١١١١١١١١١١١١١", "4111111111111111"),
    (
        "card zero-width joined",
        "4111\u{200b}1111\u{200b}1111\u{200b}1111",
        "4111111111111111",
    ),
    ("card glued x", "x4111111111111111", "4111111111111111"),
    (
        "card glued id_ _x",
        "id_4111111111111111_x",
        "4111111111111111",
    ),
    (
        "amex en-dash",
        "3782\u{2013}822463\u{2013}10005",
        "378282246310005",
    ),
    ("ssn en-dash", "536\u{2013}22\u{2013}1234", "536221234"),
    ("ssn full-width", "５３６-２２-１２３４", "536221234"),
    ("email", "jane.doe@example.com", "jane.doe@example.com"),
    (
        "email full-width at",
        "jane.doe\u{ff20}example.com",
        "jane.doe",
    ),
    (
        "iban lower case",
        "de89 3704 0044 0532 0130 00",
        "370400440532013000",
    ),
    (
        "iban nbsp",
        "DE89\u{a0}3704\u{a0}0044\u{a0}0532\u{a0}0130\u{a0}00",
        "370400440532013000",
    ),
];

/// Look-alikes in the same spellings: a receiver reads no valid value.
const NEGATIVES: &[(&str, &str)] = &[
    ("card broken luhn", "4111111111111112"),
    ("card broken luhn dotted", "4111.1111.1111.1112"),
    (
        "card broken luhn nbsp",
        "4111\u{a0}1111\u{a0}1111\u{a0}1112",
    ),
    (
        "card broken luhn full-width",
        "４１１１１１１１１１１１１１１２",
    ),
    (
        "card broken single digits",
        "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 2",
    ),
    ("upper-case invoice glue", "INV4111111111111111"),
    ("upper-case sku glue", "4111111111111111X"),
    ("hex glue", "ab4111111111111111cafe"),
    ("20 digits", "41111111111111111111"),
    ("decimal", "4111111111111111.5"),
    ("ssn invalid area en-dash", "666\u{2013}22\u{2013}1234"),
    ("ssn zero group nbsp", "536\u{a0}00\u{a0}1234"),
    ("iban broken", "de89370400440532013001"),
    ("date", "2024.01.15"),
    ("order number", "ORD-2024-000123456789"),
];

#[test]
fn every_spelling_of_a_value_is_masked_in_every_body_kind_and_streams_identically() {
    let redact_p = policy("redact");
    let block_p = policy("block");
    for (what, value, secret) in POSITIVES {
        for kind in KINDS {
            for spell in SPELLS {
                if matches!(kind, BodyKind::Text) && !matches!(spell, Spell::Plain) {
                    continue; // plain text has no escapes
                }
                let encoded = encode(kind, spell, value);
                let b = body(kind, &encoded);
                let o = redact(&redact_p, kind, b.as_bytes());
                let out = o.body.to_vec();
                let read = decoded(kind, &out);
                assert!(
                    !o.findings.is_empty(),
                    "{what} {kind:?} {spell:?}: {b} -> {}",
                    String::from_utf8_lossy(&out)
                );
                if !digits(secret).is_empty() {
                    assert!(
                        !digits(&read).contains(&digits(secret)),
                        "{what} {kind:?} {spell:?}: {b} -> {read}"
                    );
                } else {
                    assert!(!read.contains(secret), "{what} {kind:?} {spell:?}: {read}");
                }
                assert!(
                    !redact(&block_p, kind, b.as_bytes()).findings.is_empty(),
                    "block lets through {what} {kind:?} {spell:?}: {b}"
                );
                stream_all_splits(&redact_p, kind, b.as_bytes(), &out);
            }
        }
    }
}

#[test]
fn look_alikes_in_every_spelling_pass_unchanged_and_stream_identically() {
    let p = policy("redact");
    for (what, value) in NEGATIVES {
        for kind in KINDS {
            for spell in SPELLS {
                if matches!(kind, BodyKind::Text) && !matches!(spell, Spell::Plain) {
                    continue;
                }
                let b = body(kind, &encode(kind, spell, value));
                let o = redact(&p, kind, b.as_bytes());
                assert!(
                    o.findings.is_empty(),
                    "{what} {kind:?} {spell:?}: {b} -> {}",
                    String::from_utf8_lossy(&o.body)
                );
                assert_eq!(&*o.body, b.as_bytes());
                stream_all_splits(&p, kind, b.as_bytes(), b.as_bytes());
            }
        }
    }
}

#[test]
fn an_encoded_at_sign_makes_an_email_in_json_form_and_xml() {
    let p = policy("redact");
    for (kind, b) in [
        (BodyKind::Json, r#"{"to":"jane\u0040example.com"}"#),
        (BodyKind::Json, r#"{"to":"jane\u0040\u0065xample.com"}"#),
        (BodyKind::Form, "to=jane%40example.com&x=1"),
        (BodyKind::Xml, "<to>jane&#64;example.com</to>"),
        (BodyKind::Xml, "<to>jane&#x40;example.com</to>"),
    ] {
        let o = redact(&p, kind, b.as_bytes());
        let out = String::from_utf8(o.body.to_vec()).unwrap();
        assert!(out.contains("[REDACTED:email]"), "{b} -> {out}");
        assert!(!out.contains("jane"), "{b} -> {out}");
        stream_all_splits(&p, kind, b.as_bytes(), out.as_bytes());
    }
}

#[test]
fn a_json_number_in_exponent_form_that_is_a_card_is_masked_and_others_stay() {
    let p = policy("redact");
    for b in [
        r#"{"pan":4.111111111111111e15}"#,
        r#"{"pan":4.111111111111111E+15}"#,
        r#"{"pan":41111111111111.11e2}"#,
        r#"{"pan":4111111111111111.0}"#,
    ] {
        let o = redact(&p, BodyKind::Json, b.as_bytes());
        assert_eq!(
            String::from_utf8(o.body.to_vec()).unwrap(),
            r#"{"pan":"[REDACTED:card]"}"#,
            "{b}"
        );
        stream_all_splits(&p, BodyKind::Json, b.as_bytes(), &o.body);
    }
    for b in [
        r#"{"x":4.111111111111112e15}"#,
        r#"{"x":4.1111111111111111e15}"#,
        r#"{"x":1.7e308}"#,
        r#"{"x":4.111111111111111e-15}"#,
    ] {
        assert!(
            redact(&p, BodyKind::Json, b.as_bytes()).findings.is_empty(),
            "{b}"
        );
    }
}

fn utf16(s: &str, be: bool, bom: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let units = (if bom { "\u{feff}" } else { "" })
        .encode_utf16()
        .chain(s.encode_utf16());
    for u in units {
        out.extend_from_slice(&if be { u.to_be_bytes() } else { u.to_le_bytes() });
    }
    out
}

fn utf32le(s: &str) -> Vec<u8> {
    s.chars().flat_map(|c| u32::from(c).to_le_bytes()).collect()
}

#[test]
fn utf16_and_utf32_json_is_scanned_and_rewritten_in_its_own_encoding() {
    let redact_p = policy("redact");
    let block_p = policy("block");
    let doc = r#"{"card":"4111 1111 1111 1111","mail":"jane@example.com","n":"é😀"}"#;
    let masked = r#"{"card":"[REDACTED:card]","mail":"[REDACTED:email]","n":"é😀"}"#;
    let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (utf16(doc, false, false), utf16(masked, false, false)),
        (utf16(doc, true, false), utf16(masked, true, false)),
        (utf16(doc, false, true), utf16(masked, false, true)),
        (utf16(doc, true, true), utf16(masked, true, true)),
        (utf32le(doc), utf32le(masked)),
    ];
    for (body, expected) in cases {
        let o = redact(&redact_p, BodyKind::Json, &body);
        assert_eq!(o.body.to_vec(), expected);
        assert_eq!(o.findings.total(), 2);
        assert_eq!(redact(&block_p, BodyKind::Json, &body).findings.total(), 2);
        stream_all_splits(&redact_p, BodyKind::Json, &body, &expected);
    }
    // A clean UTF-16 body, lone surrogate included, comes back byte for byte.
    let mut clean = utf16(r#"{"a":"b"}"#, false, false);
    clean.extend_from_slice(&[0x00, 0xD8]);
    let o = redact(&redact_p, BodyKind::Json, &clean);
    assert!(!o.changed);
    stream_all_splits(&redact_p, BodyKind::Json, &clean, &clean);
}
