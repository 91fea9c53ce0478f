//! Redaction throughput on a generated 1 MB JSON corpus with a realistic density of sensitive
//! values, side by side with a baseline built on the `regex` crate: a `RegexSet` of equivalent
//! patterns says which patterns occur, a `Regex` per occurring pattern finds the positions, the
//! same validation (Luhn + issuer, IBAN length + mod-97, SSN rules, JWT header) filters them,
//! and the body is rewritten with the same masks. Both produce a redacted body.
//!
//! Run: `cargo bench --bench redact` (prints a table; several rounds, best and median).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark code: a panic aborts the run"
)]

use apiguard::reader::Node;
use apiguard::redact::{compile, redact, BodyKind, Redaction, StreamRedactor};
use regex::bytes::{Regex, RegexSet};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

const ROUNDS: usize = 15;
const TARGET_BYTES: usize = 1 << 20;

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
const FIRST: &[&str] = &["Ann", "Bob", "Chen", "Dana", "Eve", "Femi", "Gita", "Hugo"];
const LAST: &[&str] = &["Lee", "Smith", "Okafor", "Novak", "García", "Müller", "Ito"];
const CITIES: &[&str] = &["Berlin", "Lagos", "Austin", "Osaka", "Lyon", "Porto"];
const CARDS: &[&str] = &[
    "4111 1111 1111 1111",
    "5555555555554444",
    "2223003122003222",
    "378282246310005",
    "6011-1111-1111-1117",
];
const IBANS: &[&str] = &[
    "DE89370400440532013000",
    "GB29 NWBK 6016 1331 9268 19",
    "FR1420041010050500013M02606",
];

