use super::detectors::{self as d, Brand};
use super::*;
use crate::reader::Node;
use serde_json::json;

fn policy(v: serde_json::Value) -> Redaction {
    compile("t", &Node::root(&v)).unwrap()
}

fn config_error(v: serde_json::Value) -> (String, String) {
    let e = compile("t", &Node::root(&v)).unwrap_err();
    (e.path, e.message)
}

fn with_check(prefix: &str) -> String {
    (0..10)
        .map(|c| format!("{prefix}{c}"))
        .find(|s| d::luhn(s.as_bytes()))
        .unwrap()
}

fn broken(card: &str) -> String {
    let mut b = card.as_bytes().to_vec();
    let last = b.last_mut().unwrap();
    *last = if *last == b'9' { b'0' } else { *last + 1 };
    String::from_utf8(b).unwrap()
}

fn out(p: &Redaction, kind: BodyKind, body: &str) -> String {
    String::from_utf8(redact(p, kind, body.as_bytes()).body.into_owned()).unwrap()
}

// ----- configuration ----------------------------------------------------------------------

#[test]
fn an_empty_policy_runs_every_built_in_detector_on_responses_with_token_masks() {
    let p = policy(json!({}));
    assert!(BUILTIN_CLASSES
        .iter()
        .enumerate()
        .all(|(i, _)| p.enabled(i as u16)));
    assert_eq!((p.request, p.response), (false, true));
    assert_eq!(p.action, Action::Redact);
    assert_eq!(p.max_buffer_bytes, 1024 * 1024);
    assert_eq!(p.on_unknown_encoding, UnknownEncoding::Pass);
    assert_eq!(p.window(), d::MAX_JWT + 64);
}

#[test]
fn secrets_enables_every_secret_detector_and_nothing_else() {
    let p = policy(json!({"detectors": ["secrets"]}));
    for c in SECRET_CLASSES {
        assert!(p.enabled(c));
    }
    assert!(!p.enabled(CARD) && !p.enabled(JWT));
    assert_eq!(p.window(), 512, "no JWT detector: the small window");
}

#[test]
fn an_unknown_detector_is_refused_at_its_index() {
    let (path, msg) = config_error(json!({"detectors": ["card", "passport"]}));
    assert_eq!(path, "detectors[1]");
    assert!(msg.contains("passport"));
}

#[test]
fn an_unknown_member_is_refused_with_its_path() {
    assert_eq!(config_error(json!({"detector": []})).0, "detector");
    assert_eq!(
        config_error(json!({"mask": {"style": "token", "salt": "x"}})).0,
        "mask.salt"
    );
}

#[test]
fn an_invalid_custom_regex_is_refused_at_its_path() {
    let (path, msg) = config_error(json!({"custom": [{"name": "emp", "regex": "EMP-[0-9"}]}));
    assert_eq!(path, "custom[0].regex");
    assert!(msg.contains("not a valid regex"));
}

#[test]
fn a_custom_name_that_would_break_a_mask_or_shadow_a_detector_is_refused() {
    let (path, _) = config_error(json!({"custom": [{"name": "a\"b", "regex": "x"}]}));
    assert_eq!(path, "custom[0].name");
    let (path, _) = config_error(json!({"custom": [{"name": "card", "regex": "x"}]}));
    assert_eq!(path, "custom[0].name");
    let (path, _) = config_error(json!({"custom": [{"regex": "x"}]}));
    assert_eq!(path, "custom[0].name");
}

#[test]
fn hash_masks_need_a_key_of_sixteen_bytes_and_other_masks_refuse_one() {
    assert_eq!(
        config_error(json!({"mask": {"style": "hash"}})).0,
        "mask.hash_key"
    );
    assert_eq!(
        config_error(json!({"mask": {"style": "hash", "hash_key": "short"}})).0,
        "mask.hash_key"
    );
    assert_eq!(
        config_error(json!({"mask": {"style": "last4", "hash_key": "0123456789abcdef"}})).0,
        "mask.hash_key"
    );
    assert_eq!(
        config_error(json!({"mask": {"style": "blur"}})).0,
        "mask.style"
    );
}

