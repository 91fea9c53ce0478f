//! One request's observation, built as its parts go by: request headers (always), request body
//! (when a small one is at hand), response headers, response body (its first bytes), the data
//! classes another stage found. It holds names, types, sizes and flags, never values; it is
//! folded into the worker's [`Inventory`](super::inventory::Inventory) when the stream ends.

use super::auth::{self, AuthSeen};
use super::classify::{self, Classification, RequestHead};
use super::declared::{self, Declaration};
use super::findings::{self, Exchange, Finding, FindingSet, ResponseFacts};
use super::shape::Shape;
use super::template;
use super::{Discovery, HeaderView};
use crate::request::RequestView;
use serde_json::Value;

/// Query parameter names kept per request (and per endpoint).
pub const MAX_QUERY_PARAMS: usize = 16;
/// Longest query parameter name kept; longer or unusual names are `{other}`.
pub const MAX_PARAM_NAME_BYTES: usize = 64;
/// Longest host kept (as DNS allows).
pub const MAX_HOST_BYTES: usize = 255;
/// Longest media type kept; longer or unusual ones are `other`.
pub const MAX_MEDIA_TYPE_BYTES: usize = 64;
/// Data classes kept per direction, and the longest class name.
pub const MAX_DATA_CLASSES: usize = 16;
pub const MAX_CLASS_NAME_BYTES: usize = 32;
/// Bytes of an error body scanned for stack traces and SQL errors.
pub const ERROR_SCAN_BYTES: usize = 8 * 1024;

/// Where an endpoint's template came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TemplateSource {
    /// A path template of the declared OpenAPI document.
    Declared,
    /// Inferred from the path: value-like segments replaced by placeholders.
    Inferred,
    /// The normalised path as it is (gRPC: service and method names).
    Literal,
}

impl TemplateSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateSource::Declared => "declared",
            TemplateSource::Inferred => "inferred",
            TemplateSource::Literal => "literal",
        }
    }
}

/// Which side of the exchange a data class or a body belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

#[derive(Debug, Clone)]
pub struct Observation {
    pub method: String,
    pub host: String,
    pub https: bool,
    pub template: String,
    pub template_source: TemplateSource,
    pub declaration: Declaration,
    pub query_params: Vec<String>,
    pub request_content_type: Option<String>,
    pub response_content_type: Option<String>,
    pub classification: Classification,
    pub auth: AuthSeen,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub response: ResponseFacts,
    /// Findings from bodies (error patterns); header findings are added by [`Observation::findings`].
    pub body_findings: FindingSet,
    pub request_classes: Vec<String>,
    pub response_classes: Vec<String>,
    pub request_shape: Option<Shape>,
    pub response_shape: Option<Shape>,
    session_in_path: bool,
    /// The path was ambiguous or carried matrix parameters.
    path_confusion: bool,
    /// The request `Origin`, kept only to judge CORS reflection; never reported.
    origin: Option<String>,
    authority: String,
}