/// An API response listing customers and orders: ids, timestamps, amounts, prose, and PII at
/// realistic rates (every record an email, most a phone, some cards, IBANs, SSNs, tokens).
/// With `sensitive` false, the same records without any of those (ids, timestamps, amounts, zip
/// codes and prose are still there): a body the scanner must cross without finding anything.
fn corpus(sensitive: bool) -> Vec<u8> {
    let mut rng = Rng(0x5eed);
    let mut s = String::from("{\"data\":[");
    let mut i = 0u64;
    while s.len() < TARGET_BYTES {
        if i > 0 {
            s.push(',');
        }
        let (f, l) = (FIRST[rng.below(FIRST.len())], LAST[rng.below(LAST.len())]);
        s.push_str(&format!(
            r#"{{"id":"{:016x}","seq":{i},"created_at":"2024-0{}-1{}T09:{}:00.123Z","name":"{f} {l}","{}":"{}.{}{}{}","#,
            i.wrapping_mul(0x9e3779b97f4a7c15),
            1 + rng.below(9),
            rng.below(10),
            10 + rng.below(50),
            if sensitive { "email" } else { "handle" },
            f.to_lowercase(),
            l.to_lowercase(),
            rng.below(100),
            if sensitive { "@example.com" } else { "" },
        ));
        if rng.below(10) < 7 && sensitive {
            s.push_str(&format!(
                r#""phone":"+1 415-555-{:04}","#,
                rng.below(10_000)
            ));
        }
        s.push_str(&format!(
            r#""address":{{"street":"{} Main Street","city":"{}","zip":"{:05}"}},"#,
            1 + rng.below(999),
            CITIES[rng.below(CITIES.len())],
            rng.below(100_000)
        ));
        s.push_str(&format!(
            r#""orders":[{{"order_id":"ORD-{:010}","amount":{}.{:02},"currency":"EUR","items":{},"status":"shipped"}}],"#,
            rng.below(1_000_000_000),
            rng.below(1000),
            rng.below(100),
            1 + rng.below(5)
        ));
        match rng.below(20) {
            _ if !sensitive => {}
            0..=3 => s.push_str(&format!(
                r#""payment":{{"card":"{}","exp":"12/27"}},"#,
                CARDS[rng.below(CARDS.len())]
            )),
            4 | 5 => s.push_str(&format!(
                r#""payout":{{"iban":"{}"}},"#,
                IBANS[rng.below(IBANS.len())]
            )),
            6 => s.push_str(r#""tax":{"ssn":"078-05-1123"},"#),
            7 => s.push_str(&format!(r#""session":"Bearer {JWT}","#)),
            8 => s.push_str(r#""debug":"key AKIAIOSFODNN7EXAMPLE used","#),
            _ => {}
        }
        s.push_str(r#""notes":"Customer asked about delivery times; follow up next week. Ticket 48213 closed.","tags":["vip","newsletter"],"active":true}"#);
        i += 1;
    }
    s.push_str("]}");
    s.into_bytes()
}

// ----- baseline: regex crate + the same validation -------------------------------------------

const PATTERNS: &[(&str, &str)] = &[
    ("card", r"(?-u)\b(?:\d[ -]?){12,18}\d\b"),
    (
        "iban",
        r"(?-u)\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
    ),
    ("ssn", r"(?-u)\b\d{3}[- .]\d{2}[- .]\d{4}\b"),
    (
        "email",
        r"(?-u)\b[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}\b",
    ),
    (
        "phone",
        r"(?-u)\+[1-9](?:[ .-]?\d){7,14}\b|\(\d{3}\) ?\d{3}[-. ]\d{4}\b|\b\d{3}[-. ]\d{3}[-. ]\d{4}\b",
    ),
    (
        "jwt",
        r"(?-u)\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
    ),
    ("aws_key", r"(?-u)\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"),
    (
        "github_token",
        r"(?-u)\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
    ),
    ("gitlab_token", r"(?-u)\bglpat-[A-Za-z0-9_-]{20,255}"),
    ("slack_token", r"(?-u)\bxox[baprs]-[A-Za-z0-9-]{10,255}"),
    (
        "stripe_key",
        r"(?-u)\b[rs]k_(?:live|test)_[A-Za-z0-9]{10,255}\b",
    ),
    (
        "private_key",
        r"(?s-u)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----",
    ),
];

struct Baseline {
    set: RegexSet,
    each: Vec<Regex>,
}

impl Baseline {
    fn new() -> Baseline {
        Baseline {
            set: RegexSet::new(PATTERNS.iter().map(|(_, p)| *p)).unwrap(),
            each: PATTERNS
                .iter()
                .map(|(_, p)| Regex::new(p).unwrap())
                .collect(),
        }
    }

    fn redact(&self, body: &[u8]) -> (Vec<u8>, usize) {
        let mut found: Vec<(usize, usize, usize)> = Vec::new();
        for k in self.set.matches(body).iter() {
            for m in self.each[k].find_iter(body) {
                if valid(k, m.as_bytes()) {
                    found.push((m.start(), m.end(), k));
                }
            }
        }
        found.sort_unstable();
        let mut out = Vec::with_capacity(body.len());
        let mut at = 0;
        let mut n = 0;
        for (s, e, k) in found {
            if s < at {
                continue;
            }
            out.extend_from_slice(&body[at..s]);
            out.extend_from_slice(b"[REDACTED:");
            out.extend_from_slice(PATTERNS[k].0.as_bytes());
            out.push(b']');
            at = e;
            n += 1;
        }
        out.extend_from_slice(&body[at..]);
        (out, n)
    }
}

fn luhn(d: &[u8]) -> bool {
    let mut sum = 0;
    for (i, b) in d.iter().rev().enumerate() {
        let mut v = u32::from(b - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

fn issuer_ok(d: &[u8]) -> bool {
    let p = |n: usize| {
        d[..n]
            .iter()
            .fold(0u32, |a, b| a * 10 + u32::from(b - b'0'))
    };
    let len = d.len();
    match () {
        _ if p(1) == 4 => matches!(len, 13 | 16 | 19),
        _ if (51..=55).contains(&p(2)) || (2221..=2720).contains(&p(4)) => len == 16,
        _ if p(2) == 34 || p(2) == 37 => len == 15,
        _ if p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3)) || p(2) == 62 => len >= 16,
        _ if (3528..=3589).contains(&p(4)) => len >= 16,
        _ if (300..=305).contains(&p(3)) || p(2) == 36 || p(2) == 38 || p(2) == 39 => len >= 14,
        _ if p(2) == 50 || (56..=58).contains(&p(2)) || p(2) == 63 || p(2) == 67 => true,
        _ => p(1) == 1 && len == 15,
    }
}

fn iban_len(c: &[u8]) -> Option<usize> {
    Some(match c {
        b"DE" | b"GB" | b"IE" | b"BG" | b"BH" | b"CR" | b"GE" | b"ME" | b"RS" | b"VA" => 22,
        b"FR" | b"IT" | b"GR" | b"MC" | b"MR" | b"SM" => 27,
        b"ES" | b"CZ" | b"SE" | b"SK" | b"RO" | b"PK" | b"SA" | b"TN" | b"MD" | b"VG" => 24,
        b"NL" | b"DK" | b"FI" | b"FO" | b"GL" => 18,
        b"AT" | b"EE" | b"LT" | b"LU" | b"KZ" | b"BA" | b"XK" => 20,
        b"BE" => 16,
        b"CH" | b"LI" | b"LV" | b"HR" => 21,
        b"NO" => 15,
        b"PL" | b"HU" | b"AL" | b"CY" | b"DO" | b"GT" | b"LB" | b"AZ" | b"BY" => 28,
        b"PT" => 25,
        b"BR" | b"PS" | b"QA" => 29,
        _ => return None,
    })
}

fn valid(k: usize, m: &[u8]) -> bool {
    match PATTERNS[k].0 {
        "card" => {
            let d: Vec<u8> = m.iter().copied().filter(u8::is_ascii_digit).collect();
            let seps: Vec<u8> = m.iter().copied().filter(|b| !b.is_ascii_digit()).collect();
            (13..=19).contains(&d.len())
                && seps.windows(2).all(|w| w[0] == w[1])
                && luhn(&d)
                && issuer_ok(&d)
        }
        "iban" => {
            let c: Vec<u8> = m.iter().copied().filter(|b| *b != b' ').collect();
            if iban_len(&c[..2]) != Some(c.len()) {
                return false;
            }
            let mut r = 0u32;
            for b in c[4..].iter().chain(&c[..4]) {
                r = if b.is_ascii_digit() {
                    (r * 10 + u32::from(b - b'0')) % 97
                } else {
                    (r * 100 + u32::from(b - b'A') + 10) % 97
                };
            }
            r == 1
        }
        "ssn" => {
            if m[3] != m[6] {
                return false;
            }
            let d: Vec<u8> = m.iter().copied().filter(u8::is_ascii_digit).collect();
            let area = &d[..3];
            area != b"000"
                && area != b"666"
                && area[0] != b'9'
                && &d[3..5] != b"00"
                && &d[5..] != b"0000"
                && d != b"078051120"
        }
        "phone" => {
            let n = m.iter().filter(|b| b.is_ascii_digit()).count();
            (8..=15).contains(&n)
        }
        "jwt" => {
            use base64ct::{Base64UrlUnpadded, Encoding};
            let header = m.split(|b| *b == b'.').next().unwrap_or(&[]);
            let mut buf = [0u8; 1024];
            match Base64UrlUnpadded::decode(header, &mut buf) {
                Ok(json) => serde_json::from_slice::<serde_json::Value>(json)
                    .ok()
                    .and_then(|v| v.get("alg").map(|a| a.is_string()))
                    .unwrap_or(false),
                Err(_) => false,
            }
        }
        _ => true,
    }
}

// ----- harness --------------------------------------------------------------------------------

fn measure(mut f: impl FnMut() -> usize) -> (f64, f64, usize) {
    let mut times = Vec::with_capacity(ROUNDS);
    let mut n = 0;
    f(); // warm-up
    for _ in 0..ROUNDS {
        let t = Instant::now();
        n = black_box(f());
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (times[0], times[ROUNDS / 2], n)
}

fn main() {
    let body = corpus(true);
    let clean = corpus(false);
    let mb = body.len() as f64 / 1e6;
    let config = serde_json::json!({});
    let policy: Arc<Redaction> = Arc::new(compile("bench", &Node::root(&config)).unwrap());
    let baseline = Baseline::new();

    let ours = redact(&policy, BodyKind::Json, &body);
    let (theirs, theirs_n) = baseline.redact(&body);
    println!(
        "corpus: {} bytes of JSON; apiguard finds {} values ({:?}); baseline finds {theirs_n}",
        body.len(),
        ours.findings.total(),
        ours.findings.named(&policy)
    );
    serde_json::from_slice::<serde_json::Value>(&ours.body).expect("redacted corpus is JSON");
    let _ = theirs;

    let one_shot = measure(|| redact(&policy, BodyKind::Json, &body).findings.total() as usize);
    let streamed = measure(|| {
        let mut r = StreamRedactor::new(policy.clone(), BodyKind::Json);
        let mut out = Vec::with_capacity(body.len());
        let chunks: Vec<&[u8]> = body.chunks(64 * 1024).collect();
        for (i, c) in chunks.iter().enumerate() {
            r.push(c, i + 1 == chunks.len(), &mut out);
        }
        r.findings().total() as usize
    });
    let base = measure(|| baseline.redact(&body).1);
    let clean_one_shot =
        measure(|| redact(&policy, BodyKind::Json, &clean).findings.total() as usize);
    let clean_base = measure(|| baseline.redact(&clean).1);

    println!(
        "{:<40} {:>10} {:>12} {:>12}",
        "engine (redact 1 MB JSON)", "matches", "best MB/s", "median MB/s"
    );
    for (name, (best, median, n)) in [
        ("apiguard one-shot", one_shot),
        ("apiguard streaming, 64 KiB chunks", streamed),
        ("regex RegexSet + Regex + validation", base),
    ] {
        println!(
            "{name:<40} {n:>10} {:>12.1} {:>12.1}",
            mb / best,
            mb / median
        );
    }
    println!(
        "ratio apiguard / regex baseline: {:.2}x (median), {:.2}x (best)",
        base.1 / one_shot.1,
        base.0 / one_shot.0
    );
    let clean_mb = clean.len() as f64 / 1e6;
    println!();
    println!(
        "{:<40} {:>10} {:>12} {:>12}",
        format!("nothing sensitive ({} bytes)", clean.len()),
        "matches",
        "best MB/s",
        "median MB/s"
    );
    for (name, (best, median, n)) in [
        ("apiguard one-shot", clean_one_shot),
        ("regex RegexSet + Regex + validation", clean_base),
    ] {
        println!(
            "{name:<40} {n:>10} {:>12.1} {:>12.1}",
            clean_mb / best,
            clean_mb / median
        );
    }
}
