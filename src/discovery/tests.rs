use super::*;
use serde_json::{json, Value};

fn config(extra: Value) -> Value {
    let mut base =
        json!({"collector": {"cluster": "collector", "uri": "http://collector:4318/v1/apiguard"}});
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

fn compiled(extra: Value) -> Discovery {
    let doc = config(extra);
    compile(&Node::root(&doc)).unwrap()
}

fn error_path(doc: Value) -> String {
    let wrapped = json!({ "discovery": doc });
    let root = Node::root(&wrapped);
    let obj = root.object(&["discovery"]).unwrap();
    compile(&obj.require("discovery").unwrap())
        .unwrap_err()
        .path
}

#[test]
fn defaults_fill_an_almost_empty_section() {
    let d = compiled(json!({}));
    assert_eq!(d.collector.cluster, "collector");
    assert_eq!(d.collector.authority, "collector:4318");
    assert_eq!(d.collector.path, "/v1/apiguard");
    assert_eq!(d.collector.timeout, Duration::from_secs(2));
    assert_eq!(d.collector.encoding, Encoding::Apiguard);
    assert_eq!(d.flush_interval, DEFAULT_FLUSH_INTERVAL);
    assert_eq!(d.max_endpoints, DEFAULT_MAX_ENDPOINTS);
    assert_eq!(d.sample_ppm, 1_000_000);
    assert!(d.declared.is_none());
}

#[test]
fn a_full_section_compiles() {
    let d = compiled(json!({
        "collector": {"cluster": "otel", "uri": "https://otel/v1/logs", "timeout": "500ms",
                      "encoding": "otlp", "retry": {"base_interval": "200ms", "max_interval": "10s", "max_attempts": 3}},
        "flush_interval": "1s", "max_endpoints": 10, "max_queue_bytes": 65536, "max_batch_bytes": 8192,
        "sample_rate": 0.25, "max_body_bytes": 1024, "max_shape_depth": 2, "max_shape_members": 8,
        "declared_openapi": {"openapi": "3.0.0", "paths": {"/a": {"get": {}}}},
        "declared_base_paths": ["/api"],
        "retired_prefixes": ["/v1/"], "api_key_names": ["X-Tenant-Key"], "session_cookie_names": ["my_sid"]
    }));
    assert_eq!(d.collector.encoding, Encoding::Otlp);
    assert_eq!(d.collector.retry.max_attempts, 3);
    assert_eq!(d.sample_ppm, 250_000);
    assert_eq!(d.shape.max_members, 8);
    assert!(d
        .auth_names
        .api_key_headers
        .contains(&"x-tenant-key".to_string()));
    assert_eq!(d.declared.as_ref().unwrap().operation_count(), 1);
}

#[test]
fn a_declared_document_may_be_given_as_json_text() {
    let d = compiled(
        json!({"declared_openapi": "{\"openapi\":\"3.0.0\",\"paths\":{\"/a\":{\"get\":{}}}}"}),
    );
    assert!(d.declared.is_some());
}

#[test]
fn bad_sections_name_the_offending_path() {
    let c = || json!({"cluster": "c", "uri": "http://c/x"});
    for (doc, path) in [
        (json!({"colector": {}}), "discovery.colector"),
        (json!({}), "discovery.collector"),
        (
            json!({"collector": {"uri": "http://c/"}}),
            "discovery.collector.cluster",
        ),
        (
            json!({"collector": {"cluster": "c", "uri": "ftp://c/"}}),
            "discovery.collector.uri",
        ),
        (
            json!({"collector": {"cluster": "c", "uri": "http:///x"}}),
            "discovery.collector.uri",
        ),
        (
            json!({"collector": {"cluster": "c", "uri": "http://c/", "encoding": "xml"}}),
            "discovery.collector.encoding",
        ),
        (
            json!({"collector": {"cluster": "c", "uri": "http://c/", "retry": {"base_interval": "10s", "max_interval": "1s"}}}),
            "discovery.collector.retry",
        ),
        (
            json!({"collector": {"cluster": "c", "uri": "http://c/", "timeout": "5m"}}),
            "discovery.collector.timeout",
        ),
        (
            json!({"collector": {"cluster": "c", "uri": "http://c/", "token": "two words"}}),
            "discovery.collector.token",
        ),
        (
            json!({"collector": {"cluster": "c", "uri": "http://c/", "token": ""}}),
            "discovery.collector.token",
        ),
        (
            json!({"collector": c(), "flush_interval": "5"}),
            "discovery.flush_interval",
        ),
        (
            json!({"collector": c(), "max_endpoints": 0}),
            "discovery.max_endpoints",
        ),
        (
            json!({"collector": c(), "max_batch_bytes": 1048576, "max_queue_bytes": 65536}),
            "discovery.max_batch_bytes",
        ),
        (
            json!({"collector": c(), "sample_rate": 1.5}),
            "discovery.sample_rate",
        ),
        (
            json!({"collector": c(), "sample_rate": "all"}),
            "discovery.sample_rate",
        ),
        (
            json!({"collector": c(), "declared_openapi": {"openapi": "3.0.0", "paths": {"/a/{b": {}}}}),
            "discovery.declared_openapi.paths./a/{b",
        ),
        (
            json!({"collector": c(), "declared_openapi": "{not json"}),
            "discovery.declared_openapi",
        ),
        (
            json!({"collector": c(), "declared_base_paths": ["/x"]}),
            "discovery",
        ),
        (
            json!({"collector": c(), "retired_prefixes": ["v1/"]}),
            "discovery.retired_prefixes[0]",
        ),
        (
            json!({"collector": c(), "api_key_names": ["bad name"]}),
            "discovery.api_key_names[0]",
        ),
        (
            json!({"collector": c(), "max_shape_depth": 0}),
            "discovery.max_shape_depth",
        ),
    ] {
        assert_eq!(error_path(doc.clone()), path, "{doc}");
    }
}

#[test]
fn sampling_draws_from_the_workers_own_generator_near_the_rate() {
    let d = compiled(json!({"sample_rate": 0.1}));
    let src = Source {
        plugin: "apiguard".into(),
        worker: "w".into(),
        node: None,
    };
    let mut a = DiscoveryWorker::new(&d, src.clone(), 0).with_sampling_seed(7);
    let mut b = DiscoveryWorker::new(&d, src.clone(), 0).with_sampling_seed(7);
    let kept = (0..10_000)
        .filter(|_| {
            let x = a.sample(&d);
            assert_eq!(x, b.sample(&d), "the same seed draws the same");
            x
        })
        .count();
    assert!((800..1200).contains(&kept), "{kept}");
    // Two workers seeded from the host's randomness do not draw in lock-step.
    let mut c = DiscoveryWorker::new(&d, src.clone(), 0);
    let mut e = DiscoveryWorker::new(&d, src, 0);
    let differ = (0..1000).filter(|_| c.sample(&d) != e.sample(&d)).count();
    assert!(differ > 50, "{differ}");
    let none = compiled(json!({"sample_rate": 0}));
    let mut w = DiscoveryWorker::new(
        &none,
        Source {
            plugin: "p".into(),
            worker: "w".into(),
            node: None,
        },
        0,
    );
    assert!(!w.sample(&none));
    let all = compiled(json!({"sample_rate": 1.0}));
    assert!(w.sample(&all));
}

#[test]
fn the_collector_token_travels_as_a_bearer_authorization() {
    let src = || Source {
        plugin: "p".into(),
        worker: "w".into(),
        node: None,
    };
    let d = compiled(
        json!({"collector": {"cluster": "c", "uri": "http://c:4318/v1/apiguard", "token": "s3cr3t-T0ken"}}),
    );
    let mut w = DiscoveryWorker::new(&d, src(), 0);
    w.outbox.push(event::EncodedBatch {
        body: b"{}".to_vec(),
        endpoints: 0,
    });
    let id = w.next_call(0).unwrap();
    let call = w.callout(&d, id).unwrap();
    assert!(call
        .headers
        .contains(&("authorization", "Bearer s3cr3t-T0ken")));
    // Without a token no authorization header is sent.
    let plain = compiled(json!({}));
    let mut w = DiscoveryWorker::new(&plain, src(), 0);
    w.outbox.push(event::EncodedBatch {
        body: b"{}".to_vec(),
        endpoints: 0,
    });
    let id = w.next_call(0).unwrap();
    assert!(w
        .callout(&plain, id)
        .unwrap()
        .headers
        .iter()
        .all(|(k, _)| *k != "authorization"));
    // A 503 with Retry-After waits at least that long, whatever the jitter.
    w.finish_call_with(
        id,
        Outcome::Status(503),
        delivery::read_answer(Some(b"9"), b""),
        0,
    );
    assert_eq!(w.next_call(8_999), None);
    assert!(w.next_call(9_000).is_some());
}

#[test]
fn the_path_cache_gives_the_observation_an_uncached_request_gives() {
    use crate::request::Request;
    let d = compiled(json!({"retired_prefixes": ["/old"]}));
    let source = Source {
        plugin: "p".into(),
        worker: "w".into(),
        node: None,
    };
    let mut w = DiscoveryWorker::new(&d, source, 0);
    let long = format!("/files/{}", "a".repeat(300));
    let paths = [
        "/api/users/42?x=1",
        "/api/users/42",
        "/API/Users/42#frag",
        "/old/thing/7",
        "/a/..%2f/b;jsessionid=ABC",
        "/a//b/%2e%2e/c",
        "/x/550e8400-e29b-41d4-a716-446655440000",
        long.as_str(),
        "/",
    ];
    // Twice: the first pass fills the cache, the second reads it.
    for _ in 0..2 {
        for path in paths {
            for content_type in ["application/json", "application/grpc"] {
                let request = Request::of(&[
                    (":method", "POST"),
                    (":path", path),
                    (":authority", "api.example.com"),
                    ("content-type", content_type),
                ]);
                let cached = w.observe(&d, &request);
                let fresh = Observation::request(&d, &request);
                assert_eq!(format!("{cached:?}"), format!("{fresh:?}"), "{path}");
            }
        }
    }
}
