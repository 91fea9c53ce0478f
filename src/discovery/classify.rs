//! The API type of a request, told from the wire: first from the request headers (content type,
//! `SOAPAction`, `Upgrade`, the gRPC path), then, when a small body is at hand, from the body
//! (GraphQL document, JSON-RPC envelope, SOAP envelope, XML-RPC `methodCall`), then from the
//! response content type (server-sent events).
//!
//! Sources: GraphQL over HTTP (GraphQL Foundation draft: `query`, `operationName` in a JSON body or
//! the query string; `application/graphql` documents); SOAP 1.1 (W3C note, §6.1: `text/xml` and a
//! `SOAPAction` header); SOAP 1.2 (Part 2 §7: `application/soap+xml` with an `action` parameter);
//! XML-RPC (`<methodCall><methodName>`); JSON-RPC 2.0 (`"jsonrpc": "2.0"`, `method`, batches as
//! arrays); gRPC over HTTP/2 and gRPC-Web (`application/grpc*`, path `/{service}/{method}`);
//! WebSocket (RFC 6455 `Upgrade: websocket`, RFC 8441 extended CONNECT); SSE (`text/event-stream`).
//!
//! Operation names are structure, not data, but clients choose them: they are kept only when they
//! are printable ASCII, at most [`MAX_NAME_BYTES`] long.

use crate::media;
use serde_json::Value;

/// Longest operation, service or action name kept; longer or unprintable names are dropped.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest GraphQL document read from a query string.
const MAX_QUERY_DOCUMENT_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApiType {
    Rest,
    GraphQl,
    Soap11,
    Soap12,
    XmlRpc,
    JsonRpc,
    Grpc,
    GrpcWeb,
    WebSocket,
    Sse,
}

impl ApiType {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiType::Rest => "rest",
            ApiType::GraphQl => "graphql",
            ApiType::Soap11 => "soap11",
            ApiType::Soap12 => "soap12",
            ApiType::XmlRpc => "xmlrpc",
            ApiType::JsonRpc => "jsonrpc",
            ApiType::Grpc => "grpc",
            ApiType::GrpcWeb => "grpc-web",
            ApiType::WebSocket => "websocket",
            ApiType::Sse => "sse",
        }
    }
}

/// What was called, as far as the wire says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Operation {
    /// GraphQL `query` / `mutation` / `subscription`; JSON-RPC `call` / `notification` / `batch`.
    pub kind: Option<&'static str>,
    /// gRPC service (`package.Service`).
    pub service: Option<String>,
    /// GraphQL operation name, JSON-RPC method(s), SOAP action or body element, XML-RPC
    /// `methodName`, gRPC method.
    pub name: Option<String>,
}

impl Operation {
    fn is_empty(&self) -> bool {
        self.kind.is_none() && self.service.is_none() && self.name.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub api_type: ApiType,
    pub operation: Option<Operation>,
    /// A second API type carried inside the first: GraphQL inside a WebSocket whose
    /// `Sec-WebSocket-Protocol` offers `graphql-ws` or `graphql-transport-ws`.
    pub carried: Option<ApiType>,
    /// JSON-RPC batch members that are not JSON-RPC 2.0 requests (a batch with at least one valid
    /// member is still JSON-RPC).
    pub invalid_batch_members: u32,
}

impl Classification {
    fn of(api_type: ApiType, operation: Option<Operation>) -> Classification {
        Classification {
            api_type,
            operation,
            carried: None,
            invalid_batch_members: 0,
        }
    }
}

/// The request facts classification reads. Header names are lower-case.
pub struct RequestHead<'a> {
    pub method: &'a str,
    /// The path part of `:path` (no query).
    pub path: &'a str,
    pub query: &'a str,
    pub content_type: Option<&'a str>,
    pub soap_action: Option<&'a str>,
    pub upgrade: Option<&'a str>,
    /// HTTP/2 extended CONNECT `:protocol`.
    pub protocol: Option<&'a str>,
    /// `Sec-WebSocket-Protocol`: the subprotocols a WebSocket client offers.
    pub websocket_protocol: Option<&'a str>,
}

/// WebSocket subprotocols that carry GraphQL (`graphql-ws`: the legacy Apollo
/// `subscriptions-transport-ws` protocol; `graphql-transport-ws`: the `graphql-ws` library's).
const GRAPHQL_WS_PROTOCOLS: [&str; 2] = ["graphql-ws", "graphql-transport-ws"];

