//! API-key authentication: a caller presents a key in a header or a query parameter; the filter
//! compares its SHA-256 with the digests in the configuration and, on a match, knows the caller by
//! the key's configured name (and the scopes and roles configured with it).
//!
//! - The configuration holds digests only (`"sha256": "<64 hex>"`), so neither it nor a config dump
//!   reveals a key. Generate one with `printf %s "$KEY" | sha256sum`.
//! - Lookup is by digest: what is compared is the SHA-256 of the presented key, so timing tells a
//!   client nothing about a valid key (it would need a SHA-256 preimage).
//! - The presented key is never logged, never echoed, and by default removed from the request before
//!   it goes upstream (header location; a query parameter stays, as JWTs in the query do).
//! - Several keys may share one name (key rotation: old and new key for the same client).
//!
//! Refusals: 401 with body `API key is missing` or `API key is invalid` and
//! `www-authenticate: ApiKey realm="<set name>"` (there is no registered scheme for API keys; this
//! one names the header-independent concept and the set, so a client knows which keys are wanted).

use crate::jwt::extract::param_name_matches;
use crate::reader::{Node, Result};
use crate::reply::Reply;
use crate::request::TokenSource;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashMap;

/// Longest key accepted; longer ones are invalid without being hashed.
pub const MAX_KEY_BYTES: usize = 1024;

/// Who a valid key says the caller is. Never contains the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIdentity {
    pub name: String,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
}

/// One named set of keys (`api_keys.<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeySet {
    pub name: String,
    /// Lower-case header name.
    pub from_header: Option<String>,
    pub from_param: Option<String>,
    /// Keep the key header on the request going upstream (default: removed).
    pub forward: bool,
    pub keys: Vec<KeyIdentity>,
    by_digest: HashMap<[u8; 32], usize>,
}

/// Every key set of the configuration (the `api_keys` section).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiKeys {
    pub sets: Vec<ApiKeySet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyFailure {
    Missing,
    Invalid,
}

impl ApiKeyFailure {
    pub fn message(self) -> &'static str {
        match self {
            ApiKeyFailure::Missing => "API key is missing",
            ApiKeyFailure::Invalid => "API key is invalid",
        }
    }

    /// Metric name suffix.
    pub fn metric_name(self) -> &'static str {
        match self {
            ApiKeyFailure::Missing => "api_key_missing",
            ApiKeyFailure::Invalid => "api_key_invalid",
        }
    }
}

impl ApiKeys {
    pub fn find(&self, name: &str) -> Option<usize> {
        self.sets.iter().position(|s| s.name == name)
    }
}

impl ApiKeySet {
    /// The identity of the key the request presents. The header is looked at first, then the
    /// query parameter.
    pub fn authenticate(
        &self,
        request: &dyn TokenSource,
    ) -> std::result::Result<&KeyIdentity, ApiKeyFailure> {
        let presented = self.presented(request)?;
        if presented.len() > MAX_KEY_BYTES {
            return Err(ApiKeyFailure::Invalid);
        }
        let digest: [u8; 32] = Sha256::digest(&presented).into();
        self.by_digest
            .get(&digest)
            .and_then(|i| self.keys.get(*i))
            .ok_or(ApiKeyFailure::Invalid)
    }

    /// The query parameter to remove from `:path` before forwarding, if any (not with `forward`).
    pub fn param_to_strip(&self) -> Option<&str> {
        if self.forward {
            None
        } else {
            self.from_param.as_deref()
        }
    }

    /// The header to remove before forwarding, if any.
    pub fn header_to_remove(&self) -> Option<&str> {
        if self.forward {
            None
        } else {
            self.from_header.as_deref()
        }
    }

