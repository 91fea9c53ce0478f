//! Redaction corpus: public test cards of every brand (valid and check-digit-broken), IBANs of
//! several countries, look-alikes that must stay, and generated documents with an exact oracle:
//! each generated body is written together with the body it must become, so every byte outside
//! a match is checked to be unchanged, and redacted JSON is checked to parse.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic fails the test"
)]

use apiguard::reader::Node;
use apiguard::redact::{compile, redact, BodyKind, Redaction};
use serde_json::json;

fn policy(v: serde_json::Value) -> Redaction {
    compile("t", &Node::root(&v)).unwrap()
}

fn run(p: &Redaction, kind: BodyKind, body: &str) -> String {
    String::from_utf8(redact(p, kind, body.as_bytes()).body.into_owned()).unwrap()
}

fn luhn_ok(s: &str) -> bool {
    let d: Vec<u32> = s
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
        .collect();
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, v)| {
            if i % 2 == 1 {
                if v * 2 > 9 {
                    v * 2 - 9
                } else {
                    v * 2
                }
            } else {
                *v
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn break_check_digit(card: &str) -> String {
    let mut b = card.as_bytes().to_vec();
    let last = b.iter_mut().rev().find(|c| c.is_ascii_digit()).unwrap();
    *last = if *last == b'9' { b'0' } else { *last + 1 };
    String::from_utf8(b).unwrap()
}

/// Public test numbers (Stripe, Adyen, PayPal, Braintree documentation), one or more per brand.
const TEST_CARDS: &[(&str, &str)] = &[
    ("visa", "4111111111111111"),
    ("visa", "4012888888881881"),
    ("visa 13", "4222222222222"),
    ("visa debit", "4000056655665556"),
    ("mastercard", "5555555555554444"),
    ("mastercard", "5105105105105100"),
    ("mastercard 2-series", "2223003122003222"),
    ("mastercard 2-series", "2221000000000009"),
    ("mastercard 2-series", "2720999999999996"),
    ("amex", "378282246310005"),
    ("amex", "371449635398431"),
    ("discover", "6011111111111117"),
    ("discover", "6011000990139424"),
    ("discover 19", "6011000000000000001"),
    ("diners 14", "30569309025904"),
    ("diners 14", "38520000023237"),
    ("diners 16", "3056930009020004"),
    ("jcb", "3530111333300000"),
    ("jcb", "3566002020360505"),
    ("unionpay", "6200000000000005"),
    ("unionpay 19", "6205500000000000004"),
    ("maestro", "6759649826438453"),
    ("maestro", "6304000000000000"),
    ("dankort", "5019717010103742"),
    ("mir", "2200000000000004"),
    ("uatp", "122000000000003"),
    ("troy", "9792000000000003"),
];

#[test]
fn every_brand_s_public_test_card_is_masked_and_its_broken_twin_is_not() {
    let p = policy(json!({"detectors": ["card"]}));
    for (brand, card) in TEST_CARDS {
        assert!(luhn_ok(card), "fixture {brand} {card}");
        let grouped: String = card
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        for form in [card.to_string(), grouped.clone(), grouped.replace(' ', "-")] {
            let body = format!("pay with {form}, thanks");
            assert_eq!(
                run(&p, BodyKind::Text, &body),
                "pay with [REDACTED:card], thanks",
                "{brand} {form}"
            );
            let json_body = format!(r#"{{"pan":"{form}"}}"#);
            assert_eq!(
                run(&p, BodyKind::Json, &json_body),
                r#"{"pan":"[REDACTED:card]"}"#,
                "{brand}"
            );
            let broken = break_check_digit(&form);
            let body = format!("pay with {broken}, thanks");
            assert_eq!(
                run(&p, BodyKind::Text, &body),
                body,
                "check digit broken: {brand} {broken}"
            );
        }
        let number = format!(r#"{{"pan":{card}}}"#);
        assert_eq!(
            run(&p, BodyKind::Json, &number),
            r#"{"pan":"[REDACTED:card]"}"#,
            "{brand} as a number"
        );
    }
}

#[test]
fn amex_and_diners_groupings_are_cards() {
    let p = policy(json!({"detectors": ["card"]}));
    for s in ["3782 822463 10005", "3714-496353-98431", "3056 930902 5904"] {
        assert_eq!(run(&p, BodyKind::Text, s), "[REDACTED:card]", "{s}");
    }
}

#[test]
fn look_alikes_are_left_alone() {
    let p = policy(json!({}));
    let body = concat!(
        r#"{"order_id":"ORD-2024-000123456789","ts":"2024-01-15T09:30:00.123Z","epoch_ms":1700000000000,"#,
        r#""epoch_ns":"1700000000000000000","uuid":"550e8400-e29b-41d4-a716-446655440000","#,
        r#""uuid_digits":"55084002941417164466554400","ip":"10.0.0.1","version":"1.2.3","#,
        r#""tracking":"1Z999AA10123456784","isbn":"978-3-16-148410-0","amount":"4111.11","#,
        r#""ref":"41111111111111112","invoice":"INV4111111111111111","sku":"4111111111111111X","#,
        r#""range":"4111111111111111-4111111111111112","decimal":"4111111111111111.5","#,
        r#""date":"01.02.2024","zip":"94105-1234","count":"123456789","nine":"078051123","#,
        r#""hash":"d41d8cd98f00b204e9800998ecf8427e","path":"/v1/users/12345/orders","#,
        r#""email_like":"user@localhost","at":"@handle","key_like":"AKIA1234","bare_phone":"4155552671"}"#
    );
    assert_eq!(run(&p, BodyKind::Json, body), body);
    assert!(redact(&p, BodyKind::Json, body.as_bytes())
        .findings
        .is_empty());
}

#[test]
fn ibans_of_several_countries_are_masked_when_valid_only() {
    let p = policy(json!({"detectors": ["iban"]}));
    let valid = [
        "DE89370400440532013000",
        "DE89 3704 0044 0532 0130 00",
        "GB29NWBK60161331926819",
        "GB29 NWBK 6016 1331 9268 19",
        "FR1420041010050500013M02606",
        "ES9121000418450200051332",
        "IT60X0542811101000000123456",
        "NL91ABNA0417164300",
        "BE68539007547034",
        "CH9300762011623852957",
        "NO9386011117947",
        "PL61109010140000071219812874",
        "SA0380000000608010167519",
        "BR9700360305000010009795493P1",
    ];
    for iban in valid {
        let body = format!("IBAN: {iban}.");
        assert_eq!(
            run(&p, BodyKind::Text, &body),
            "IBAN: [REDACTED:iban].",
            "{iban}"
        );
        let broken = break_check_digit(iban);
        let body = format!("IBAN: {broken}.");
        assert_eq!(run(&p, BodyKind::Text, &body), body, "{broken}");
    }
    for invalid in [
        "DE8937040044053201300",
        "US89370400440532013000",
        "de89370400440532013000",
    ] {
        assert_eq!(run(&p, BodyKind::Text, invalid), invalid);
    }
}

// ----- generated documents with an exact oracle ---------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &'a [(&'a str, &'a str)]) -> (&'a str, &'a str) {
        items[self.below(items.len())]
    }
}

const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

/// (value, class): sensitive values, each to become `[REDACTED:class]`.
const PII: &[(&str, &str)] = &[
    ("4111111111111111", "card"),
    ("4111 1111 1111 1111", "card"),
    ("5555-5555-5555-4444", "card"),
    ("2223003122003222", "card"),
    ("378282246310005", "card"),
    ("6011111111111117", "card"),
    ("DE89370400440532013000", "iban"),
    ("GB29 NWBK 6016 1331 9268 19", "iban"),
    ("078-05-1123", "ssn"),
    ("123 45 6780", "ssn"),
    ("ann.lee@example.com", "email"),
    ("bob+tag@mail.example.co.uk", "email"),
    ("+1 415-555-2671", "phone"),
    ("(415) 555-2671", "phone"),
    ("+44 20 7946 0958", "phone"),
    (JWT, "jwt"),
    ("AKIAIOSFODNN7EXAMPLE", "aws_key"),
    ("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", "github_token"),
    ("glpat-xxxxxxxxxxxxxxxxxxxx", "gitlab_token"),
    (
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "slack_token",
    ),
    ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe_key"),
    ("EMP-004211", "employee_id"),
];

/// Words that must stay as they are.
const FILLER: &[(&str, &str)] = &[
    ("hello", ""),
    ("order", ""),
    ("ORD-000123456789", ""),
    ("2024-01-15T09:30:00Z", ""),
    ("550e8400-e29b-41d4-a716-446655440000", ""),
    ("1700000000000", ""),
    ("v1.2.3", ""),
    ("10.0.0.1", ""),
    ("total:", ""),
    ("4111.11", ""),
    ("EUR", ""),
    ("résumé", ""),
    ("naïve—café", ""),
    ("id=42", ""),
];

const SEPS: &[&str] = &[" ", ", ", "; ", " | ", " (", ") ", ": "];

fn full_policy() -> Redaction {
    policy(json!({
        "custom": [{"name": "employee_id", "regex": "EMP-[0-9]{6}"}],
        "fields": ["password", "cvv", "secret"],
        "pointers": ["/meta/dob"],
    }))
}

/// Random text made of filler words and sensitive values, with its expected redaction.
fn gen_text(rng: &mut Rng, words: usize, json_safe: bool) -> (String, String) {
    let (mut input, mut expected) = (String::new(), String::new());
    for k in 0..words {
        if k > 0 {
            let sep = if !json_safe && rng.below(8) == 0 {
                "\n"
            } else {
                SEPS[rng.below(SEPS.len())]
            };
            input.push_str(sep);
            expected.push_str(sep);
        }
        if rng.below(3) == 0 {
            let (v, class) = rng.pick(PII);
            input.push_str(v);
            expected.push_str(&format!("[REDACTED:{class}]"));
        } else {
            let (v, _) = rng.pick(FILLER);
            input.push_str(v);
            expected.push_str(v);
        }
    }
    (input, expected)
}

fn ws(rng: &mut Rng) -> &'static str {
    [" ", "", "", "\n  ", "\t"][rng.below(5)]
}

/// A random JSON value and its expected redaction; `force` is the field class covering it.
fn gen_json(rng: &mut Rng, depth: usize, force: Option<&str>, path: &[&str]) -> (String, String) {
    let kind = if depth == 0 {
        rng.below(4)
    } else {
        rng.below(7)
    };
    match kind {
        0 | 1 => {
            let words = 1 + rng.below(6);
            let (s, e) = gen_text(rng, words, true);
            let e = force.map_or(e, |c| format!("[REDACTED:{c}]"));
            (format!("\"{s}\""), format!("\"{e}\""))
        }
        2 => {
            let n = match rng.below(4) {
                0 => "4111111111111111".to_string(),
                1 => "-12.5e3".to_string(),
                _ => (rng.next() % 1_000_000).to_string(),
            };
            let e = match force {
                Some(c) => format!("\"[REDACTED:{c}]\""),
                None if n == "4111111111111111" => "\"[REDACTED:card]\"".to_string(),
                None => n.clone(),
            };
            (n, e)
        }
        3 => {
            let lit = ["true", "false", "null"][rng.below(3)];
            (lit.to_string(), lit.to_string())
        }
        4 | 5 => {
            let (mut i, mut e) = ("{".to_string(), "{".to_string());
            let n = rng.below(5);
            for k in 0..n {
                if k > 0 {
                    i.push(',');
                    e.push(',');
                }
                let (key, key_force): (String, Option<String>) = match rng.below(7) {
                    0 => ("Password".into(), Some("password".into())),
                    1 => ("cvv".into(), Some("cvv".into())),
                    2 if path == ["meta"] => ("dob".into(), Some("field".into())),
                    _ => (
                        ["name", "note", "meta", "items", "x"][rng.below(5)].to_string(),
                        None,
                    ),
                };
                let w1 = ws(rng);
                let w2 = ws(rng);
                i.push_str(&format!("{w1}\"{key}\"{w2}:{w1}"));
                e.push_str(&format!("{w1}\"{key}\"{w2}:{w1}"));
                let inner_force = force.map(str::to_string).or(key_force);
                let mut p: Vec<&str> = path.to_vec();
                p.push(&key);
                let (vi, ve) = gen_json(rng, depth - 1, inner_force.as_deref(), &p);
                i.push_str(&vi);
                e.push_str(&ve);
            }
            i.push('}');
            e.push('}');
            (i, e)
        }
        _ => {
            let (mut i, mut e) = ("[".to_string(), "[".to_string());
            for k in 0..rng.below(5) {
                if k > 0 {
                    let w = ws(rng);
                    i.push_str(&format!(",{w}"));
                    e.push_str(&format!(",{w}"));
                }
                let mut p: Vec<&str> = path.to_vec();
                p.push("0");
                let (vi, ve) = gen_json(rng, depth - 1, force, &p);
                i.push_str(&vi);
                e.push_str(&ve);
            }
            i.push(']');
            e.push(']');
            (i, e)
        }
    }
}

#[test]
fn generated_text_is_redacted_exactly_and_untouched_bytes_stay_identical() {
    let p = full_policy();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..400 {
        let words = 1 + rng.below(40);
        let (input, expected) = gen_text(&mut rng, words, false);
        assert_eq!(
            run(&p, BodyKind::Text, &input),
            expected,
            "input: {input:?}"
        );
    }
}

#[test]
fn generated_json_is_redacted_exactly_and_stays_valid_json() {
    let p = full_policy();
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut masked = 0;
    for _ in 0..400 {
        let (input, expected) = gen_json(&mut rng, 4, None, &[]);
        serde_json::from_str::<serde_json::Value>(&input).expect("generator writes JSON");
        let got = run(&p, BodyKind::Json, &input);
        assert_eq!(got, expected, "input: {input}");
        serde_json::from_str::<serde_json::Value>(&got).expect("redacted JSON parses");
        masked += got.matches("[REDACTED:").count();
    }
    assert!(
        masked > 500,
        "the corpus exercises masking ({masked} masks)"
    );
}

#[test]
fn generated_form_bodies_are_redacted_exactly() {
    let p = full_policy();
    let mut rng = Rng(42);
    for _ in 0..200 {
        let (mut input, mut expected) = (String::new(), String::new());
        for k in 0..1 + rng.below(6) {
            if k > 0 {
                input.push('&');
                expected.push('&');
            }
            if rng.below(4) == 0 {
                input.push_str("password=s3cr%26t+value");
                expected.push_str("password=[REDACTED:password]");
            } else {
                let (v, class) = rng.pick(PII);
                let v = v.replace(' ', "+");
                let v = if class == "email" {
                    v.replace('@', "%40")
                } else {
                    v
                };
                // `+` stands for a space: a form-encoded phone number starts with %2B; keep
                // the classes whose encoded form the scanner reads.
                if class == "phone" || class == "ssn" && v.contains('+') {
                    input.push_str(&format!("f{k}=plain"));
                    expected.push_str(&format!("f{k}=plain"));
                } else {
                    input.push_str(&format!("f{k}={v}"));
                    expected.push_str(&format!("f{k}=[REDACTED:{class}]"));
                }
            }
        }
        assert_eq!(run(&p, BodyKind::Form, &input), expected, "input: {input}");
    }
}

#[test]
fn xml_bodies_are_scanned_as_text() {
    let p = policy(json!({}));
    let body = "<user><email>ann@example.com</email><card>4111111111111111</card></user>";
    assert_eq!(
        run(&p, BodyKind::Xml, body),
        "<user><email>[REDACTED:email]</email><card>[REDACTED:card]</card></user>"
    );
}

#[test]
fn findings_count_classes_and_never_carry_values() {
    let p = full_policy();
    let body = r#"{"a":"4111111111111111 and ann@example.com","password":"hunter2","meta":{"dob":"1990-01-01"}}"#;
    let r = redact(&p, BodyKind::Json, body.as_bytes());
    assert_eq!(
        r.findings.named(&p),
        vec![("card", 1), ("email", 1), ("password", 1), ("field", 1)]
    );
    let debug = format!("{:?}", r.findings);
    assert!(!debug.contains("4111") && !debug.contains("hunter2") && !debug.contains("ann@"));
}
