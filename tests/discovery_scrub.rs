//! Discovery emits no value, whatever the traffic: hostile requests carry cards, SSNs, phone
//! numbers, e-mail addresses and names in every place discovery reports (path segments in every
//! encoding, query and JSON member names, SOAPAction, JSON-RPC methods, GraphQL operation names,
//! gRPC methods, host labels); the serialized batch (both encodings) holds none of them, and the
//! endpoints carry the data classes instead.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic fails the test"
)]

mod discovery_common;

use apiguard::discovery::DiscoveryWorker;
use discovery_common::{deliver_all, discovery, endpoints, source, Exchange};
use serde_json::json;

/// Texts that must not appear in any batch, in any spelling we can search for.
const SECRETS: &[&str] = &[
    "4111111111111111",
    "4111 1111",
    "4111%20",
    "536221234",
    "536%2022",
    "536-22-1234",
    "4155552671",
    "jane",
    "john",
    "smith",
    "１１１１",
];

/// (content type, body, extra request header).
type Body = (
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
);

fn digits_only(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

#[test]
fn hostile_requests_leave_no_value_in_the_batch() {
    for encoding in ["apiguard", "otlp"] {
        let uri = if encoding == "otlp" {
            "http://collector/v1/logs"
        } else {
            "http://collector/v1/apiguard"
        };
        let d = discovery(json!({
            "collector": {"cluster": "collector", "uri": uri, "encoding": encoding}
        }));
        let mut w = DiscoveryWorker::new(&d, source(), 1_000);
        let paths = [
            "/cards/4111%201111%201111%201111",
            "/cards/4111111111111111",
            "/cards/4111-1111-1111-1111/charge",
            "/cards/%34%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31",
            "/cards/%EF%BC%94%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91",
            "/cards/x4111111111111111",
            "/ssn/536%2022%201234",
            "/ssn/536-22-1234",
            "/users/+14155552671/sms",
            "/users/%2B1%20415%20555%202671/sms",
            "/people/john%20smith/profile",
            "/people/john+smith/profile",
            "/mail/jane%40example.com",
            "/search?4111111111111111=1&jane%40example.com=x&john+smith=y&%2B14155552671=z",
        ];
        let mut n = 0;
        for p in paths {
            w.record(&d, Exchange::get(p).observe(&d), 1_000 + n);
            n += 1;
        }
        let bodies: [Body; 6] = [
            (
                "application/json",
                r#"{"4111111111111111":1,"+14155552671":{"jane@example.com":true},"john smith":2}"#,
                None,
            ),
            (
                "application/json",
                r#"{"jsonrpc":"2.0","method":"charge_4111111111111111_jane@example.com","id":1}"#,
                None,
            ),
            (
                "application/json",
                r#"[{"jsonrpc":"2.0","method":"notify 4155552671","id":1},{"jsonrpc":"2.0","method":"pay.4111-1111-1111-1111","id":2}]"#,
                None,
            ),
            (
                "application/json",
                r#"{"query":"query Card4111111111111111 { me { id } }","operationName":"Card4111111111111111"}"#,
                None,
            ),
            (
                "text/xml",
                r#"<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><m:x/></soap:Body></soap:Envelope>"#,
                Some((
                    "soapaction",
                    "\"urn:pay/4111111111111111/jane@example.com\"",
                )),
            ),
            ("application/grpc", "", None),
        ];
        for (ct, body, header) in bodies {
            let mut ex = Exchange::get("/rpc").method("POST").body(ct, body);
            if let Some((k, v)) = header {
                ex = ex.header(k, v);
            }
            if ct == "application/grpc" {
                ex = Exchange::get("/pay.v1.Cards4111111111111111/Charge_jane@example.com")
                    .method("POST")
                    .body(ct, body);
            }
            w.record(&d, ex.observe(&d), 1_000 + n);
            n += 1;
        }
        let host = Exchange::get("/x").header(":authority", "4111111111111111.evil.example");
        w.record(&d, host.observe(&d), 1_000 + n);
        assert!(w.flush(&d, 2_000) >= 1);
        let batches = deliver_all(&mut w, &d, 2_000);
        let text = serde_json::to_string(&batches).unwrap();
        for s in SECRETS {
            assert!(!text.contains(s), "{encoding}: {s:?} leaked: {text}");
        }
        // No card number in any spelling: no run of 13 or more digits survives.
        for word in text.split(|c: char| !c.is_ascii_digit() && c != ' ' && c != '-') {
            assert!(
                digits_only(word).len() < 13,
                "{encoding}: digits leaked: {word}"
            );
        }
        if encoding == "apiguard" {
            let eps = endpoints(&batches);
            let templates: Vec<&str> = eps
                .iter()
                .map(|e| e["path_template"].as_str().unwrap())
                .collect();
            assert!(templates.contains(&"/cards/{card}"), "{templates:?}");
            assert!(templates.contains(&"/users/{phone}/sms"), "{templates:?}");
            assert!(
                templates.contains(&"/people/{value}/profile"),
                "{templates:?}"
            );
            let card = eps
                .iter()
                .find(|e| e["path_template"] == "/cards/{card}")
                .unwrap();
            assert!(
                card["data_classes"]["request"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("card")),
                "{card}"
            );
        }
    }
}
