//! The plugin configuration: one JSON document, read once in `on_configure` into an immutable
//! [`Policy`]. Every field is documented in `docs/config.md`; every refusal names its JSON path.
//!
//! Later capabilities plug in as further named-policy sections (like `jwt_providers`) and further
//! members of a rule (like `jwt`).

use crate::apikey::{self, ApiKeys};
use crate::authz::{self, Authz};
use crate::discovery::{self, Discovery};
use crate::jwt::extract::TokenLocation;
use crate::jwt::jwks_state::JwksCoordinator;
pub use crate::jwt::jwks_state::RemoteJwks;
use crate::jwt::keys::KeySet;
use crate::jwt::requirement::Requirement;
use crate::jwt::verify::ClaimRules;
use crate::ratelimit::{self, RateLimits};
use crate::reader::{ConfigError, Node, Object, Result};
use crate::redact::{self, Redaction};
use crate::route::{compile_template, PathMatch, RouteMatch};
use crate::schema::{self, SchemaSet};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Longest accepted configuration document; larger ones are refused before parsing.
pub const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Refuse what the policy refuses.
    Enforce,
    /// Dry run: decide, count and log, but let every request through.
    Report,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoMatch {
    Allow,
    Deny,
}

/// What happens to a request whose path stays ambiguous after canonicalisation (an encoded `/`, an
/// encoded dot segment, ...), or that carries matrix parameters on a guarded rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmbiguousPaths {
    /// 400 (`ambiguous_path`, `matrix_parameters`).
    Reject,
    /// Counted, then routed by the canonical path.
    Report,
}

/// The compiled configuration, shared by every request of a worker.
#[derive(Debug)]
pub struct Policy {
    /// Prefix of metric names, shared-data keys and log lines (`apiguard` by default).
    pub name: String,
    pub mode: Mode,
    pub on_no_match: NoMatch,
    pub ambiguous_paths: AmbiguousPaths,
    pub strip_failure_response: bool,
    pub jwt_cache_max_entries: usize,
    pub providers: Vec<Provider>,
    pub api_keys: ApiKeys,
    pub rate_limits: RateLimits,
    pub schemas: SchemaSet,
    /// Envoy's Wasm filter has `allow_on_headers_stop_iteration: true`, so apiguard may hold headers
    /// while it reads a body (schema checks, blocking redaction) instead of letting them go ahead.
    pub allow_on_headers_stop_iteration: bool,
    /// API discovery, when configured.
    pub discovery: Option<Discovery>,
    pub rules: Vec<Rule>,
    /// Every header any provider writes into requests: always removed from incoming requests first,
    /// so that a client can never supply them itself.
    pub owned_headers: Vec<String>,
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub matcher: RouteMatch,
    /// Overrides the policy's mode for this rule.
    pub mode: Option<Mode>,
    pub jwt: Option<Requirement>,
    /// Index into the policy's API-key sets.
    pub api_key: Option<usize>,
    pub authz: Option<Authz>,
    /// Indexes into the policy's rate-limit policies.
    pub rate_limits: Vec<usize>,
    /// What the rate limiter's `path_template` key part uses: the template, or the rule's name.
    pub path_label: String,
    /// Index into the policy's schemas.
    pub schema: Option<usize>,
    pub redaction: Option<Arc<Redaction>>,
    /// `X-HTTP-Method-Override` and its kin are let through on this (guarded) rule.
    pub allow_method_override: bool,
}

impl Rule {
    pub fn mode(&self, policy: &Policy) -> Mode {
        self.mode.unwrap_or(policy.mode)
    }

    /// The rule protects something (authentication, authorization, limits, schema or redaction): a
    /// request that could reach another resource than the one judged must not pass it.
    pub fn guarded(&self) -> bool {
        self.jwt.is_some()
            || self.api_key.is_some()
            || self.authz.is_some()
            || !self.rate_limits.is_empty()
            || self.schema.is_some()
            || self.redaction.is_some()
    }
}

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub claims: ClaimRules,
    pub keys: KeySource,
    pub locations: Vec<TokenLocation>,
    pub forward: bool,
    pub forward_payload_header: Option<String>,
    pub claim_to_headers: Vec<ClaimToHeader>,
    pub max_token_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToHeader {
    pub header_name: String,
    /// `a.b.c` split at dots: nested claims, as Envoy's `claim_name`.
    pub claim_path: Vec<String>,
}