fn content_length(v: Option<&str>) -> u64 {
    v.and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

fn clean_media(ct: &str) -> String {
    let m = crate::media::essence(ct);
    if m.is_empty()
        || m.len() > MAX_MEDIA_TYPE_BYTES
        || !m
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/.+-_".contains(&b))
    {
        "other".into()
    } else {
        m
    }
}

fn is_json_media(media: Option<&str>) -> bool {
    media.is_none_or(crate::media::is_json_like)
}

/// Lower-case host, default port removed, at most [`MAX_HOST_BYTES`].
fn clean_host(authority: &str, https: bool) -> String {
    let lower = authority.trim().to_ascii_lowercase();
    let default_port = if https { ":443" } else { ":80" };
    let host = lower.strip_suffix(default_port).unwrap_or(&lower);
    let host = host.trim_end_matches('.');
    if host.is_empty() {
        return "{none}".into();
    }
    if host.len() > MAX_HOST_BYTES
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
    {
        return "{invalid}".into();
    }
    host.to_string()
}

fn clean_method(method: &str) -> String {
    if method.is_empty()
        || method.len() > 16
        || !method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-')
    {
        return "OTHER".into();
    }
    method.to_ascii_uppercase()
}

fn param_names(query: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for pair in query.split('&') {
        let raw = pair.split('=').next().unwrap_or(pair);
        if raw.is_empty() {
            continue;
        }
        let decoded = template::decode_component(raw, MAX_PARAM_NAME_BYTES + 1);
        // A name that is itself a value gets its typed placeholder first (`{card}`, not `{id}`).
        let scrubbed = super::scrub::check(&decoded)
            .filter(|s| s.class.is_some())
            .map(|s| s.placeholder);
        let name = if let Some(placeholder) = scrubbed {
            placeholder.to_string()
        } else if decoded.len() > MAX_PARAM_NAME_BYTES
            || !decoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-[]$:".contains(&b))
        {
            "{other}".to_string()
        } else if let Some(p) = template::placeholder(&decoded) {
            p.to_string()
        } else {
            decoded
        };
        if !names.contains(&name) {
            if names.len() >= MAX_QUERY_PARAMS {
                break;
            }
            names.push(name);
        }
    }
    // At most MAX_QUERY_PARAMS names.
    crate::sorting::small_sort_strings(&mut names);
    names
}

/// What the path alone decides when no API document is declared (the template is inferred):
/// remembered per raw path by each worker ([`PathCache`]), since normalising and inferring a path
/// are most of what observing a request costs.
#[derive(Debug, Clone)]
pub struct PathFacts {
    template: String,
    declaration: Declaration,
    session_in_path: bool,
    ambiguous: bool,
}

impl PathFacts {
    /// The facts of `raw_path`, and where its template comes from (a gRPC method's path is kept
    /// literally).
    fn of(d: &Discovery, raw_path: &str, method: &str, grpc: bool) -> (PathFacts, TemplateSource) {
        let path = template::normalise(raw_path);
        let found = d
            .declared
            .as_ref()
            .and_then(|api| api.lookup(method, &path));
        let declaration = declared::verdict(d.declared.as_ref(), &d.retired, &path, found.as_ref());
        let (template, source) = match (found, grpc) {
            (_, true) => (template::literal(&path), TemplateSource::Literal),
            (Some(m), _) => (m.template, TemplateSource::Declared),
            (None, _) => (template::infer(&path), TemplateSource::Inferred),
        };
        let facts = PathFacts {
            template,
            declaration,
            session_in_path: path.session_in_path,
            ambiguous: path.ambiguous,
        };
        (facts, source)
    }
}

/// Recent raw paths (up to [`MAX_CACHED_PATH`] bytes, query left out) and their [`PathFacts`], one
/// per slot, the slot picked by a hash of the path (a client sending many paths only makes it miss):
/// at most [`PATH_CACHE_SLOTS`] of each, about 64 KiB of paths and 64 KiB of templates per worker.
#[derive(Debug, Default)]
pub struct PathCache {
    slots: Vec<Option<(Box<str>, PathFacts)>>,
}

pub const PATH_CACHE_SLOTS: usize = 256;
pub const MAX_CACHED_PATH: usize = 256;

impl PathCache {
    fn get_or(&mut self, path: &str, facts: impl FnOnce() -> PathFacts) -> PathFacts {
        if path.len() > MAX_CACHED_PATH {
            return facts();
        }
        if self.slots.is_empty() {
            self.slots.resize_with(PATH_CACHE_SLOTS, || None);
        }
        let hash = super::scrub::fnv1a(path);
        let Some(slot) = self
            .slots
            .get_mut(usize::try_from(hash % PATH_CACHE_SLOTS as u64).unwrap_or(0))
        else {
            return facts();
        };
        match slot {
            Some((known, value)) if **known == *path => value.clone(),
            _ => {
                let value = facts();
                *slot = Some((path.into(), value.clone()));
                value
            }
        }
    }
}

impl Observation {
    /// Observes the request headers: path template, declared verdict, query names, content type,
    /// credentials and the header-borne API type. Reads nothing of the body.
    pub fn request(d: &Discovery, request: &dyn RequestView) -> Observation {
        Observation::request_with(d, request, None)
    }

    /// [`Observation::request`], with the worker's [`PathCache`] for inferred templates.
    pub fn request_with(
        d: &Discovery,
        request: &dyn RequestView,
        paths: Option<&mut PathCache>,
    ) -> Observation {
        let raw_path = request.path();
        let method = clean_method(request.method());
        let https = request.scheme().eq_ignore_ascii_case("https");
        let content_type = request.header("content-type");
        let head = RequestHead {
            method: &method,
            path: template::path_part(raw_path),
            query: template::query_part(raw_path),
            content_type,
            soap_action: request.header("soapaction"),
            upgrade: request.header("upgrade"),
            protocol: request.header(":protocol"),
            websocket_protocol: request.header("sec-websocket-protocol"),
        };
        let classification = classify::from_head(&head);
        let grpc = matches!(
            classification.api_type,
            classify::ApiType::Grpc | classify::ApiType::GrpcWeb
        );
        let (facts, template_source) = match paths {
            // Without a document the inferred template depends on the path alone.
            Some(cache) if d.declared.is_none() && !grpc => (
                cache.get_or(head.path, || PathFacts::of(d, raw_path, &method, false).0),
                TemplateSource::Inferred,
            ),
            _ => PathFacts::of(d, raw_path, &method, grpc),
        };
        let mut auth = auth::detect(&d.auth_names, request);
        auth.credentials_in_query |= facts.session_in_path;
        let query_params = param_names(head.query);
        let request_classes = placeholder_classes(query_params.iter().map(String::as_str));
        Observation {
            host: clean_host(request.authority(), https),
            https,
            template: facts.template,
            template_source,
            declaration: facts.declaration,
            query_params,
            request_content_type: content_type.map(clean_media),
            response_content_type: None,
            classification,
            auth,
            request_bytes: content_length(request.header("content-length")),
            response_bytes: 0,
            response: ResponseFacts::default(),
            body_findings: FindingSet::default(),
            request_classes,
            response_classes: Vec::new(),
            request_shape: None,
            response_shape: None,
            session_in_path: facts.session_in_path,
            path_confusion: facts.ambiguous,
            origin: request.header("origin").map(str::to_string),
            authority: request.authority().to_string(),
            method,
        }
    }

    /// Observes a request body: all of it (`complete`), or its first bytes. Bodies longer than the
    /// configured `max_body_bytes` are read only up to it, and JSON is only parsed when complete.
    pub fn request_body(&mut self, d: &Discovery, body: &[u8], complete: bool) {
        self.request_bytes = self.request_bytes.max(body.len() as u64);
        let (body, complete) = bounded(body, complete, d.max_body_bytes);
        if is_json_media(self.request_content_type.as_deref()) {
            if let Some(value) = complete
                .then(|| serde_json::from_slice::<Value>(body).ok())
                .flatten()
            {
                classify::refine_with_json(&mut self.classification, &value);
                add_shape(&mut self.request_shape, &value, d);
                let classes = self.request_shape.as_ref().map(Shape::data_classes);
                self.add_data_classes(Side::Request, &classes.unwrap_or_default());
            }
        } else {
            classify::refine_with_body(
                &mut self.classification,
                self.request_content_type.as_deref(),
                body,
                complete,
            );
        }
    }

    /// Observes the response headers.
    pub fn response(&mut self, d: &Discovery, response: &dyn HeaderView) {
        let _ = d;
        let status = response
            .header(":status")
            .and_then(|s| s.trim().parse::<u16>().ok());
        let content_type = response.header("content-type");
        classify::refine_with_response(&mut self.classification, content_type);
        self.response_content_type = content_type.map(clean_media);
        self.response_bytes = self
            .response_bytes
            .max(content_length(response.header("content-length")));
        let banner = |name: &str| response.header(name).is_some_and(findings::names_a_version);
        self.response = ResponseFacts {
            status,
            hsts: response.header("strict-transport-security").is_some(),
            nosniff: response
                .header("x-content-type-options")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("nosniff")),
            no_store: response
                .header("cache-control")
                .is_some_and(|v| v.to_ascii_lowercase().contains("no-store")),
            version_banner: banner("server")
                || banner("x-powered-by")
                || response.header("x-aspnet-version").is_some()
                || response.header("x-aspnetmvc-version").is_some(),
            allow_origin: response
                .header("access-control-allow-origin")
                .map(|v| v.trim().to_string()),
            allow_credentials: response
                .header("access-control-allow-credentials")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
        };
    }

    /// Observes a response body (or its first bytes): error bodies are scanned for stack traces and
    /// SQL errors; complete small JSON bodies give the response shape.
    pub fn response_body(&mut self, d: &Discovery, body: &[u8], complete: bool) {
        self.response_bytes = self.response_bytes.max(body.len() as u64);
        if self.response.status.is_some_and(|s| s >= 400) {
            let head = body.get(..ERROR_SCAN_BYTES.min(body.len())).unwrap_or(body);
            d.errors
                .scan(&String::from_utf8_lossy(head), &mut self.body_findings);
        }
        let (body, complete) = bounded(body, complete, d.max_body_bytes);
        if complete && is_json_media(self.response_content_type.as_deref()) && !body.is_empty() {
            if let Ok(value) = serde_json::from_slice::<Value>(body) {
                add_shape(&mut self.response_shape, &value, d);
                let classes = self.response_shape.as_ref().map(Shape::data_classes);
                self.add_data_classes(Side::Response, &classes.unwrap_or_default());
            }
        }
    }

    /// Data classes (names such as `email`, `credit_card`) another stage found in this exchange.
    pub fn add_data_classes(&mut self, side: Side, classes: &[&str]) {
        let list = match side {
            Side::Request => &mut self.request_classes,
            Side::Response => &mut self.response_classes,
        };
        for class in classes {
            if class.is_empty()
                || class.len() > MAX_CLASS_NAME_BYTES
                || !class
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
                || list.iter().any(|c| c == class)
            {
                continue;
            }
            if list.len() >= MAX_DATA_CLASSES {
                break;
            }
            list.push((*class).to_string());
        }
        // At most MAX_DATA_CLASSES names.
        crate::sorting::small_sort_strings(list);
    }

    /// Exact sizes, when the host knows them (e.g. from `request.total_size` at the end of the stream).
    pub fn set_sizes(&mut self, request_bytes: Option<u64>, response_bytes: Option<u64>) {
        if let Some(n) = request_bytes {
            self.request_bytes = n;
        }
        if let Some(n) = response_bytes {
            self.response_bytes = n;
        }
    }

    /// Every finding of this exchange.
    pub fn findings(&self) -> FindingSet {
        let mut found = findings::assess(&Exchange {
            method: &self.method,
            https: self.https,
            authority: &self.authority,
            origin: self.origin.as_deref(),
            auth: self.auth.kinds,
            credentials_in_url: self.auth.credentials_in_query || self.session_in_path,
            path_confusion: self.path_confusion,
            response: &self.response,
            sensitive_response: !self.response_classes.is_empty(),
        });
        found.union(self.body_findings);
        if self.classification.invalid_batch_members > 0 {
            found.insert(Finding::JsonRpcInvalidBatchMember);
        }
        found
    }
}

fn bounded(body: &[u8], complete: bool, max: usize) -> (&[u8], bool) {
    if body.len() > max {
        (body.get(..max).unwrap_or(body), false)
    } else {
        (body, complete)
    }
}

/// The data classes of typed placeholders among emitted names (`{card}` → `card`).
fn placeholder_classes<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut classes: Vec<String> = Vec::new();
    for class in names.filter_map(super::scrub::class_of_placeholder) {
        if !classes.iter().any(|c| c == class) {
            classes.push(class.to_string());
        }
    }
    classes
}

fn add_shape(slot: &mut Option<Shape>, value: &Value, d: &Discovery) {
    match slot {
        Some(shape) => shape.add(value, d.shape),
        None => *slot = Some(Shape::of(value, d.shape)),
    }
}
