//! Request samples written from each protocol's specification, with hard negatives.

use super::*;

fn head<'a>(method: &'a str, path: &'a str, ct: Option<&'a str>) -> RequestHead<'a> {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    RequestHead {
        method,
        path,
        query,
        content_type: ct,
        soap_action: None,
        upgrade: None,
        protocol: None,
        websocket_protocol: None,
    }
}

fn with_body(method: &str, path: &str, ct: Option<&str>, body: &str) -> Classification {
    let mut c = from_head(&head(method, path, ct));
    refine_with_body(&mut c, ct, body.as_bytes(), true);
    c
}

fn op(c: &Classification) -> (Option<&'static str>, Option<&str>, Option<&str>) {
    let o = c.operation.as_ref().expect("an operation");
    (o.kind, o.service.as_deref(), o.name.as_deref())
}

// GraphQL over HTTP: POST application/json {"query", "operationName", "variables"}.
#[test]
fn graphql_post_with_named_operation_and_variables() {
    let body = r#"{"query":"query GetUser($id: ID!) { user(id: $id) { name } }","operationName":"GetUser","variables":{"id":"1"}}"#;
    let c = with_body("POST", "/graphql", Some("application/json"), body);
    assert_eq!(c.api_type, ApiType::GraphQl);
    assert_eq!(op(&c), (Some("query"), None, Some("GetUser")));
}

#[test]
fn graphql_selects_the_operation_named_by_operation_name() {
    let body = r#"{"query":"query A { a } mutation B($x: Int = 1) @live { b(x: $x, s: \"}{\") { c } } fragment F on T { f }","operationName":"B"}"#;
    let c = with_body(
        "POST",
        "/graphql",
        Some("application/json; charset=utf-8"),
        body,
    );
    assert_eq!(op(&c), (Some("mutation"), None, Some("B")));
}

#[test]
fn graphql_shorthand_and_anonymous_operations_are_queries() {
    let c = with_body(
        "POST",
        "/gql",
        Some("application/json"),
        r#"{"query":"{ me { id } }"}"#,
    );
    assert_eq!(op(&c), (Some("query"), None, None));
    let c = with_body(
        "POST",
        "/gql",
        Some("application/json"),
        r##"{"query":"# comment\nsubscription { ticks }"}"##,
    );
    assert_eq!(op(&c), (Some("subscription"), None, None));
}

#[test]
fn graphql_over_get_reads_the_query_parameter() {
    let c = from_head(&head(
        "GET",
        "/graphql?query=query%20Hero%7Bhero%7Bname%7D%7D&operationName=Hero",
        None,
    ));
    assert_eq!(c.api_type, ApiType::GraphQl);
    assert_eq!(op(&c), (Some("query"), None, Some("Hero")));
    let c = from_head(&head("GET", "/graphql?query=%7Bhero%7Bname%7D%7D", None));
    assert_eq!(op(&c), (Some("query"), None, None));
}

#[test]
fn graphql_legacy_media_type_and_persisted_queries() {
    let c = with_body(
        "POST",
        "/graphql",
        Some("application/graphql"),
        "mutation Like { like }",
    );
    assert_eq!(c.api_type, ApiType::GraphQl);
    assert_eq!(op(&c), (Some("mutation"), None, Some("Like")));
    let body = r#"{"operationName":"Feed","extensions":{"persistedQuery":{"version":1,"sha256Hash":"ecf4edb46db40b5132295c0291d62fb65d6759a9eedfa4d5d612dd5ec54a6b38"}}}"#;
    let c = with_body("POST", "/graphql", Some("application/json"), body);
    assert_eq!(c.api_type, ApiType::GraphQl);
    assert_eq!(op(&c), (None, None, Some("Feed")));
}

// Hard negatives: a `query` member or parameter that is not a GraphQL document.
#[test]
fn a_search_query_is_not_graphql() {
    for body in [
        r#"{"query":"red shoes"}"#,
        r#"{"query":{"match":{"title":"shoes"}}}"#,
        r#"{"query":"SELECT * FROM t"}"#,
        r#"{"query":"query"}"#,
        r#"{"query":"{ unbalanced"}"#,
        r#"{"query":"type Query { a: Int }"}"#,
    ] {
        let c = with_body("POST", "/search", Some("application/json"), body);
        assert_eq!(c.api_type, ApiType::Rest, "{body}");
    }
    let c = from_head(&head("GET", "/search?query=red+shoes", None));
    assert_eq!(c.api_type, ApiType::Rest);
}

