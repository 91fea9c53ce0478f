//! The OpenAPI documents in `../shared/conformance/openapi/` (Swagger Petstore v3 and the OAI
//! 3.0 examples), read in place: each JSON document loads through the `schemas` configuration
//! section, and valid and invalid requests for its operations (path, query, header, body) get
//! the right outcome. YAML documents are listed as skipped: apiguard reads JSON only.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

use apiguard::reader::Node;
use apiguard::schema::{
    compile_section, HeadOutcome, Rejection, RequestHead, SchemaPolicy, SchemaSet,
};
use serde_json::{json, Value};
use std::fs;
use std::path::Path;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/conformance/openapi");

struct Req {
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
}

impl RequestHead for Req {
    fn method(&self) -> &str {
        self.method
    }
    fn path(&self) -> &str {
        self.path
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

fn load(file: &str, undeclared: &str) -> SchemaSet {
    let doc: Value = serde_json::from_slice(&fs::read(Path::new(DIR).join(file)).unwrap()).unwrap();
    let config = json!({"api": {"openapi": doc, "undeclared": undeclared, "max_body_bytes": 4096}});
    compile_section(&Node::root(&config)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The status the request gets (200 for "goes upstream"), running the body check when needed.
fn status(
    p: &SchemaPolicy,
    method: &'static str,
    path: &'static str,
    headers: &[(&'static str, &'static str)],
    body: Option<&str>,
) -> u16 {
    let req = Req {
        method,
        path,
        headers: headers.to_vec(),
    };
    match p.check_head(&req, body.is_some()) {
        HeadOutcome::Pass | HeadOutcome::Undeclared(_) => 200,
        HeadOutcome::Reject(r) => r.status(),
        HeadOutcome::NeedBody(check) => match p.check_body(check, body.unwrap_or("").as_bytes()) {
            Ok(()) => 200,
            Err(r) => r.status(),
        },
    }
}

const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

#[test]
fn every_json_document_loads_and_yaml_is_listed_as_skipped() {
    let mut loaded = 0;
    for entry in fs::read_dir(DIR).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            let set = load(&name, "405");
            let Some(apiguard::schema::PolicyKind::OpenApi(api)) =
                set.policies.first().map(|p| &p.kind)
            else {
                panic!("{name}: not an OpenAPI policy");
            };
            let ops = api.operations().count();
            println!(
                "loaded {name}: {ops} operations, base path {:?}",
                api.base_path
            );
            assert!(ops > 0);
            loaded += 1;
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            println!("skipped {name}: YAML is not read (convert to JSON)");
        }
    }
    assert_eq!(loaded, 5);
}

#[test]
fn oai_petstore_requests() {
    let set = load("oai-examples-v3.0-petstore.json", "405");
    let p = &set.policies[0];
    assert_eq!(status(p, "GET", "/v1/pets", &[], None), 200);
    assert_eq!(status(p, "GET", "/v1/pets?limit=100", &[], None), 200);
    assert_eq!(status(p, "GET", "/v1/pets?limit=101", &[], None), 400);
    assert_eq!(status(p, "GET", "/v1/pets?limit=ten", &[], None), 400);
    assert_eq!(status(p, "GET", "/v1/pets/anything", &[], None), 200);
    assert_eq!(
        status(
            p,
            "POST",
            "/v1/pets",
            JSON,
            Some(r#"{"id": 1, "name": "rex", "tag": "dog"}"#)
        ),
        200
    );
    assert_eq!(
        status(p, "POST", "/v1/pets", JSON, Some(r#"{"id": 1}"#)),
        400
    );
    assert_eq!(
        status(
            p,
            "POST",
            "/v1/pets",
            JSON,
            Some(r#"{"id": "1", "name": "rex"}"#)
        ),
        400
    );
    assert_eq!(
        status(
            p,
            "POST",
            "/v1/pets",
            JSON,
            Some(r#"{"id": 1, "name": "rex""#)
        ),
        400
    );
    assert_eq!(
        status(
            p,
            "POST",
            "/v1/pets",
            &[("content-type", "text/plain")],
            Some("rex")
        ),
        415
    );
    assert_eq!(status(p, "POST", "/v1/pets", &[], Some("{}")), 415);
    assert_eq!(status(p, "POST", "/v1/pets", JSON, None), 400);
    let big = format!(r#"{{"id": 1, "name": "{}"}}"#, "x".repeat(5000));
    let big: &'static str = Box::leak(big.into_boxed_str());
    assert_eq!(status(p, "POST", "/v1/pets", JSON, Some(big)), 413);
    assert_eq!(status(p, "DELETE", "/v1/pets", &[], None), 405);
    assert_eq!(status(p, "GET", "/v1/cats", &[], None), 404);
    assert_eq!(status(p, "GET", "/pets", &[], None), 404);

    // The 405 names the declared methods; the 400 lists pointers and keywords.
    let req = Req {
        method: "PUT",
        path: "/v1/pets",
        headers: vec![],
    };
    let HeadOutcome::Reject(r) = p.check_head(&req, false) else {
        panic!()
    };
    assert_eq!(
        r,
        Rejection::MethodNotAllowed {
            allow: vec!["GET".into(), "POST".into()]
        }
    );
    let req = Req {
        method: "POST",
        path: "/v1/pets",
        headers: JSON.to_vec(),
    };
    let HeadOutcome::NeedBody(check) = p.check_head(&req, true) else {
        panic!()
    };
    let r = p.check_body(check, br#"{"id": "secret-id"}"#).unwrap_err();
    let problem = r.problem();
    assert_eq!(
        problem["errors"],
        json!([{"pointer": "/name", "keyword": "required"}, {"pointer": "/id", "keyword": "type"}])
    );
    assert!(!r.problem_body().contains("secret-id"));
}

#[test]
fn oai_petstore_expanded_requests() {
    let set = load("oai-examples-v3.0-petstore-expanded.json", "404");
    let p = &set.policies[0];
    assert_eq!(
        status(p, "GET", "/v2/pets?tags=a&tags=b&limit=5", &[], None),
        200
    );
    assert_eq!(
        status(p, "GET", "/v2/pets?limit=2147483648", &[], None),
        400
    ); // int32
    assert_eq!(status(p, "GET", "/v2/pets/12", &[], None), 200);
    assert_eq!(status(p, "GET", "/v2/pets/twelve", &[], None), 400);
    assert_eq!(status(p, "DELETE", "/v2/pets/12", &[], None), 200);
    assert_eq!(
        status(p, "POST", "/v2/pets", JSON, Some(r#"{"name": "rex"}"#)),
        200
    );
    assert_eq!(
        status(p, "POST", "/v2/pets", JSON, Some(r#"{"tag": "dog"}"#)),
        400
    );
    assert_eq!(status(p, "PUT", "/v2/pets/12", &[], None), 404); // "undeclared": "404"
}

#[test]
fn swagger_petstore_v3_requests() {
    let set = load("swagger-petstore-v3.openapi.json", "405");
    let p = &set.policies[0];
    let pet = r#"{"id": 10, "name": "doggie", "category": {"id": 1, "name": "Dogs"}, "photoUrls": ["u"], "tags": [{"id": 1, "name": "t"}], "status": "available"}"#;
    assert_eq!(status(p, "POST", "/api/v3/pet", JSON, Some(pet)), 200);
    assert_eq!(status(p, "PUT", "/api/v3/pet", JSON, Some(pet)), 200);
    assert_eq!(
        status(
            p,
            "POST",
            "/api/v3/pet",
            JSON,
            Some(r#"{"name": "doggie"}"#)
        ),
        400
    );
    assert_eq!(
        status(
            p,
            "POST",
            "/api/v3/pet",
            JSON,
            Some(r#"{"name": "d", "photoUrls": [], "status": "lost"}"#)
        ),
        400
    );
    assert_eq!(
        status(
            p,
            "POST",
            "/api/v3/pet",
            JSON,
            Some(r#"{"name": "d", "photoUrls": [], "tags": [{"id": "x"}]}"#)
        ),
        400
    );
    // Declared non-JSON media types are content-type checked only.
    assert_eq!(
        status(
            p,
            "POST",
            "/api/v3/pet",
            &[("content-type", "application/xml")],
            Some("<pet/>")
        ),
        200
    );
    assert_eq!(
        status(
            p,
            "POST",
            "/api/v3/pet",
            &[("content-type", "text/csv")],
            Some("a,b")
        ),
        415
    );
    assert_eq!(
        status(
            p,
            "POST",
            "/api/v3/pet/1/uploadImage",
            &[("content-type", "application/octet-stream")],
            Some("\u{1}")
        ),
        200
    );
    assert_eq!(
        status(p, "GET", "/api/v3/pet/findByStatus?status=sold", &[], None),
        200
    );
    assert_eq!(
        status(p, "GET", "/api/v3/pet/findByStatus?status=lost", &[], None),
        400
    );
    assert_eq!(
        status(p, "GET", "/api/v3/pet/findByTags?tags=a&tags=b", &[], None),
        200
    );
    assert_eq!(status(p, "GET", "/api/v3/pet/10", &[], None), 200);
    assert_eq!(status(p, "GET", "/api/v3/pet/ten", &[], None), 400);
    assert_eq!(
        status(p, "DELETE", "/api/v3/pet/10", &[("api_key", "k")], None),
        200
    );
    assert_eq!(
        status(
            p,
            "GET",
            "/api/v3/user/login?username=a&password=b",
            &[],
            None
        ),
        200
    );
    assert_eq!(status(p, "GET", "/api/v3/user/bob", &[], None), 200);
    assert_eq!(
        status(
            p,
            "POST",
            "/api/v3/user/createWithList",
            JSON,
            Some(r#"[{"username": "a", "id": 1}]"#)
        ),
        200
    );
    assert_eq!(
        status(
            p,
            "POST",
            "/api/v3/user/createWithList",
            JSON,
            Some(r#"[{"id": "x"}]"#)
        ),
        400
    );
    assert_eq!(
        status(
            p,
            "POST",
            "/api/v3/store/order",
            JSON,
            Some(
                r#"{"id": 1, "petId": 2, "quantity": 3, "shipDate": "2024-01-01T00:00:00Z", "status": "placed", "complete": false}"#
            )
        ),
        200
    );
    assert_eq!(
        status(
            p,
            "POST",
            "/api/v3/store/order",
            JSON,
            Some(r#"{"shipDate": "yesterday"}"#)
        ),
        400
    );
    assert_eq!(status(p, "PATCH", "/api/v3/pet", &[], None), 405);
}

#[test]
fn uspto_and_api_with_examples_requests() {
    let set = load("oai-examples-v3.0-uspto.json", "405");
    let p = &set.policies[0];
    assert_eq!(status(p, "GET", "/ds-api/", &[], None), 200);
    assert_eq!(
        status(p, "GET", "/ds-api/oa_citations/v1/fields", &[], None),
        200
    );
    assert_eq!(
        status(
            p,
            "POST",
            "/ds-api/oa_citations/v1/records",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some("criteria=*:*")
        ),
        200
    );
    assert_eq!(
        status(
            p,
            "POST",
            "/ds-api/oa_citations/v1/records",
            JSON,
            Some("{}")
        ),
        415
    );
    assert_eq!(
        status(p, "GET", "/ds-api/oa_citations/v1/records", &[], None),
        405
    );

    let set = load("oai-examples-v3.0-api-with-examples.json", "report");
    let p = &set.policies[0];
    assert_eq!(status(p, "GET", "/", &[], None), 200);
    assert_eq!(status(p, "GET", "/v2", &[], None), 200);
    let req = Req {
        method: "POST",
        path: "/v2",
        headers: vec![],
    };
    assert!(matches!(
        p.check_head(&req, false),
        HeadOutcome::Undeclared(Rejection::MethodNotAllowed { .. })
    ));
}