fn clean_name(name: &str) -> Option<String> {
    let name = name.trim();
    (!name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
    .then(|| name.to_string())
}

fn named(
    kind: Option<&'static str>,
    service: Option<String>,
    name: Option<String>,
) -> Option<Operation> {
    let op = Operation {
        kind,
        service,
        name,
    };
    (!op.is_empty()).then_some(op)
}

/// Classification from the request headers alone. Body-borne types (GraphQL over POST, JSON-RPC,
/// XML-RPC, SOAP without headers) are `Rest` until [`refine_with_body`] says otherwise.
pub fn from_head(head: &RequestHead<'_>) -> Classification {
    let rest = Classification::of(ApiType::Rest, None);
    let is_websocket = head.upgrade.is_some_and(|u| {
        u.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
    }) || (head.method.eq_ignore_ascii_case("CONNECT")
        && head
            .protocol
            .is_some_and(|p| p.eq_ignore_ascii_case("websocket")));
    if is_websocket {
        let mut ws = Classification::of(ApiType::WebSocket, None);
        if head.websocket_protocol.is_some_and(|offered| {
            offered.split(',').any(|p| {
                GRAPHQL_WS_PROTOCOLS
                    .iter()
                    .any(|g| p.trim().eq_ignore_ascii_case(g))
            })
        }) {
            ws.carried = Some(ApiType::GraphQl);
        }
        return ws;
    }
    let Some(ct) = head.content_type else {
        return graphql_from_query(head.query).unwrap_or(rest);
    };
    let media = media::essence(ct);
    if let Some(grpc) = media.strip_prefix("application/grpc") {
        let api_type = if grpc.starts_with("-web") {
            ApiType::GrpcWeb
        } else if grpc.is_empty() || grpc.starts_with('+') {
            ApiType::Grpc
        } else {
            return rest;
        };
        return Classification::of(api_type, grpc_operation(head.path));
    }
    if media == "application/soap+xml" {
        return Classification::of(
            ApiType::Soap12,
            named(None, None, media::param(ct, "action").and_then(clean_name)),
        );
    }
    if media == "text/xml" {
        if let Some(action) = head.soap_action {
            return Classification::of(
                ApiType::Soap11,
                named(None, None, clean_name(action.trim().trim_matches('"'))),
            );
        }
    }
    if media == "application/graphql" {
        // The legacy GraphQL media type: the body is the document itself.
        return Classification::of(ApiType::GraphQl, None);
    }
    graphql_from_query(head.query).unwrap_or(rest)
}

/// `/package.Service/Method` → service and method.
fn grpc_operation(path: &str) -> Option<Operation> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    named(None, clean_name(service), clean_name(method))
}

/// GraphQL over GET: a `query` parameter holding an executable document, or an automatic persisted
/// query (`extensions={"persistedQuery":{"sha256Hash":...}}`, usually with `operationName`).
fn graphql_from_query(query: &str) -> Option<Classification> {
    let mut document = None;
    let mut operation_name = None;
    let mut extensions = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "query" => {
                document = Some(super::template::decode_component(
                    v,
                    MAX_QUERY_DOCUMENT_BYTES,
                ))
            }
            "operationName" => {
                operation_name = Some(super::template::decode_component(v, MAX_NAME_BYTES * 3))
            }
            "extensions" => {
                extensions = Some(super::template::decode_component(
                    v,
                    MAX_QUERY_DOCUMENT_BYTES,
                ))
            }
            _ => {}
        }
    }
    if let Some(document) = document {
        let (kind, name) = graphql_operation(&document, operation_name.as_deref())?;
        return Some(Classification::of(
            ApiType::GraphQl,
            named(Some(kind), None, name),
        ));
    }
    let extensions: Value = serde_json::from_str(&extensions?).ok()?;
    persisted_query_hash(&extensions)?;
    Some(Classification::of(
        ApiType::GraphQl,
        named(None, None, operation_name.as_deref().and_then(clean_name)),
    ))
}

/// The `sha256Hash` of an automatic persisted query's `extensions` object.
fn persisted_query_hash(extensions: &Value) -> Option<&str> {
    extensions
        .get("persistedQuery")?
        .get("sha256Hash")?
        .as_str()
}