    /// The presented key. A key header sent twice or not UTF-8, a key parameter present twice (names
    /// compared after percent-decoding), or a key in both the header and the parameter is ambiguous:
    /// `Invalid`, never one chosen copy.
    fn presented<'r>(
        &self,
        request: &'r dyn TokenSource,
    ) -> std::result::Result<Cow<'r, [u8]>, ApiKeyFailure> {
        let header = match self.from_header.as_deref() {
            None => None,
            Some(h) => match request.header_count(h) {
                0 => None,
                1 if request.header_is_utf8(h) => {
                    request.header(h).map(str::trim).filter(|v| !v.is_empty())
                }
                _ => return Err(ApiKeyFailure::Invalid),
            },
        };
        let param = match self.from_param.as_deref() {
            None => None,
            Some(p) => query_param(request.query(), p)?.filter(|v| !v.is_empty()),
        };
        match (header, param) {
            (Some(_), Some(_)) => Err(ApiKeyFailure::Invalid),
            (Some(value), None) => Ok(Cow::Borrowed(value.as_bytes())),
            (None, Some(raw)) => percent_decode(raw).ok_or(ApiKeyFailure::Invalid),
            (None, None) => Err(ApiKeyFailure::Missing),
        }
    }
}

/// The parameter's value, `None` when absent, `Invalid` when present more than once.
fn query_param<'q>(
    query: &'q str,
    name: &str,
) -> std::result::Result<Option<&'q str>, ApiKeyFailure> {
    let mut found = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !param_name_matches(key, name) {
            continue;
        }
        if found.is_some() {
            return Err(ApiKeyFailure::Invalid);
        }
        found = Some(value);
    }
    Ok(found)
}

/// `%XX` escapes decoded; `+` kept as it is (keys are not form data). `None` for a broken escape.
fn percent_decode(raw: &str) -> Option<Cow<'_, [u8]>> {
    if !raw.contains('%') {
        return Some(Cow::Borrowed(raw.as_bytes()));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = hex_value(bytes.next()?)?;
            let lo = hex_value(bytes.next()?)?;
            out.push(hi << 4 | lo);
        } else {
            out.push(b);
        }
    }
    Some(Cow::Owned(out))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The 401 reply. `strip_details` sends the status alone.
pub fn reply(failure: ApiKeyFailure, set: &ApiKeySet, strip_details: bool) -> Reply {
    if strip_details {
        return Reply::status_only(401);
    }
    Reply {
        extra_headers: Vec::new(),
        status: 401,
        body: failure.message().to_string(),
        headers: vec![
            ("content-type", "text/plain".to_string()),
            ("www-authenticate", format!("ApiKey realm=\"{}\"", set.name)),
        ],
    }
}

/// Compiles the `api_keys` section: an object of named key sets.
pub fn compile(node: &Node<'_>) -> Result<ApiKeys> {
    let mut sets = Vec::new();
    for (name, set_node) in node.entries()? {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(set_node.error("key set names use a-z, A-Z, 0-9, _ and -"));
        }
        sets.push(compile_set(name, &set_node)?);
    }
    Ok(ApiKeys { sets })
}

fn compile_set(name: &str, node: &Node<'_>) -> Result<ApiKeySet> {
    let obj = node.object(&["from_header", "from_param", "forward", "keys"])?;
    let mut from_header = obj
        .get("from_header")
        .map(|n| n.header_name())
        .transpose()?;
    let from_param = obj
        .get("from_param")
        .map(|n| n.non_empty_str().map(str::to_string))
        .transpose()?;
    if from_header.is_none() && from_param.is_none() {
        from_header = Some("x-api-key".to_string());
    }
    let forward = obj.bool_or("forward", false)?;
    let keys_node = obj.require("keys")?;
    let mut keys = Vec::new();
    let mut by_digest = HashMap::new();
    for item in keys_node.array()? {
        let k = item.object(&["name", "sha256", "scopes", "roles"])?;
        let key_name = k.require("name")?.non_empty_str()?.to_string();
        if key_name.chars().any(char::is_control) {
            return Err(item.error("key names must not contain control characters"));
        }
        let digest_node = k.require("sha256")?;
        let digest = parse_digest(digest_node.str()?).ok_or_else(|| {
            digest_node.error("expected the key's SHA-256 as 64 hex digits (printf %s \"$KEY\" | sha256sum), never the key itself")
        })?;
        if by_digest.insert(digest, keys.len()).is_some() {
            return Err(digest_node.error("the same key digest is listed twice"));
        }
        let scopes = k
            .get("scopes")
            .map(|n| n.string_list())
            .transpose()?
            .unwrap_or_default();
        let roles = k
            .get("roles")
            .map(|n| n.string_list())
            .transpose()?
            .unwrap_or_default();
        keys.push(KeyIdentity {
            name: key_name,
            scopes,
            roles,
        });
    }
    if keys.is_empty() {
        return Err(keys_node.error("a key set needs at least one key"));
    }
    Ok(ApiKeySet {
        name: name.to_string(),
        from_header,
        from_param,
        forward,
        keys,
        by_digest,
    })
}