// JSON-RPC 2.0 §4, §6 examples.
#[test]
fn json_rpc_calls_notifications_and_batches() {
    let c = with_body(
        "POST",
        "/rpc",
        Some("application/json"),
        r#"{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}"#,
    );
    assert_eq!(c.api_type, ApiType::JsonRpc);
    assert_eq!(op(&c), (Some("call"), None, Some("subtract")));
    let c = with_body(
        "POST",
        "/rpc",
        None,
        r#"{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}"#,
    );
    assert_eq!(op(&c), (Some("notification"), None, Some("update")));
    let batch = r#"[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"},
        {"jsonrpc": "2.0", "method": "sum", "params": [1], "id": "10"}
    ]"#;
    let c = with_body("POST", "/rpc", Some("application/json"), batch);
    assert_eq!(c.api_type, ApiType::JsonRpc);
    assert_eq!(
        op(&c),
        (
            Some("batch"),
            None,
            Some("get_data,notify_hello,subtract,sum")
        )
    );
}

// Hard negatives: `method` and `id` without `"jsonrpc": "2.0"`, an empty batch.
#[test]
fn method_and_id_without_jsonrpc_are_rest() {
    for body in [
        r#"{"method": "subtract", "params": [42, 23], "id": 1}"#,
        r#"{"jsonrpc": "1.0", "method": "subtract", "id": 1}"#,
        r#"{"jsonrpc": 2.0, "method": "subtract", "id": 1}"#,
        r#"[]"#,
        r#"[{"method": "a", "id": 1}, {"method": "b"}, 1]"#,
    ] {
        let c = with_body("POST", "/api", Some("application/json"), body);
        assert_eq!(c.api_type, ApiType::Rest, "{body}");
    }
}

#[test]
fn incomplete_json_bodies_are_not_guessed_at() {
    let mut c = from_head(&head("POST", "/rpc", Some("application/json")));
    refine_with_body(
        &mut c,
        Some("application/json"),
        br#"{"jsonrpc": "2.0", "method": "subtract""#,
        false,
    );
    assert_eq!(c.api_type, ApiType::Rest);
}

// SOAP 1.1 (W3C note, example 1): text/xml and SOAPAction.
const SOAP11_BODY: &str = r#"<?xml version="1.0"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
  SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">
  <!-- a comment <Body> -->
  <SOAP-ENV:Body>
    <m:GetLastTradePrice xmlns:m="Some-URI"><symbol>DIS</symbol></m:GetLastTradePrice>
  </SOAP-ENV:Body>
</SOAP-ENV:Envelope>"#;

#[test]
fn soap_11_from_the_soapaction_header() {
    let mut h = head("POST", "/StockQuote", Some("text/xml; charset=\"utf-8\""));
    h.soap_action = Some("\"Some-URI#GetLastTradePrice\"");
    let c = from_head(&h);
    assert_eq!(c.api_type, ApiType::Soap11);
    assert_eq!(op(&c), (None, None, Some("Some-URI#GetLastTradePrice")));
    // An empty SOAPAction still says SOAP; the operation comes from the body.
    h.soap_action = Some("\"\"");
    let mut c = from_head(&h);
    refine_with_body(&mut c, h.content_type, SOAP11_BODY.as_bytes(), false);
    assert_eq!(c.api_type, ApiType::Soap11);
    assert_eq!(op(&c), (None, None, Some("GetLastTradePrice")));
}

// SOAP 1.2 Part 0 example: application/soap+xml with an action parameter.
#[test]
fn soap_12_from_the_media_type_and_its_action_parameter() {
    let ct = "application/soap+xml; charset=utf-8; action=\"http://travelcompany.example.org/Reservations/Cancel\"";
    let c = from_head(&head("POST", "/Reservations", Some(ct)));
    assert_eq!(c.api_type, ApiType::Soap12);
    assert_eq!(
        op(&c),
        (
            None,
            None,
            Some("http://travelcompany.example.org/Reservations/Cancel")
        )
    );
    let body = r#"<?xml version='1.0' ?>
<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope">
 <env:Header><t:transaction xmlns:t="http://x">5</t:transaction></env:Header>
 <env:Body><m:chargeReservation xmlns:m="http://travelcompany.example.org/"/></env:Body>
</env:Envelope>"#;
    let mut c = from_head(&head("POST", "/Reservations", Some("application/soap+xml")));
    refine_with_body(&mut c, Some("application/soap+xml"), body.as_bytes(), true);
    assert_eq!(op(&c), (None, None, Some("chargeReservation")));
}