#[test]
fn bodies_actions_pointers_and_limits_are_checked() {
    assert_eq!(config_error(json!({"bodies": []})).0, "bodies");
    assert_eq!(config_error(json!({"bodies": ["trailers"]})).0, "bodies[0]");
    assert_eq!(config_error(json!({"action": "drop"})).0, "action");
    assert_eq!(
        config_error(json!({"pointers": ["user/dob"]})).0,
        "pointers[0]"
    );
    assert_eq!(
        config_error(json!({"fields": ["pass word"]})).0,
        "fields[0]"
    );
    assert_eq!(
        config_error(json!({"max_buffer_bytes": 10})).0,
        "max_buffer_bytes"
    );
    assert_eq!(
        config_error(json!({"on_unknown_encoding": "drop"})).0,
        "on_unknown_encoding"
    );
    let p = policy(json!({"bodies": ["request", "response"], "action": "report"}));
    assert!(p.request && p.response && !p.rewrites());
}

#[test]
fn the_section_compiles_every_named_policy() {
    let v = json!({"pii": {}, "cards": {"detectors": ["card"], "action": "block"}});
    let all = compile_section(&Node::root(&v)).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all["cards"].action, Action::Block);
    let bad = json!({"pii": {"action": "x"}});
    assert_eq!(
        compile_section(&Node::root(&bad)).unwrap_err().path,
        "pii.action"
    );
}

#[test]
fn content_types_pick_the_lexer_and_encoded_bodies_follow_the_unknown_rule() {
    let p = policy(json!({"on_unknown_encoding": "block"}));
    assert_eq!(
        p.decide(Some("application/json; charset=utf-8"), None),
        BodyDecision::Scan(BodyKind::Json)
    );
    assert_eq!(
        p.decide(Some("application/problem+json"), Some("identity")),
        BodyDecision::Scan(BodyKind::Json)
    );
    assert_eq!(
        p.decide(Some("application/x-www-form-urlencoded"), None),
        BodyDecision::Scan(BodyKind::Form)
    );
    assert_eq!(
        p.decide(Some("text/html"), None),
        BodyDecision::Scan(BodyKind::Text)
    );
    assert_eq!(
        p.decide(Some("application/soap+xml"), None),
        BodyDecision::Scan(BodyKind::Xml)
    );
    assert_eq!(
        p.decide(Some("application/json"), Some("gzip")),
        BodyDecision::BlockUnscanned
    );
    assert_eq!(
        p.decide(Some("image/png"), None),
        BodyDecision::BlockUnscanned
    );
    assert_eq!(p.decide(None, None), BodyDecision::BlockUnscanned);
    assert_eq!(
        policy(json!({})).decide(Some("application/octet-stream"), None),
        BodyDecision::PassUnscanned
    );
}

// ----- detectors ----------------------------------------------------------------------------

#[test]
fn public_test_cards_of_every_brand_are_recognised_with_their_brand() {
    let cases: Vec<(String, Brand)> = vec![
        ("4111111111111111".into(), Brand::Visa),
        ("4012888888881881".into(), Brand::Visa),
        ("4222222222222".into(), Brand::Visa),
        (with_check("411111111111111111"), Brand::Visa),
        ("5555555555554444".into(), Brand::Mastercard),
        ("5105105105105100".into(), Brand::Mastercard),
        ("2223003122003222".into(), Brand::Mastercard),
        (with_check("222100000000000"), Brand::Mastercard),
        (with_check("272099999999999"), Brand::Mastercard),
        ("378282246310005".into(), Brand::Amex),
        ("371449635398431".into(), Brand::Amex),
        ("6011111111111117".into(), Brand::Discover),
        ("6011000990139424".into(), Brand::Discover),
        (with_check("644000000000000"), Brand::Discover),
        ("30569309025904".into(), Brand::Diners),
        ("38520000023237".into(), Brand::Diners),
        ("3056930009020004".into(), Brand::Diners),
        ("3530111333300000".into(), Brand::Jcb),
        ("3566002020360505".into(), Brand::Jcb),
        ("6200000000000005".into(), Brand::UnionPay),
        ("6205500000000000004".into(), Brand::UnionPay),
        (with_check("810000000000000"), Brand::UnionPay),
        ("6759649826438453".into(), Brand::Maestro),
        (with_check("630400000000000"), Brand::Maestro),
        (with_check("501800000000"), Brand::Maestro),
        ("5019717010103742".into(), Brand::Dankort),
        (with_check("220000000000000"), Brand::Mir),
        (with_check("979200000000000"), Brand::Troy),
        ("122000000000003".into(), Brand::Uatp),
    ];
    for (card, brand) in &cases {
        assert!(d::luhn(card.as_bytes()), "{card} Luhn");
        assert_eq!(d::card_brand(card.as_bytes()), Some(*brand), "{card}");
        assert_eq!(
            d::card(card.as_bytes(), b"", false),
            Some(card.len()),
            "{card}"
        );
        let bad = broken(card);
        assert_eq!(
            d::card(bad.as_bytes(), b"", false),
            None,
            "check digit broken: {bad}"
        );
    }
}