#[derive(Debug)]
pub enum KeySource {
    Local(Arc<KeySet>),
    Remote(RemoteJwks),
}

const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
const DEFAULT_MAX_JWKS_BYTES: usize = 64 * 1024;

impl Policy {
    /// What `on_configure` compiles: the plugin configuration as Envoy hands it over, where an
    /// empty configuration means `{}`. `apiguard check` calls this same function.
    pub fn from_plugin_configuration(bytes: &[u8]) -> Result<Policy> {
        if bytes.is_empty() {
            Policy::from_json(b"{}")
        } else {
            Policy::from_json(bytes)
        }
    }

    /// Parses and validates the plugin configuration.
    pub fn from_json(bytes: &[u8]) -> Result<Policy> {
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError {
                path: "$".into(),
                message: format!(
                    "configuration is {} bytes; the limit is {MAX_CONFIG_BYTES}",
                    bytes.len()
                ),
            });
        }
        let doc: Value = serde_json::from_slice(bytes).map_err(|e| ConfigError {
            path: "$".into(),
            message: format!("not valid JSON: {e}"),
        })?;
        Policy::from_value(&doc)
    }

    pub fn from_value(doc: &Value) -> Result<Policy> {
        let root = Node::root(doc);
        let obj = root.object(&[
            "name",
            "mode",
            "on_no_match",
            "ambiguous_paths",
            "strip_failure_response",
            "jwt_cache",
            "jwt_providers",
            "api_keys",
            "rate_limits",
            "schemas",
            "redaction",
            "allow_on_headers_stop_iteration",
            "discovery",
            "rules",
        ])?;
        // Fields are read in this order, so the first error reported stays the same.
        let name = read_name(&obj)?;
        let mode = obj
            .get("mode")
            .map(|n| parse_mode(&n))
            .transpose()?
            .unwrap_or(Mode::Enforce);
        let on_no_match = obj.one_of_or(
            "on_no_match",
            &[("allow", NoMatch::Allow), ("deny", NoMatch::Deny)],
            NoMatch::Allow,
        )?;
        let ambiguous_paths = obj.one_of_or(
            "ambiguous_paths",
            &[
                ("reject", AmbiguousPaths::Reject),
                ("report", AmbiguousPaths::Report),
            ],
            AmbiguousPaths::Reject,
        )?;
        let strip_failure_response = obj.bool_or("strip_failure_response", false)?;
        let jwt_cache_max_entries = read_jwt_cache(&obj)?;
        let (provider_index, providers) = read_providers(&obj)?;
        // Each feature compiles its own section; rules refer to them by name.
        let api_keys = section(&obj, "api_keys", apikey::compile)?.unwrap_or_default();
        let rate_limits =
            section(&obj, "rate_limits", |n| ratelimit::compile(n, &name))?.unwrap_or_default();
        let schemas = section(&obj, "schemas", schema::compile_section)?.unwrap_or_default();
        let redactions = section(&obj, "redaction", redact::compile_section)?.unwrap_or_default();
        let discovery = section(&obj, "discovery", discovery::compile)?;
        let allow_on_headers_stop_iteration =
            obj.bool_or("allow_on_headers_stop_iteration", false)?;
        let sections = Sections {
            providers: &provider_index,
            api_keys: &api_keys,
            rate_limits: &rate_limits,
            schemas: &schemas,
            redactions: &redactions,
        };
        let rules = read_rules(&obj, &sections)?;
        if allow_on_headers_stop_iteration {
            // With held headers Envoy delivers the body while a rate limit service call is in
            // flight, before the rule's body plan exists: the combination could let a body through
            // unjudged, so it is refused.
            let judged_body =
                |r: &Rule| r.schema.is_some() || r.redaction.as_ref().is_some_and(|x| x.request);
            let calls = |r: &Rule| {
                r.rate_limits.iter().any(|&i| {
                    rate_limits
                        .policies
                        .get(i)
                        .is_some_and(|p| p.service.is_some())
                })
            };
            if let Some(i) = rules.iter().position(|r| judged_body(r) && calls(r)) {
                return Err(obj.node().error(format!(
                    "rules[{i}]: a rule that checks or redacts request bodies cannot use a rate limit service while allow_on_headers_stop_iteration is true"
                )));
            }
        }
        let owned_headers = owned_headers(&providers);
        Ok(Policy {
            name,
            mode,
            on_no_match,
            ambiguous_paths,
            strip_failure_response,
            jwt_cache_max_entries,
            providers,
            api_keys,
            rate_limits,
            schemas,
            allow_on_headers_stop_iteration,
            discovery,
            rules,
            owned_headers,
        })
    }

    /// The first rule that matches, with its index. `path` is the canonical path
    /// ([`crate::canonical`]) without query string.
    pub fn route(&self, method: &str, path: &str, authority: &str) -> Option<(usize, &Rule)> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.matcher.matches(method, path, authority))
    }

    /// The remote JWKS sources, with the index of their provider.
    pub fn remote_jwks(&self) -> impl Iterator<Item = (usize, &RemoteJwks)> {
        self.providers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match &p.keys {
                KeySource::Remote(remote) => Some((i, remote)),
                KeySource::Local(_) => None,
            })
    }

    /// One worker's JWKS state for every provider with remote keys (`worker_id` identifies the VM).
    pub fn jwks_coordinator(&self, worker_id: u64) -> JwksCoordinator {
        let remotes: Vec<(usize, &str, &RemoteJwks)> = self
            .remote_jwks()
            .map(|(i, remote)| {
                let name = self.providers.get(i).map_or("", |p| p.name.as_str());
                (i, name, remote)
            })
            .collect();
        JwksCoordinator::new(&self.name, &remotes, worker_id)
    }
}