#[test]
fn a_soap_envelope_without_soapaction_is_told_from_its_namespace() {
    let c = with_body("POST", "/ws", Some("text/xml"), SOAP11_BODY);
    assert_eq!(c.api_type, ApiType::Soap11);
    assert_eq!(op(&c), (None, None, Some("GetLastTradePrice")));
}

// XML-RPC specification example.
#[test]
fn xml_rpc_method_call() {
    let body = r#"<?xml version="1.0"?>
<methodCall>
   <methodName>examples.getStateName</methodName>
   <params><param><value><i4>41</i4></value></param></params>
</methodCall>"#;
    let c = with_body("POST", "/RPC2", Some("text/xml"), body);
    assert_eq!(c.api_type, ApiType::XmlRpc);
    assert_eq!(op(&c), (None, None, Some("examples.getStateName")));
}

#[test]
fn plain_xml_is_rest() {
    for body in [
        "<note><to>Tove</to></note>",
        "<Envelope><Body><x/></Body></Envelope>",
        "not xml at all",
        "<methodCallX/>",
    ] {
        let c = with_body("POST", "/notes", Some("application/xml"), body);
        assert_eq!(c.api_type, ApiType::Rest, "{body}");
    }
}

// gRPC over HTTP/2 (PROTOCOL-HTTP2.md) and gRPC-Web (PROTOCOL-WEB.md).
#[test]
fn grpc_and_grpc_web_service_and_method_from_the_path() {
    for (ct, t) in [
        ("application/grpc", ApiType::Grpc),
        ("application/grpc+proto", ApiType::Grpc),
        ("application/grpc+json", ApiType::Grpc),
        ("application/grpc-web", ApiType::GrpcWeb),
        ("application/grpc-web+proto", ApiType::GrpcWeb),
        ("application/grpc-web-text", ApiType::GrpcWeb),
    ] {
        let c = from_head(&head("POST", "/helloworld.Greeter/SayHello", Some(ct)));
        assert_eq!(c.api_type, t, "{ct}");
        assert_eq!(op(&c), (None, Some("helloworld.Greeter"), Some("SayHello")));
    }
    assert_eq!(
        from_head(&head("POST", "/x", Some("application/grpcish"))).api_type,
        ApiType::Rest
    );
    let c = from_head(&head("POST", "/a/b/c", Some("application/grpc")));
    assert_eq!(c.api_type, ApiType::Grpc);
    assert!(c.operation.is_none());
}

#[test]
fn websocket_upgrades_over_http1_and_http2() {
    let mut h = head("GET", "/chat", None);
    h.upgrade = Some("WebSocket");
    assert_eq!(from_head(&h).api_type, ApiType::WebSocket);
    let mut h = head("CONNECT", "/chat", None);
    h.protocol = Some("websocket");
    assert_eq!(from_head(&h).api_type, ApiType::WebSocket);
    let mut h = head("GET", "/chat", None);
    h.upgrade = Some("h2c");
    assert_eq!(from_head(&h).api_type, ApiType::Rest);
}

#[test]
fn event_stream_responses_are_sse() {
    let mut c = from_head(&head("GET", "/events", None));
    refine_with_response(&mut c, Some("text/event-stream; charset=utf-8"));
    assert_eq!(c.api_type, ApiType::Sse);
    let mut c = from_head(&head("GET", "/data", None));
    refine_with_response(&mut c, Some("application/json"));
    assert_eq!(c.api_type, ApiType::Rest);
}