fn parse_digest(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *byte = hex_value(*hi)? << 4 | hex_value(*lo)?;
    }
    Some(out)
}

/// The SHA-256 of a key as 64 lower-case hex digits (for tests and tooling).
pub fn digest_hex(key: &[u8]) -> String {
    Sha256::digest(key)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::ConfigError;
    use crate::request::Request;
    use serde_json::json;

    /// The request's headers, and `query` as its `:path`'s query string.
    fn req(headers: &[(&str, &str)], query: &str) -> Request {
        Request::of(headers).with_header(":path", format!("/?{query}"))
    }

    const ACME_KEY: &str = "acme-secret-key-1";
    const ACME_NEXT_KEY: &str = "acme-secret-key-2";
    const GLOBEX_KEY: &str = "globex/key+with%special";

    fn set() -> ApiKeySet {
        let doc = json!({"partners": {
            "from_header": "X-API-Key",
            "from_param": "api_key",
            "keys": [
                {"name": "acme", "sha256": digest_hex(ACME_KEY.as_bytes()), "scopes": ["orders:read"], "roles": ["partner"]},
                {"name": "acme", "sha256": digest_hex(ACME_NEXT_KEY.as_bytes()).to_uppercase()},
                {"name": "globex", "sha256": digest_hex(GLOBEX_KEY.as_bytes())}
            ]
        }});
        compile(&Node::root(&doc)).unwrap().sets.remove(0)
    }

    fn refused(doc: serde_json::Value) -> ConfigError {
        compile(&Node::root(&doc)).unwrap_err()
    }

    #[test]
    fn a_known_key_in_the_header_gives_its_configured_identity() {
        let s = set();
        let id = s
            .authenticate(&req(&[("x-api-key", ACME_KEY)], ""))
            .unwrap();
        assert_eq!(id.name, "acme");
        assert_eq!(id.scopes, vec!["orders:read".to_string()]);
        assert_eq!(id.roles, vec!["partner".to_string()]);
    }

    #[test]
    fn two_keys_may_share_a_name_for_rotation() {
        let s = set();
        let id = s
            .authenticate(&req(&[("x-api-key", ACME_NEXT_KEY)], ""))
            .unwrap();
        assert_eq!(id.name, "acme");
        assert!(id.scopes.is_empty());
    }

    #[test]
    fn a_key_in_the_query_is_percent_decoded() {
        let s = set();
        let id = s
            .authenticate(&req(&[], "a=1&api_key=globex%2Fkey+with%25special"))
            .unwrap();
        assert_eq!(id.name, "globex");
        assert_eq!(
            s.authenticate(&req(&[], "api_key=bad%zz")),
            Err(ApiKeyFailure::Invalid)
        );
        assert_eq!(
            s.authenticate(&req(&[], "api_key=bad%2")),
            Err(ApiKeyFailure::Invalid)
        );
    }

    #[test]
    fn no_key_is_missing_and_an_unknown_or_oversized_key_is_invalid() {
        let s = set();
        assert_eq!(s.authenticate(&req(&[], "")), Err(ApiKeyFailure::Missing));
        assert_eq!(
            s.authenticate(&req(&[("x-api-key", "  ")], "api_key=")),
            Err(ApiKeyFailure::Missing)
        );
        assert_eq!(
            s.authenticate(&req(&[("x-api-key", "guess")], "")),
            Err(ApiKeyFailure::Invalid)
        );
        let huge = "a".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(
            s.authenticate(&req(&[("x-api-key", &huge)], "")),
            Err(ApiKeyFailure::Invalid)
        );
    }

    #[test]
    fn the_header_wins_over_the_query_parameter() {
        let s = set();
        let r = req(&[("x-api-key", "wrong")], &format!("api_key={ACME_KEY}"));
        assert_eq!(s.authenticate(&r), Err(ApiKeyFailure::Invalid));
    }

    #[test]
    fn the_reply_is_401_with_an_api_key_challenge_and_never_echoes_the_key() {
        let s = set();
        let r = reply(ApiKeyFailure::Invalid, &s, false);
        assert_eq!((r.status, r.body.as_str()), (401, "API key is invalid"));
        assert!(r
            .headers
            .contains(&("www-authenticate", "ApiKey realm=\"partners\"".to_string())));
        assert!(!format!("{r:?}").contains("guess"));
        let r = reply(ApiKeyFailure::Missing, &s, true);
        assert_eq!((r.status, r.body.as_str(), r.headers.len()), (401, "", 0));
    }

    #[test]
    fn the_header_is_removed_upstream_unless_forwarded_and_defaults_to_x_api_key() {
        assert_eq!(set().header_to_remove(), Some("x-api-key"));
        let doc =
            json!({"k": {"forward": true, "keys": [{"name": "a", "sha256": digest_hex(b"x")}]}});
        let s = compile(&Node::root(&doc)).unwrap().sets.remove(0);
        assert_eq!(s.from_header.as_deref(), Some("x-api-key"));
        assert_eq!(s.header_to_remove(), None);
    }

    #[test]
    fn plain_keys_bad_digests_and_duplicates_are_refused_with_their_path() {
        let e = refused(json!({"p": {"keys": [{"name": "a", "sha256": "my-plain-key"}]}}));
        assert_eq!(e.path, "p.keys[0].sha256");
        assert!(e.message.contains("never the key itself"));
        let e = refused(json!({"p": {"keys": [{"name": "a", "key": "my-plain-key"}]}}));
        assert_eq!(e.path, "p.keys[0].key");
        let d = digest_hex(b"x");
        let e = refused(
            json!({"p": {"keys": [{"name": "a", "sha256": d}, {"name": "b", "sha256": d}]}}),
        );
        assert_eq!(e.path, "p.keys[1].sha256");
        let e = refused(json!({"p": {"keys": []}}));
        assert_eq!(e.path, "p.keys");
        let e = refused(json!({"p": {"from_header": "bad header", "keys": []}}));
        assert_eq!(e.path, "p.from_header");
        let e = refused(json!({"bad name": {"keys": []}}));
        assert_eq!(e.path, "bad name");
        let g = "g".repeat(64);
        let e = refused(json!({"p": {"keys": [{"name": "a", "sha256": g}]}}));
        assert_eq!(e.path, "p.keys[0].sha256");
    }

    #[test]
    fn a_key_that_could_be_read_two_ways_is_invalid_not_one_copy_chosen() {
        let s = set();
        let twice = req(&[("x-api-key", ACME_KEY), ("x-api-key", GLOBEX_KEY)], "");
        assert_eq!(s.authenticate(&twice).err(), Some(ApiKeyFailure::Invalid));
        let both = req(&[("x-api-key", ACME_KEY)], &format!("api_key={GLOBEX_KEY}"));
        assert_eq!(s.authenticate(&both).err(), Some(ApiKeyFailure::Invalid));
        let params = req(&[], &format!("api_key={ACME_KEY}&api%5Fkey={GLOBEX_KEY}"));
        assert_eq!(s.authenticate(&params).err(), Some(ApiKeyFailure::Invalid));
        let encoded = req(&[], &format!("api%5Fkey={ACME_KEY}"));
        assert_eq!(
            s.authenticate(&encoded).map(|k| k.name.as_str()),
            Ok("acme")
        );
        assert_eq!(s.param_to_strip(), Some("api_key"));
    }

    #[test]
    fn debug_output_of_a_set_holds_digests_not_keys() {
        let text = format!("{:?}", set());
        assert!(!text.contains(ACME_KEY));
    }
}