fn parse_mode(node: &Node<'_>) -> Result<Mode> {
    node.one_of(&[("enforce", Mode::Enforce), ("report", Mode::Report)])
}

fn parse_provider(name: &str, node: &Node<'_>) -> Result<Provider> {
    let obj = node.object(&[
        "issuer",
        "audiences",
        "require_expiration",
        "clock_skew",
        "max_lifetime",
        "local_jwks",
        "remote_jwks",
        "from_headers",
        "from_params",
        "from_cookies",
        "forward",
        "forward_payload_header",
        "claim_to_headers",
        "max_token_bytes",
    ])?;
    let defaults = ClaimRules::default();
    let claims = ClaimRules {
        issuer: obj
            .get("issuer")
            .map(|n| n.non_empty_str().map(str::to_string))
            .transpose()?,
        audiences: obj
            .get("audiences")
            .map(|n| n.string_list())
            .transpose()?
            .unwrap_or_default(),
        require_expiration: match obj.get("require_expiration") {
            Some(n) => n.bool()?,
            None => defaults.require_expiration,
        },
        clock_skew_secs: match obj.get("clock_skew") {
            Some(n) => n.duration()?.as_secs(),
            None => defaults.clock_skew_secs,
        },
        max_lifetime_secs: obj
            .get("max_lifetime")
            .map(|n| n.duration().map(|d| d.as_secs()))
            .transpose()?,
    };

    let local = obj.get("local_jwks");
    let remote = obj.get("remote_jwks");
    let keys = match (local, remote) {
        (Some(local), None) => KeySource::Local(Arc::new(parse_local_jwks(&local)?)),
        (None, Some(remote)) => KeySource::Remote(parse_remote_jwks(&remote)?),
        (Some(_), Some(_)) => {
            return Err(obj.node().error("set local_jwks or remote_jwks, not both"))
        }
        (None, None) => {
            return Err(obj
                .node()
                .error("a provider needs local_jwks or remote_jwks"))
        }
    };

    let mut locations = Vec::new();
    if let Some(n) = obj.get("from_headers") {
        for item in n.array()? {
            let h = item.object(&["name", "value_prefix"])?;
            let name = h.require("name")?.header_name()?;
            let value_prefix = h
                .get("value_prefix")
                .map(|p| p.str().map(str::to_string))
                .transpose()?
                .unwrap_or_default();
            locations.push(TokenLocation::Header { name, value_prefix });
        }
    }
    if let Some(n) = obj.get("from_params") {
        locations.extend(n.string_list()?.into_iter().map(TokenLocation::Param));
    }
    if let Some(n) = obj.get("from_cookies") {
        locations.extend(n.string_list()?.into_iter().map(TokenLocation::Cookie));
    }
    if locations.is_empty() {
        locations = TokenLocation::envoy_defaults();
    }

    let forward = obj.bool_or("forward", false)?;
    let forward_payload_header = obj
        .get("forward_payload_header")
        .map(|n| n.header_name())
        .transpose()?;
    let mut claim_to_headers = Vec::new();
    if let Some(n) = obj.get("claim_to_headers") {
        for item in n.array()? {
            let c = item.object(&["header_name", "claim_name"])?;
            let header_name = c.require("header_name")?.header_name()?;
            let claim_node = c.require("claim_name")?;
            let claim_name = claim_node.non_empty_str()?;
            let claim_path: Vec<String> = claim_name.split('.').map(str::to_string).collect();
            if claim_path.iter().any(String::is_empty) {
                return Err(claim_node
                    .error("claim names are dot-separated non-empty parts, e.g. \"realm.role\""));
            }
            claim_to_headers.push(ClaimToHeader {
                header_name,
                claim_path,
            });
        }
    }
    let max_token_bytes = obj
        .get("max_token_bytes")
        .map(|n| n.usize_in(16, 1024 * 1024))
        .transpose()?
        .unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
    Ok(Provider {
        name: name.to_string(),
        claims,
        keys,
        locations,
        forward,
        forward_payload_header,
        claim_to_headers,
        max_token_bytes,
    })
}