#[test]
fn card_numbers_in_consistent_groups_are_cards_and_mixed_separators_are_not() {
    for s in [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "3782 822463 10005",
        "3056 930902 5904",
        "4222 2222 2222 2",
        "6205 5000 0000 0000 004",
    ] {
        assert_eq!(d::card(s.as_bytes(), b"", false), Some(s.len()), "{s}");
    }
    for s in [
        "4111 1111-1111 1111",
        "41111 111 1111 1111",
        "4111  1111 1111 1111",
        "4111_1111_1111_1111",
    ] {
        assert_eq!(d::card(s.as_bytes(), b"", false), None, "{s}");
    }
    assert_eq!(
        d::card(b"4111+1111+1111+1111", b"", true),
        Some(19),
        "form: + is a space"
    );
    assert_eq!(d::card(b"4111+1111+1111+1111", b"", false), None);
}

#[test]
fn a_card_inside_a_longer_token_is_not_a_card() {
    assert_eq!(
        d::card(b"41111111111111111111", b"", false),
        None,
        "20 digits"
    );
    assert_eq!(d::card(b"4111111111111111-01", b"", false), None);
    assert_eq!(d::card(b"4111111111111111.50", b"", false), None);
    assert_eq!(d::card(b"4111111111111111x", b"", false), None);
    assert_eq!(d::card(b"4111111111111111", b"12-", false), None);
    assert_eq!(d::card(b"4111-1111-1111-1111-2222", b"", false), None);
    assert_eq!(d::card(b"4111111111111111 12/27", b"", false), Some(16));
    assert_eq!(
        d::card(b"4111 1111 1111 1111 4012 8888 8888 1881", b"", false),
        Some(19),
        "two space-grouped cards in a row are two cards"
    );
}

#[test]
fn look_alikes_are_not_cards() {
    for s in [
        "1700000000000",       // epoch milliseconds
        "1700000000000000000", // epoch nanoseconds
        "20240115093000123",   // timestamp digits
        "0000000000000000",    // Luhn-valid zeros, no issuer
        "9999999999999995",    // Luhn-valid, no issuer
        "123456789012345678",  // order id
        "550e8400e29b41d4",    // UUID fragment
        "14155552671",         // phone digits
    ] {
        assert_eq!(d::card(s.as_bytes(), b"", false), None, "{s}");
    }
}

#[test]
fn ibans_validate_length_and_mod_97_compact_or_in_groups_of_four() {
    for s in [
        "DE89370400440532013000",
        "DE89 3704 0044 0532 0130 00",
        "GB29NWBK60161331926819",
        "FR1420041010050500013M02606",
        "NO9386011117947",
        "MT84MALT011000012345MTLCAST001S",
    ] {
        assert_eq!(d::iban(s.as_bytes(), false), Some(s.len()), "{s}");
    }
    for s in [
        "DE89370400440532013001",     // mod-97
        "DE8937040044053201300",      // length
        "XX89370400440532013000",     // country
        "de89370400440532013000",     // lower case
        "DE89 3704 0044 0532 013000", // irregular groups
        "DE89370400440532013000X",    // longer token
    ] {
        assert_eq!(d::iban(s.as_bytes(), false), None, "{s}");
    }
}

#[test]
fn ssns_follow_the_area_group_and_serial_rules() {
    for s in [
        "078-05-1123",
        "078 05 1123",
        "078.05.1123",
        "123-45-6780",
        "899-99-9999",
    ] {
        assert_eq!(d::ssn(s.as_bytes(), b"", false), Some(11), "{s}");
    }
    for s in [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "999-12-3456",
        "123-00-4567",
        "123-45-0000",
        "078-05-1120",
        "219-09-9999",
        "123-45-6789",
        "111-11-1111",
        "078-05.1123",
        "078-05-11234",
        "078-05-1123-4",
    ] {
        assert_eq!(d::ssn(s.as_bytes(), b"", false), None, "{s}");
    }
    assert_eq!(
        d::ssn(b"078-05-1123", b"1-", false),
        None,
        "tail of a longer number"
    );
}