/// Refines a header-based classification with the request body (or its first bytes:
/// `complete` says whether `body` is all of it). JSON needs the complete body; XML types are told
/// from the first bytes.
pub fn refine_with_body(
    current: &mut Classification,
    content_type: Option<&str>,
    body: &[u8],
    complete: bool,
) {
    let media = content_type.map(media::essence).unwrap_or_default();
    match current.api_type {
        ApiType::Rest => {}
        ApiType::GraphQl if current.operation.is_none() && media == "application/graphql" => {
            if let Some((kind, name)) = std::str::from_utf8(body)
                .ok()
                .filter(|_| complete)
                .and_then(|doc| graphql_operation(doc, None))
            {
                current.operation = named(Some(kind), None, name);
            }
            return;
        }
        ApiType::Soap11 | ApiType::Soap12 if current.operation.is_none() => {
            if let Some(XmlKind::Soap { operation, .. }) = sniff_xml(body) {
                current.operation = named(None, None, operation);
            }
            return;
        }
        _ => return,
    }
    if media.contains("xml") {
        match sniff_xml(body) {
            Some(XmlKind::Soap {
                version12,
                operation,
            }) => {
                current.api_type = if version12 {
                    ApiType::Soap12
                } else {
                    ApiType::Soap11
                };
                current.operation = named(None, None, operation);
            }
            Some(XmlKind::XmlRpc { method }) => {
                current.api_type = ApiType::XmlRpc;
                current.operation = named(None, None, method);
            }
            None => {}
        }
        return;
    }
    if !complete || !(media.is_empty() || media::is_json_like(&media)) {
        return;
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    if let Some((op, invalid)) = json_rpc(&value) {
        current.api_type = ApiType::JsonRpc;
        current.operation = Some(op);
        current.invalid_batch_members = invalid;
    } else if let Some(op) = graphql_json(&value) {
        current.api_type = ApiType::GraphQl;
        current.operation = Some(op);
    }
}

/// A parsed JSON body, when the caller already has one (saves a second parse).
pub fn refine_with_json(current: &mut Classification, value: &Value) {
    if current.api_type != ApiType::Rest {
        return;
    }
    if let Some((op, invalid)) = json_rpc(value) {
        current.api_type = ApiType::JsonRpc;
        current.operation = Some(op);
        current.invalid_batch_members = invalid;
    } else if let Some(op) = graphql_json(value) {
        current.api_type = ApiType::GraphQl;
        current.operation = Some(op);
    }
}

/// Server-sent events: a plain HTTP endpoint that answers `text/event-stream`.
pub fn refine_with_response(current: &mut Classification, response_content_type: Option<&str>) {
    if current.api_type == ApiType::Rest
        && response_content_type.is_some_and(|ct| media::essence(ct) == "text/event-stream")
    {
        current.api_type = ApiType::Sse;
    }
}

/// At most this many distinct JSON-RPC methods name a batch (then `,...`).
const MAX_BATCH_NAMES: usize = 4;

/// The JSON-RPC operation of a body, and how many members of a batch are not JSON-RPC 2.0 requests.
/// A batch is JSON-RPC when at least one member is.
fn json_rpc(value: &Value) -> Option<(Operation, u32)> {
    fn call(v: &Value) -> Option<(&str, bool)> {
        let obj = v.as_object()?;
        if obj.get("jsonrpc")?.as_str()? != "2.0" {
            return None;
        }
        Some((obj.get("method")?.as_str()?, obj.contains_key("id")))
    }
    match value {
        Value::Object(_) => {
            let (method, has_id) = call(value)?;
            let op = named(
                Some(if has_id { "call" } else { "notification" }),
                None,
                clean_name(method),
            )?;
            Some((op, 0))
        }
        Value::Array(items) if !items.is_empty() => {
            let mut methods: Vec<&str> = Vec::new();
            let mut invalid: u32 = 0;
            for item in items {
                match call(item) {
                    Some((method, _)) => methods.push(method),
                    None => invalid = invalid.saturating_add(1),
                }
            }
            if methods.is_empty() {
                return None;
            }
            // A batch body only (rare): the shared index sort rather than a copy of the standard one.
            crate::sorting::stable_sort_by(&mut methods, |a, b| a.cmp(b));
            methods.dedup();
            let mut name = methods
                .iter()
                .take(MAX_BATCH_NAMES)
                .copied()
                .collect::<Vec<_>>()
                .join(",");
            if methods.len() > MAX_BATCH_NAMES {
                name.push_str(",...");
            }
            let op = Operation {
                kind: Some("batch"),
                service: None,
                name: clean_name(&name),
            };
            Some((op, invalid))
        }
        _ => None,
    }
}

fn graphql_json(value: &Value) -> Option<Operation> {
    let obj = match value {
        Value::Object(obj) => obj,
        // Batched GraphQL (Apollo): classified by its first request.
        Value::Array(items) => items.first()?.as_object()?,
        _ => return None,
    };
    let operation_name = obj.get("operationName").and_then(Value::as_str);
    match obj.get("query") {
        Some(Value::String(document)) => {
            let (kind, name) = graphql_operation(document, operation_name)?;
            named(Some(kind), None, name)
        }
        // Automatic persisted queries: a hash instead of the document.
        None | Some(Value::Null) => {
            persisted_query_hash(obj.get("extensions")?)?;
            Some(Operation {
                kind: None,
                service: None,
                name: operation_name.and_then(clean_name),
            })
        }
        Some(_) => None,
    }
}

/// Reads an executable GraphQL document just far enough to list its operations; `None` when the
/// text is not one (a search phrase, SDL, unbalanced braces). Returns the selected operation's type
/// and name: the one named `operation_name`, else the first.
pub fn graphql_operation(
    document: &str,
    operation_name: Option<&str>,
) -> Option<(&'static str, Option<String>)> {
    let mut lexer = Lexer {
        bytes: document.as_bytes(),
        at: 0,
    };
    let mut operations: Vec<(&'static str, Option<&str>)> = Vec::new();
    loop {
        match lexer.next()? {
            Token::End => break,
            Token::Punct(b'{') => {
                lexer.skip_block()?;
                operations.push(("query", None));
            }
            Token::Name(word) => {
                let kind = match word {
                    "query" => "query",
                    "mutation" => "mutation",
                    "subscription" => "subscription",
                    "fragment" => {
                        lexer.skip_to_block()?;
                        continue;
                    }
                    _ => return None,
                };
                let mut name = None;
                let mut token = lexer.next()?;
                if let Token::Name(n) = token {
                    name = Some(n);
                    token = lexer.next()?;
                }
                // Variable definitions and directives come before the selection set.
                loop {
                    match token {
                        Token::Punct(b'{') => break,
                        Token::Punct(b'(') => lexer.skip_until(b')')?,
                        Token::Punct(b'@') | Token::Name(_) | Token::Punct(_) => {}
                        Token::Value => {}
                        Token::End => return None,
                    }
                    token = lexer.next()?;
                }
                lexer.skip_block()?;
                operations.push((kind, name));
            }
            _ => return None,
        }
        if operations.len() > 64 {
            break;
        }
    }
    let selected = match operation_name {
        Some(wanted) => operations
            .iter()
            .find(|(_, n)| *n == Some(wanted))
            .or_else(|| operations.first())?,
        None => operations.first()?,
    };
    let name = operation_name
        .filter(|w| selected.1 == Some(*w))
        .or(selected.1);
    Some((selected.0, name.and_then(clean_name)))
}

enum Token<'a> {
    Punct(u8),
    Name(&'a str),
    /// A string, number or other literal.
    Value,
    End,
}

struct Lexer<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// The next token; `None` for text that is not GraphQL (an unterminated string, a stray byte).
    fn next(&mut self) -> Option<Token<'a>> {
        // Ignored tokens: whitespace, commas, comments, the byte-order mark.
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n' | b'\r' | b',') => self.at += 1,
                Some(b'#') => {
                    while !matches!(self.peek(), None | Some(b'\n' | b'\r')) {
                        self.at += 1;
                    }
                }
                Some(0xEF) if self.bytes.get(self.at..self.at + 3) == Some(&[0xEF, 0xBB, 0xBF]) => {
                    self.at += 3
                }
                _ => break,
            }
        }
        let Some(b) = self.peek() else {
            return Some(Token::End);
        };
        match b {
            b'{' | b'}' | b'(' | b')' | b'[' | b']' | b':' | b'=' | b'@' | b'$' | b'!' | b'|'
            | b'&' => {
                self.at += 1;
                Some(Token::Punct(b))
            }
            b'.' => {
                if self.bytes.get(self.at..self.at + 3) == Some(b"...") {
                    self.at += 3;
                    Some(Token::Punct(b'.'))
                } else {
                    None
                }
            }
            b'"' => {
                self.skip_string()?;
                Some(Token::Value)
            }
            b'-' | b'0'..=b'9' => {
                self.at += 1;
                while matches!(
                    self.peek(),
                    Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                ) {
                    self.at += 1;
                }
                Some(Token::Value)
            }
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                let start = self.at;
                while matches!(
                    self.peek(),
                    Some(b'_' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9')
                ) {
                    self.at += 1;
                }
                let text = std::str::from_utf8(self.bytes.get(start..self.at)?).ok()?;
                Some(Token::Name(text))
            }
            _ => None,
        }
    }

    fn skip_string(&mut self) -> Option<()> {
        if self.bytes.get(self.at..self.at + 3) == Some(b"\"\"\"") {
            self.at += 3;
            loop {
                match self.peek()? {
                    b'\\' if self.bytes.get(self.at..self.at + 4) == Some(b"\\\"\"\"") => {
                        self.at += 4
                    }
                    b'"' if self.bytes.get(self.at..self.at + 3) == Some(b"\"\"\"") => {
                        self.at += 3;
                        return Some(());
                    }
                    _ => self.at += 1,
                }
            }
        }
        self.at += 1;
        loop {
            match self.peek()? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                b'\n' | b'\r' => return None,
                _ => self.at += 1,
            }
        }
    }

    /// Skips a selection set whose `{` was just read.
    fn skip_block(&mut self) -> Option<()> {
        let mut depth = 1usize;
        while depth > 0 {
            match self.next()? {
                Token::Punct(b'{') => depth += 1,
                Token::Punct(b'}') => depth -= 1,
                Token::End => return None,
                _ => {}
            }
        }
        Some(())
    }

    fn skip_to_block(&mut self) -> Option<()> {
        loop {
            match self.next()? {
                Token::Punct(b'{') => return self.skip_block(),
                Token::End => return None,
                _ => {}
            }
        }
    }

    fn skip_until(&mut self, close: u8) -> Option<()> {
        loop {
            match self.next()? {
                Token::Punct(b) if b == close => return Some(()),
                Token::End => return None,
                _ => {}
            }
        }
    }
}