fn parse_local_jwks(node: &Node<'_>) -> Result<KeySet> {
    let obj = node.object(&["inline_string", "inline", "pem"])?;
    let inline_string = obj.get("inline_string");
    let inline = obj.get("inline");
    let pem = obj.get("pem");
    let keys = match (inline_string, inline, pem) {
        (Some(n), None, None) => {
            KeySet::from_jwks(n.str()?.as_bytes()).map_err(|e| n.error(e.to_string()))?
        }
        (None, Some(n), None) => {
            let text = serde_json::to_vec(n.value).map_err(|e| n.error(e.to_string()))?;
            KeySet::from_jwks(&text).map_err(|e| n.error(e.to_string()))?
        }
        (None, None, Some(n)) => KeySet::from_pem(n.str()?).map_err(|e| n.error(e.to_string()))?,
        _ => {
            return Err(obj
                .node()
                .error("set exactly one of inline_string, inline or pem"))
        }
    };
    if keys.is_empty() {
        return Err(node.error("the key set has no usable key"));
    }
    Ok(keys)
}

fn parse_remote_jwks(node: &Node<'_>) -> Result<RemoteJwks> {
    let obj = node.object(&[
        "cluster",
        "uri",
        "timeout",
        "cache_duration",
        "max_bytes",
        "retry",
        "refetch_on_unknown_kid",
    ])?;
    let cluster = obj.require("cluster")?.non_empty_str()?.to_string();
    let (authority, path) = obj.require("uri")?.http_uri()?;
    let timeout = obj
        .get("timeout")
        .map(|n| n.duration())
        .transpose()?
        .unwrap_or(Duration::from_secs(5));
    let cache_duration = obj
        .get("cache_duration")
        .map(|n| n.duration())
        .transpose()?
        .unwrap_or(Duration::from_secs(600));
    if cache_duration < Duration::from_secs(1) {
        return Err(node.error("cache_duration must be at least 1s"));
    }
    let max_bytes = obj
        .get("max_bytes")
        .map(|n| n.usize_in(64, 4 * 1024 * 1024))
        .transpose()?
        .unwrap_or(DEFAULT_MAX_JWKS_BYTES);
    let (mut retry_base, mut retry_max) = (Duration::from_secs(1), Duration::from_secs(30));
    if let Some(n) = obj.get("retry") {
        let retry = n.object(&["base_interval", "max_interval"])?;
        if let Some(b) = retry.get("base_interval") {
            retry_base = b.duration()?;
        }
        if let Some(m) = retry.get("max_interval") {
            retry_max = m.duration()?;
        }
        if retry_base.is_zero() || retry_max < retry_base {
            return Err(n.error("need 0 < base_interval <= max_interval"));
        }
    }
    let refetch_on_unknown_kid = match obj.get("refetch_on_unknown_kid") {
        None => Some(Duration::from_secs(30)),
        Some(n) if n.value == &Value::Bool(false) => None,
        Some(n) => {
            let interval = n.duration()?;
            if interval < Duration::from_secs(1) {
                return Err(n.error(
                    "at least 1s (or false): each unknown kid could otherwise cause a fetch",
                ));
            }
            Some(interval)
        }
    };
    Ok(RemoteJwks {
        cluster,
        authority,
        path,
        timeout,
        cache_duration,
        max_bytes,
        retry_base,
        retry_max,
        refetch_on_unknown_kid,
    })
}
/// The policy's name labels its metrics and shared-data keys: short, lower-case, no separators.
fn read_name(obj: &Object<'_>) -> Result<String> {
    let Some(n) = obj.get("name") else {
        return Ok("apiguard".to_string());
    };
    let s = n.non_empty_str()?;
    if s.len() > 32
        || !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(n.error("use 1 to 32 characters from a-z, 0-9 and _"));
    }
    Ok(s.to_string())
}