#[test]
fn emails_need_a_plausible_local_part_and_a_domain_with_an_alphabetic_tld() {
    assert_eq!(d::email_local(b"info"), Some(4));
    assert_eq!(d::email_local(b"to: first.last+tag"), Some(14));
    assert_eq!(d::email_local(b"x.."), None);
    assert_eq!(d::email_local(&[b'a'; 65]), None, "longer than 64");
    assert_eq!(d::email_domain(b"presidio.site"), Some(13));
    assert_eq!(d::email_domain(b"mail.example.co.uk, next"), Some(18));
    assert_eq!(d::email_domain(b"example.com."), Some(11), "sentence dot");
    assert_eq!(d::email_domain(b"presidio."), None);
    assert_eq!(d::email_domain(b"localhost"), None);
    assert_eq!(d::email_domain(b"example.c0m"), None);
    assert_eq!(d::email_domain(b"-bad.com"), None);
}

#[test]
fn phone_numbers_in_e164_and_national_forms_are_found_and_bare_digit_runs_are_not() {
    for s in [
        "+14155552671",
        "+1 415-555-2671",
        "+44 20 7946 0958",
        "+49 (0)30 901820",
        "+33.1.23.45.67.89",
    ] {
        assert_eq!(d::phone_plus(s.as_bytes()), Some(s.len()), "{s}");
    }
    assert_eq!(d::phone_plus(b"+0123456789"), None);
    assert_eq!(d::phone_plus(b"+1234567"), None, "too short");
    assert_eq!(d::phone_plus(b"+1234567890123456"), None, "too long");
    for s in [
        "(415) 555-2671",
        "415-555-2671",
        "415.555.2671",
        "415 555 2671",
        "1-800-555-0199",
        "020 7946 0958",
        "06 12 34 56 78",
    ] {
        assert_eq!(d::phone_national(s.as_bytes(), b""), Some(s.len()), "{s}");
    }
    for s in [
        "4155552671",
        "115-555-2671",
        "415-555-26711",
        "2024-01-15",
        "01.02.2024",
        "415-555-2671-9",
    ] {
        assert_eq!(d::phone_national(s.as_bytes(), b""), None, "{s}");
    }
}

// {"alg":"HS256","typ":"JWT"} . {"sub":"1234567890","name":"John Doe","iat":1516239022} . sig
const JWT_SAMPLE: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