enum XmlKind {
    Soap {
        version12: bool,
        operation: Option<String>,
    },
    XmlRpc {
        method: Option<String>,
    },
}

const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";

/// Looks at the root element of an XML body prefix: a SOAP `Envelope` (version from its namespace,
/// operation from the first element inside `Body`) or an XML-RPC `methodCall`.
fn sniff_xml(body: &[u8]) -> Option<XmlKind> {
    let text = String::from_utf8_lossy(body);
    let mut tags = XmlTags { text: &text, at: 0 };
    let root = tags.next_start()?;
    match local_name(root.name) {
        "Envelope" => {
            let version12 = if root.raw.contains(SOAP12_NS) || text.contains(SOAP12_NS) {
                true
            } else if root.raw.contains(SOAP11_NS) || text.contains(SOAP11_NS) {
                false
            } else {
                return None;
            };
            let mut operation = None;
            while let Some(tag) = tags.next_start() {
                if local_name(tag.name) == "Body" {
                    operation = tags
                        .next_start()
                        .and_then(|t| clean_name(local_name(t.name)));
                    break;
                }
            }
            Some(XmlKind::Soap {
                version12,
                operation,
            })
        }
        "methodCall" => {
            let method = tags.next_start().and_then(|t| {
                if t.name != "methodName" {
                    return None;
                }
                let rest = text.get(tags.at..)?;
                let end = rest.find('<')?;
                clean_name(rest.get(..end)?)
            });
            Some(XmlKind::XmlRpc { method })
        }
        _ => None,
    }
}

fn local_name(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

struct StartTag<'a> {
    name: &'a str,
    raw: &'a str,
}

struct XmlTags<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> XmlTags<'a> {
    /// The next start tag, skipping the XML declaration, processing instructions, comments,
    /// DOCTYPE and end tags.
    fn next_start(&mut self) -> Option<StartTag<'a>> {
        loop {
            let rest = self.text.get(self.at..)?;
            let open = rest.find('<')?;
            let tag_start = self.at + open;
            let after = self.text.get(tag_start + 1..)?;
            if let Some(comment) = after.strip_prefix("!--") {
                let end = comment.find("-->")?;
                self.at = tag_start + 4 + end + 3;
                continue;
            }
            let close = after.find('>')?;
            self.at = tag_start + 1 + close + 1;
            if after.starts_with(['?', '!', '/']) {
                continue;
            }
            let raw = after.get(..close)?;
            let name_end = raw
                .find(|c: char| c.is_whitespace() || c == '/')
                .unwrap_or(raw.len());
            return Some(StartTag {
                name: raw.get(..name_end)?,
                raw,
            });
        }
    }
}

#[cfg(test)]
mod tests;