/// An optional section, compiled by the feature that owns it.
fn section<T>(
    obj: &Object<'_>,
    field: &str,
    compile: impl FnOnce(&Node<'_>) -> Result<T>,
) -> Result<Option<T>> {
    obj.get(field).map(|n| compile(&n)).transpose()
}

/// `jwt_cache.max_entries` (0 turns the verified-token cache off).
fn read_jwt_cache(obj: &Object<'_>) -> Result<usize> {
    let Some(node) = obj.get("jwt_cache") else {
        return Ok(1024);
    };
    let cache = node.object(&["max_entries"])?;
    Ok(cache
        .get("max_entries")
        .map(|n| n.usize_in(0, 1_000_000))
        .transpose()?
        .unwrap_or(1024))
}

/// The providers in order, and their indices by name for the rules.
fn read_providers(obj: &Object<'_>) -> Result<(BTreeMap<String, usize>, Vec<Provider>)> {
    let mut provider_index = BTreeMap::new();
    let mut providers = Vec::new();
    if let Some(node) = obj.get("jwt_providers") {
        for (provider_name, provider_node) in node.entries()? {
            if provider_name.is_empty() {
                return Err(provider_node.error("provider names must not be empty"));
            }
            provider_index.insert(provider_name.to_string(), providers.len());
            providers.push(parse_provider(provider_name, &provider_node)?);
        }
    }
    Ok((provider_index, providers))
}

fn read_rules(obj: &Object<'_>, sections: &Sections<'_>) -> Result<Vec<Rule>> {
    let mut rules = Vec::new();
    if let Some(node) = obj.get("rules") {
        for (i, rule_node) in node.array()?.iter().enumerate() {
            rules.push(parse_rule(i, rule_node, sections)?);
        }
    }
    Ok(rules)
}

/// [`Policy::owned_headers`]: what the providers write, sorted, once each.
fn owned_headers(providers: &[Provider]) -> Vec<String> {
    let mut owned: Vec<String> = providers
        .iter()
        .flat_map(|p| {
            p.claim_to_headers
                .iter()
                .map(|c| c.header_name.clone())
                .chain(p.forward_payload_header.iter().cloned())
        })
        .collect();
    crate::sorting::sort_strings(&mut owned);
    owned.dedup();
    owned
}

/// The named sections a rule may refer to.
/// A rule's reference to a named entry of a section: what `find` gives for the name, or an error
/// that lists the names there are.
fn named_entry<'s, T>(
    node: &Node<'_>,
    section: &str,
    names: impl Iterator<Item = &'s str>,
    find: impl FnOnce(&str) -> Option<T>,
) -> Result<T> {
    let wanted = node.non_empty_str()?;
    find(wanted).ok_or_else(|| {
        let known: Vec<&str> = names.collect();
        node.error(format!(
            "no {section} entry named {wanted:?} (known: {})",
            known.join(", ")
        ))
    })
}