#[test]
fn jwts_need_a_header_that_decodes_to_json_with_alg() {
    assert_eq!(d::jwt(JWT_SAMPLE.as_bytes()), Some(JWT_SAMPLE.len()));
    let dotted = format!("{JWT_SAMPLE}. Next");
    assert_eq!(d::jwt(dotted.as_bytes()), Some(JWT_SAMPLE.len()));
    // {"typ":"JWT"}: no alg
    assert_eq!(d::jwt(b"eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.c2ln"), None);
    // header is not base64url JSON
    assert_eq!(d::jwt(b"eyJhbGciOi.eyJzdWIiOiIxIn0.c2ln"), None);
    assert_eq!(
        d::jwt(b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0"),
        None,
        "two segments"
    );
}

#[test]
fn secrets_are_recognised_by_prefix_and_length() {
    let cases: &[(&str, d::Secret)] = &[
        ("AKIAIOSFODNN7EXAMPLE", d::Secret::AwsKey),
        ("ASIAY34FZKBOKMUTVV7A", d::Secret::AwsKey),
        ("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", d::Secret::Github),
        ("github_pat_11ABCDEFG0123456789abc_defghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUV", d::Secret::Github),
        ("glpat-xxxxxxxxxxxxxxxxxxxx", d::Secret::Gitlab),
        ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", d::Secret::Slack),
        ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", d::Secret::Stripe),
        ("rk_test_51H8abcdefghijklmnop", d::Secret::Stripe),
    ];
    for (s, kind) in cases {
        assert_eq!(d::secret(s.as_bytes()), Some((s.len(), *kind)), "{s}");
    }
    for s in [
        "AKIAIOSFODNN7EXAMPL",
        "AKIAIOSFODNN7EXAMPLEX",
        "ghp_short",
        "sk_live_x",
        "xoxq-1234567890",
        "skip_live_4eC39HqLyjWDarjtT1zdp7dc",
    ] {
        assert_eq!(d::secret(s.as_bytes()), None, "{s}");
    }
}

#[test]
fn pem_private_key_lines_are_recognised_and_public_keys_are_not() {
    assert_eq!(
        d::pem_begin(b"-----BEGIN RSA PRIVATE KEY-----\nMII"),
        Some(31)
    );
    assert_eq!(d::pem_begin(b"-----BEGIN PRIVATE KEY-----"), Some(27));
    assert_eq!(
        d::pem_begin(b"-----BEGIN OPENSSH PRIVATE KEY-----"),
        Some(35)
    );
    assert_eq!(d::pem_begin(b"-----BEGIN PUBLIC KEY-----"), None);
    assert_eq!(d::pem_begin(b"-----BEGIN CERTIFICATE-----"), None);
    assert_eq!(d::pem_end(b"-----END EC PRIVATE KEY-----\n"), Some(28));
}

// ----- the scanner ----------------------------------------------------------------------------

#[test]
fn json_string_values_are_masked_in_place_and_everything_else_is_untouched() {
    let p = policy(json!({}));
    let body = r#"{ "name" : "Ann",  "card":"4111 1111 1111 1111", "mail":"ann@example.com" }"#;
    assert_eq!(
        out(&p, BodyKind::Json, body),
        r#"{ "name" : "Ann",  "card":"[REDACTED:card]", "mail":"[REDACTED:email]" }"#
    );
}

#[test]
fn a_json_number_that_is_a_card_becomes_a_string_and_other_numbers_stay() {
    let p = policy(json!({"mask": {"style": "last4"}}));
    let body = r#"{"pan":4111111111111111,"id":1700000000000,"amount":4111111111111111.5,"neg":-4111111111111111}"#;
    assert_eq!(
        out(&p, BodyKind::Json, body),
        r#"{"pan":"************1111","id":1700000000000,"amount":4111111111111111.5,"neg":-4111111111111111}"#
    );
}

#[test]
fn field_rules_redact_whole_values_whatever_they_hold_case_insensitively() {
    let p = policy(json!({"fields": ["password", "cvv", "secret"]}));
    let body = r#"{"Password":"hunter2","user":{"CVV":123,"secret":{"a":"x","b":[1,"y",true]}},"other":"hunter2"}"#;
    assert_eq!(
        out(&p, BodyKind::Json, body),
        r#"{"Password":"[REDACTED:password]","user":{"CVV":"[REDACTED:cvv]","secret":{"a":"[REDACTED:secret]","b":["[REDACTED:secret]","[REDACTED:secret]",true]}},"other":"hunter2"}"#
    );
}

#[test]
fn pointers_redact_exactly_the_values_they_name() {
    let p = policy(json!({"pointers": ["/user/dob", "/items/1/sku"]}));
    let body = r#"{"user":{"dob":"1990-01-01","name":"x"},"dob":"keep","items":[{"sku":"a"},{"sku":"b"}]}"#;
    assert_eq!(
        out(&p, BodyKind::Json, body),
        r#"{"user":{"dob":"[REDACTED:field]","name":"x"},"dob":"keep","items":[{"sku":"a"},{"sku":"[REDACTED:field]"}]}"#
    );
}

#[test]
fn a_json_escape_ends_a_token() {
    let p = policy(json!({}));
    let body = r#"["line\n4111111111111111\tend", "a\u0040b.com", "x\\ann@example.com"]"#;
    assert_eq!(
        out(&p, BodyKind::Json, body),
        r#"["line\n[REDACTED:card]\tend", "a\u0040b.com", "x\\[REDACTED:email]"]"#
    );
}

#[test]
fn form_bodies_apply_field_rules_to_names_and_detectors_to_values() {
    let p = policy(json!({"fields": ["password"]}));
    let body = "user=ann%40example.com&password=hunter2&card=4111+1111+1111+1111&note=hi";
    assert_eq!(
        out(&p, BodyKind::Form, body),
        "user=[REDACTED:email]&password=[REDACTED:password]&card=[REDACTED:card]&note=hi"
    );
}

#[test]
fn private_key_blocks_are_masked_whole_even_when_longer_than_the_window() {
    let p = policy(json!({"detectors": ["private_key"]}));
    let key_body = "QUJD".repeat(2000);
    let body = format!(
        "before\n-----BEGIN RSA PRIVATE KEY-----\n{key_body}\n-----END RSA PRIVATE KEY-----\nafter"
    );
    assert!(body.len() > p.window());
    assert_eq!(
        out(&p, BodyKind::Text, &body),
        "before\n[REDACTED:private_key]\nafter"
    );
    let json_body = format!(
        r#"{{"k":"-----BEGIN PRIVATE KEY-----\n{key_body}\n-----END PRIVATE KEY-----\n","n":1}}"#
    );
    assert_eq!(
        out(&p, BodyKind::Json, &json_body),
        r#"{"k":"[REDACTED:private_key]\n","n":1}"#
    );
    let unterminated = format!(r#"{{"k":"-----BEGIN PRIVATE KEY-----\n{key_body}","n":1}}"#);
    assert_eq!(
        out(&p, BodyKind::Json, &unterminated),
        r#"{"k":"[REDACTED:private_key]","n":1}"#,
        "no END line: masked to the end of the string"
    );
}

#[test]
fn custom_detectors_match_inside_one_string_line_or_value() {
    let p = policy(
        json!({"custom": [{"name": "employee_id", "regex": "EMP-[0-9]{6}"}], "detectors": []}),
    );
    assert_eq!(
        out(
            &p,
            BodyKind::Json,
            r#"{"id":"EMP-123456","x":"EMP-12345","EMP-654321":1}"#
        ),
        r#"{"id":"[REDACTED:employee_id]","x":"EMP-12345","[REDACTED:employee_id]":1}"#
    );
    assert_eq!(
        out(&p, BodyKind::Text, "a EMP-000001 b\nEMP-000002"),
        "a [REDACTED:employee_id] b\n[REDACTED:employee_id]"
    );
}

#[test]
fn block_and_report_leave_the_body_alone_and_count_classes() {
    for action in ["block", "report"] {
        let p = policy(json!({"action": action, "fields": ["password"]}));
        let body = r#"{"password":"x","c":"4111111111111111","d":"5555555555554444"}"#;
        let r = redact(&p, BodyKind::Json, body.as_bytes());
        assert!(!r.changed);
        assert_eq!(&*r.body, body.as_bytes());
        assert_eq!(r.findings.named(&p), vec![("card", 2), ("password", 1)]);
    }
}

#[test]
fn hash_masks_keep_equal_values_joinable() {
    let p = policy(json!({"mask": {"style": "hash", "hash_key": "0123456789abcdef0123"}}));
    let o = out(
        &p,
        BodyKind::Json,
        r#"["ann@example.com","ANN@example.com","bob@example.com"]"#,
    );
    let masks: Vec<&str> = o
        .split('"')
        .filter(|s| s.starts_with("[REDACTED"))
        .collect();
    assert_eq!(masks.len(), 3);
    assert_eq!(masks[0], masks[1]);
    assert_ne!(masks[0], masks[2]);
    assert!(masks[0].starts_with("[REDACTED:email:"));
}

#[test]
fn invalid_json_is_scanned_as_text_from_where_it_stops_being_json() {
    let p = policy(json!({}));
    assert_eq!(
        out(&p, BodyKind::Json, "<html>card 4111111111111111</html>"),
        "<html>card [REDACTED:card]</html>"
    );
}

#[test]
fn disabled_detectors_find_nothing() {
    let p = policy(json!({"detectors": ["email"]}));
    let body = r#"["4111111111111111","078-05-1123","a@b.co"]"#;
    assert_eq!(
        out(&p, BodyKind::Json, body),
        r#"["4111111111111111","078-05-1123","[REDACTED:email]"]"#
    );
}

#[test]
fn a_form_body_without_any_equals_sign_is_still_scanned() {
    let p = policy(json!({}));
    assert_eq!(
        out(&p, BodyKind::Form, "4111111111111111"),
        "[REDACTED:card]"
    );
    assert_eq!(
        out(&p, BodyKind::Form, "a=1&ann%40example.com&b=2"),
        "a=1&[REDACTED:email]&b=2"
    );
}