#[test]
fn unprintable_or_overlong_operation_names_are_dropped() {
    let long = "m".repeat(MAX_NAME_BYTES + 1);
    let body = format!(r#"{{"jsonrpc":"2.0","method":"{long}","id":1}}"#);
    let c = with_body("POST", "/rpc", None, &body);
    assert_eq!(c.api_type, ApiType::JsonRpc);
    assert_eq!(op(&c), (Some("call"), None, None));
    let c = with_body(
        "POST",
        "/rpc",
        None,
        r#"{"jsonrpc":"2.0","method":"a\u0000b","id":1}"#,
    );
    assert_eq!(op(&c), (Some("call"), None, None));
}

// JSON-RPC 2.0 §6: a batch answers each member; invalid members get errors, the batch is still JSON-RPC.
#[test]
fn a_jsonrpc_batch_mixing_valid_and_invalid_members_is_jsonrpc_and_counts_the_invalid() {
    let batch = r#"[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"foo": "boo"},
        1,
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
    ]"#;
    let c = with_body("POST", "/rpc", Some("application/json"), batch);
    assert_eq!(c.api_type, ApiType::JsonRpc);
    assert_eq!(op(&c), (Some("batch"), None, Some("get_data,sum")));
    assert_eq!(c.invalid_batch_members, 2);
    let mut parsed = from_head(&head("POST", "/rpc", Some("application/json")));
    refine_with_json(&mut parsed, &serde_json::from_str(batch).unwrap());
    assert_eq!(parsed, c);
    let valid = with_body(
        "POST",
        "/rpc",
        Some("application/json"),
        r#"[{"jsonrpc": "2.0", "method": "a", "id": 1}]"#,
    );
    assert_eq!(valid.invalid_batch_members, 0);
}

// Apollo automatic persisted queries over GET: the hash in `extensions`, no `query`.
#[test]
fn graphql_persisted_queries_sent_as_get_are_graphql() {
    let q = "operationName=Feed&variables=%7B%7D&extensions=%7B%22persistedQuery%22%3A%7B%22version%22%3A1%2C%22sha256Hash%22%3A%22ecf4edb46db40b5132295c0291d62fb65d6759a9eedfa4d5d612dd5ec54a6b38%22%7D%7D";
    let path = format!("/graphql?{q}");
    let c = from_head(&head("GET", &path, None));
    assert_eq!(c.api_type, ApiType::GraphQl);
    assert_eq!(op(&c), (None, None, Some("Feed")));
    // Without a name, still GraphQL.
    let c = from_head(&head(
        "GET",
        "/graphql?extensions=%7B%22persistedQuery%22%3A%7B%22sha256Hash%22%3A%22abc%22%7D%7D",
        None,
    ));
    assert_eq!(c.api_type, ApiType::GraphQl);
    assert_eq!(c.operation, None);
    // Hard negatives: an `extensions` parameter that is not a persisted query, or not JSON.
    for path in [
        "/search?operationName=x&extensions=%7B%22tracing%22%3Atrue%7D",
        "/search?extensions=persistedQuery",
    ] {
        assert_eq!(
            from_head(&head("GET", path, None)).api_type,
            ApiType::Rest,
            "{path}"
        );
    }
}

// GraphQL over WebSocket: `Sec-WebSocket-Protocol: graphql-transport-ws` (graphql-ws library) or
// `graphql-ws` (legacy subscriptions-transport-ws).
#[test]
fn graphql_over_websocket_subprotocols_are_websocket_carrying_graphql() {
    for offered in [
        "graphql-transport-ws",
        "graphql-ws",
        "chat, graphql-ws",
        "GraphQL-Transport-WS",
    ] {
        let mut h = head("GET", "/subscriptions", None);
        h.upgrade = Some("websocket");
        h.websocket_protocol = Some(offered);
        let c = from_head(&h);
        assert_eq!(c.api_type, ApiType::WebSocket, "{offered}");
        assert_eq!(c.carried, Some(ApiType::GraphQl), "{offered}");
    }
    let mut h = head("CONNECT", "/subscriptions", None);
    h.protocol = Some("websocket");
    h.websocket_protocol = Some("graphql-transport-ws");
    assert_eq!(from_head(&h).carried, Some(ApiType::GraphQl));
    // Other subprotocols, or the header without an upgrade, carry nothing.
    let mut h = head("GET", "/ws", None);
    h.upgrade = Some("websocket");
    h.websocket_protocol = Some("mqtt, graphql-wsx");
    assert_eq!(from_head(&h).carried, None);
    let mut h = head("GET", "/ws", None);
    h.websocket_protocol = Some("graphql-ws");
    let c = from_head(&h);
    assert_eq!((c.api_type, c.carried), (ApiType::Rest, None));
}