struct Sections<'a> {
    providers: &'a BTreeMap<String, usize>,
    api_keys: &'a ApiKeys,
    rate_limits: &'a RateLimits,
    schemas: &'a SchemaSet,
    redactions: &'a BTreeMap<String, Arc<Redaction>>,
}

fn parse_rule(index: usize, node: &Node<'_>, sections: &Sections<'_>) -> Result<Rule> {
    let obj = node.object(&[
        "name",
        "match",
        "mode",
        "jwt",
        "api_key",
        "authz",
        "rate_limits",
        "schema",
        "redaction",
        "allow_method_override",
    ])?;
    let name = obj
        .get("name")
        .map(|n| n.non_empty_str().map(str::to_string))
        .transpose()?
        .unwrap_or_else(|| format!("rule{index}"));
    let match_node = obj.require("match")?;
    let matcher = parse_match(&match_node)?;
    let path_label = match match_node.object(MATCH_FIELDS)?.get("template") {
        Some(template) => template.str()?.to_string(),
        None => name.clone(),
    };
    let mode = obj.get("mode").map(|n| parse_mode(&n)).transpose()?;
    let jwt = obj
        .get("jwt")
        .map(|n| parse_requirement(&n, sections.providers))
        .transpose()?;
    let api_key = obj
        .get("api_key")
        .map(|n| {
            let names = sections.api_keys.sets.iter().map(|s| s.name.as_str());
            named_entry(&n, "api_keys", names, |set| sections.api_keys.find(set))
        })
        .transpose()?;
    let authz = obj.get("authz").map(|n| authz::compile(&n)).transpose()?;
    let rate_limits = obj
        .get("rate_limits")
        .map(|n| ratelimit::compile_rule_refs(&n, sections.rate_limits))
        .transpose()?
        .unwrap_or_default();
    let schema = obj
        .get("schema")
        .map(|n| {
            let names = sections.schemas.policies.iter().map(|p| p.name.as_str());
            named_entry(&n, "schemas", names, |wanted| {
                sections.schemas.index_of(wanted)
            })
        })
        .transpose()?;
    let redaction = obj
        .get("redaction")
        .map(|n| {
            let names = sections.redactions.keys().map(String::as_str);
            named_entry(&n, "redaction", names, |wanted| {
                sections.redactions.get(wanted).map(Arc::clone)
            })
        })
        .transpose()?;
    let allow_method_override = obj.bool_or("allow_method_override", false)?;
    Ok(Rule {
        name,
        matcher,
        mode,
        jwt,
        api_key,
        authz,
        rate_limits,
        path_label,
        schema,
        redaction,
        allow_method_override,
    })
}

const MATCH_FIELDS: &[&str] = &[
    "prefix",
    "exact",
    "template",
    "methods",
    "hosts",
    "case_insensitive",
];

