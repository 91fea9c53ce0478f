//! Presidio's own recogniser test cases (credit card, US SSN, email, IBAN), read in place from
//! `../shared/conformance/pii/presidio_test_cases.json`. Each case must give Presidio's verdict:
//! the same number of results at the same spans (checked by comparing the redacted text with
//! the text whose expected spans are replaced by the mask), unless it is listed in
//! `DIFFERENCES` with the reason apiguard is deliberately stricter or wider. A listed case that
//! agrees fails too, so the list cannot go stale.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic fails the test"
)]

use apiguard::reader::Node;
use apiguard::redact::{compile, redact, BodyKind};
use serde_json::{json, Value};

const CASES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/conformance/pii/presidio_test_cases.json"
);

/// (section, text, reason): deliberate differences from Presidio.
const DIFFERENCES: &[(&str, &str, &str)] = &[(
    "us_ssn",
    "078051121",
    "stricter: a bare nine-digit run is not taken for an SSN (Presidio itself scores it 0.3-0.4, \
     'weak'); in API bodies nine-digit ids, amounts and phone fragments are far more common than \
     unformatted SSNs. A member named e.g. `ssn` is redacted whatever it holds through field rules.",
)];

fn expected_output(text: &str, spans: &[(usize, usize)], label: &str) -> String {
    let mut out = String::new();
    let mut at = 0;
    for (s, e) in spans {
        out.push_str(&text[at..*s]);
        out.push_str(&format!("[REDACTED:{label}]"));
        at = *e;
    }
    out.push_str(&text[at..]);
    out
}

#[test]
fn presidio_cases_give_presidio_verdicts_or_a_documented_difference() {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(CASES).expect("conformance cases present in ../shared"),
    )
    .unwrap();
    let sections = [
        ("credit_card", "card"),
        ("us_ssn", "ssn"),
        ("email", "email"),
        ("iban", "iban"),
    ];
    let mut failures = Vec::new();
    let mut total = 0;
    println!(
        "{:<12} {:>6} {:>6} {:>10}",
        "detector", "cases", "agree", "documented"
    );
    for (section, detector) in sections {
        let config = json!({ "detectors": [detector] });
        let policy = compile("presidio", &Node::root(&config)).unwrap();
        let cases = doc[section]["cases"].as_array().expect("cases array");
        let (mut agree, mut documented) = (0, 0);
        for case in cases {
            let text = case["text"].as_str().unwrap();
            assert!(
                text.is_ascii(),
                "offsets are characters; these texts are ASCII"
            );
            let expected_len = case["expected_len"].as_u64().unwrap() as usize;
            let spans: Vec<(usize, usize)> = case
                .get("spans")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|s| {
                            (
                                s[0].as_u64().unwrap() as usize,
                                s[1].as_u64().unwrap() as usize,
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(spans.len(), expected_len, "case file: {text:?}");
            let result = redact(&policy, BodyKind::Text, text.as_bytes());
            let got = String::from_utf8(result.body.into_owned()).unwrap();
            let found = result.findings.total() as usize;
            let ok = found == expected_len && got == expected_output(text, &spans, detector);
            let listed = DIFFERENCES
                .iter()
                .find(|(s, t, _)| *s == section && *t == text);
            match (ok, listed) {
                (true, None) => agree += 1,
                (false, Some(_)) => documented += 1,
                (true, Some(_)) => failures.push(format!(
                    "{section}: {text:?} is listed as a difference but agrees with Presidio"
                )),
                (false, None) => failures.push(format!(
                    "{section}: {text:?}: Presidio expects {expected_len} at {spans:?}, apiguard found {found}: {got:?}"
                )),
            }
            total += 1;
        }
        println!(
            "{detector:<12} {:>6} {agree:>6} {documented:>10}",
            cases.len()
        );
    }
    for (section, text, reason) in DIFFERENCES {
        println!("documented difference [{section}] {text:?}: {reason}");
    }
    assert!(
        total > 250,
        "expected the full case file, read {total} cases"
    );
    assert!(
        failures.is_empty(),
        "undocumented disagreements:\n{}",
        failures.join("\n")
    );
}