fn parse_match(node: &Node<'_>) -> Result<RouteMatch> {
    let obj = node.object(MATCH_FIELDS)?;
    let prefix = obj.get("prefix");
    let exact = obj.get("exact");
    let template = obj.get("template");
    let path = match (prefix, exact, template) {
        (Some(n), None, None) => PathMatch::Prefix(path_str(&n)?.to_string()),
        (None, Some(n), None) => PathMatch::Exact(path_str(&n)?.to_string()),
        (None, None, Some(n)) => {
            PathMatch::Template(compile_template(path_str(&n)?).map_err(|m| n.error(m))?)
        }
        _ => {
            return Err(obj
                .node()
                .error("set exactly one of prefix, exact or template"))
        }
    };
    let methods = match obj.get("methods") {
        None => Vec::new(),
        Some(n) => {
            let methods = n.string_list()?;
            if let Some(bad) = methods
                .iter()
                .find(|m| !m.bytes().all(|b| b.is_ascii_uppercase()))
            {
                return Err(n.error(format!(
                    "method {bad:?} must be upper-case letters, e.g. \"GET\""
                )));
            }
            methods
        }
    };
    let hosts = obj
        .get("hosts")
        .map(|n| n.string_list())
        .transpose()?
        .unwrap_or_default()
        .into_iter()
        .map(|h| {
            let h = h.to_ascii_lowercase();
            match h.strip_suffix('.') {
                Some(bare) if !bare.is_empty() => bare.to_string(),
                _ => h,
            }
        })
        .collect();
    let case_insensitive = obj.bool_or("case_insensitive", false)?;
    Ok(RouteMatch {
        path,
        methods,
        hosts,
        case_insensitive,
    })
}

/// A rule path (prefix, exact or template): it must be written in canonical form, since requests are
/// matched in canonical form (a rule for `/a/%7euser` or `/a//b` could never match).
fn path_str<'a>(node: &Node<'a>) -> Result<&'a str> {
    let s = node.str()?;
    if !s.starts_with('/') {
        return Err(node.error("a path starts with '/'"));
    }
    let canonical = crate::canonical::canonicalize(s);
    if canonical.is_ambiguous() || canonical.matrix || canonical.query.is_some() {
        return Err(node.error(
            "a rule path has no query string, matrix parameters (';'), encoded '/' or '\\', \
             dot segments written as escapes or malformed escapes",
        ));
    }
    if canonical.path != s {
        return Err(node.error(format!(
            "requests are matched in canonical form; write {:?}",
            canonical.path
        )));
    }
    Ok(s)
}

fn parse_requirement(node: &Node<'_>, providers: &BTreeMap<String, usize>) -> Result<Requirement> {
    const FORMS: [&str; 5] = [
        "provider",
        "any",
        "all",
        "allow_missing",
        "allow_missing_or_failed",
    ];
    let obj = node.object(&FORMS)?;
    let present: Vec<Node<'_>> = FORMS.iter().filter_map(|form| obj.get(form)).collect();
    let [n] = present.as_slice() else {
        return Err(node.error(format!("set exactly one of {}", FORMS.join(", "))));
    };
    Ok(match obj.get("provider") {
        Some(_) => {
            let name = n.non_empty_str()?;
            match providers.get(name) {
                Some(&i) => Requirement::Provider(i),
                None => {
                    let known: Vec<&str> = providers.keys().map(String::as_str).collect();
                    return Err(n.error(format!(
                        "no jwt_providers entry named {name:?} (known: {})",
                        known.join(", ")
                    )));
                }
            }
        }
        None if obj.get("any").is_some() => Requirement::Any(parse_requirement_list(n, providers)?),
        None if obj.get("all").is_some() => Requirement::All(parse_requirement_list(n, providers)?),
        None if obj.get("allow_missing").is_some() => {
            expect_true(n)?;
            Requirement::AllowMissing
        }
        None => {
            expect_true(n)?;
            Requirement::AllowMissingOrFailed
        }
    })
}

fn expect_true(node: &Node<'_>) -> Result<()> {
    if node.bool()? {
        Ok(())
    } else {
        Err(node.error("only true is meaningful here; remove the requirement instead"))
    }
}

fn parse_requirement_list(
    node: &Node<'_>,
    providers: &BTreeMap<String, usize>,
) -> Result<Vec<Requirement>> {
    let items = node.array()?;
    if items.is_empty() {
        return Err(node.error("must list at least one requirement"));
    }
    items
        .iter()
        .map(|item| parse_requirement(item, providers))
        .collect()
}

#[cfg(test)]
mod tests;
