//! Rate-limit keys: what identifies "one client" for a policy, built from the parts the policy
//! names, and the keyed hash that places a key in the slot table.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt::Write;
use std::hash::Hasher;
use std::net::IpAddr;

/// Longest key stored as it is; longer keys (long header values) are stored as their SHA-256, so
/// that a slot never holds more than this many key bytes.
pub const MAX_KEY_BYTES: usize = 128;

/// What the limiter reads of a request. The lead fills it once per request, after authentication.
pub trait RequestFacts {
    /// The verified JWT payload, if a token was verified.
    fn claims(&self) -> Option<&Map<String, Value>>;
    /// The configured name of the API key the caller authenticated with (never the key itself).
    fn api_key_name(&self) -> Option<&str>;
    /// A request header by lower-case name (its first value, when UTF-8).
    fn header(&self, name: &str) -> Option<&str>;
    /// How many times the header occurs (see [`crate::jwt::extract::TokenSource::header_count`]).
    fn header_count(&self, name: &str) -> usize {
        usize::from(self.header(name).is_some())
    }
    /// `false` when any occurrence of the header is not UTF-8.
    fn header_is_utf8(&self, _name: &str) -> bool {
        true
    }
    /// The connection's source address as Envoy reports it (`source.address`: `ip:port`, `[v6]:port` or `ip`).
    fn source_address(&self) -> Option<&str>;
    /// The matched rule's path template, or its name when it matches by prefix or exact path.
    fn path_template(&self) -> &str;
    fn method(&self) -> &str;
}

/// One part of a policy's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// A JWT claim, dotted path for nested claims; strings as they are, numbers and booleans printed.
    JwtClaim(Vec<String>),
    /// The API key's configured name.
    ApiKey,
    /// A request header (lower-case name). Present more than once, or not UTF-8: ambiguous.
    Header(String),
    /// The client's address. The configuration states that Envoy's connection manager has
    /// `use_remote_address: true` (else `source.address` is the client's own `x-forwarded-for`), so:
    /// with `trusted_hops` = 0, `source.address` (the TCP peer, or the address Envoy's own
    /// `xff_num_trusted_hops` chose); with N > 0, the address N trusted proxies in front of Envoy saw:
    /// the (N+1)-th entry from the right of `x-forwarded-for` (Envoy appended the peer as the last),
    /// or the connection's address when the header holds fewer. IPv6 addresses are cut to
    /// `ipv6_prefix` bits (clients often own a whole /64).
    ClientAddress {
        trusted_hops: usize,
        ipv6_prefix: u8,
    },
    PathTemplate,
    Method,
}

impl KeyPart {
    /// Short name for error messages and logs.
    pub fn name(&self) -> &'static str {
        match self {
            KeyPart::JwtClaim(_) => "jwt_claim",
            KeyPart::ApiKey => "api_key",
            KeyPart::Header(_) => "header",
            KeyPart::ClientAddress { .. } => "client_address",
            KeyPart::PathTemplate => "path_template",
            KeyPart::Method => "method",
        }
    }

    pub(crate) fn value<'f>(&self, facts: &'f dyn RequestFacts) -> Option<Cow<'f, str>> {
        match self {
            KeyPart::JwtClaim(path) => claim_text(facts.claims()?, path),
            KeyPart::ApiKey => facts.api_key_name().map(Cow::Borrowed),
            KeyPart::Header(name) => facts.header(name).map(Cow::Borrowed),
            KeyPart::ClientAddress {
                trusted_hops,
                ipv6_prefix,
            } => client_address(facts, *trusted_hops)
                .map(|ip| Cow::Owned(mask(ip, *ipv6_prefix).to_string())),
            KeyPart::PathTemplate => Some(Cow::Borrowed(facts.path_template())),
            KeyPart::Method => Some(Cow::Borrowed(facts.method())),
        }
    }
}

/// The first part of `parts` whose value the request gives more than one way (a header present
/// twice or not UTF-8; for `client_address` with `trusted_hops`, `x-forwarded-for`): such a request
/// is refused rather than keyed by one of its copies.
pub fn ambiguous_part(parts: &[KeyPart], facts: &dyn RequestFacts) -> Option<&'static str> {
    parts
        .iter()
        .find(|part| is_ambiguous(part, facts))
        .map(KeyPart::name)
}

/// Whether the request gives `part` two ways (a header sent twice, or not UTF-8).
pub fn is_ambiguous(part: &KeyPart, facts: &dyn RequestFacts) -> bool {
    let unclear = |name: &str| facts.header_count(name) > 1 || !facts.header_is_utf8(name);
    match part {
        KeyPart::Header(name) => unclear(name),
        KeyPart::ClientAddress { trusted_hops, .. } => {
            *trusted_hops > 0 && unclear("x-forwarded-for")
        }
        _ => false,
    }
}

/// Builds the key from `parts`, prefixed by `scope` (the rule name for per-rule policies, empty for
/// shared ones). Each part is length-prefixed, so that no two different requests give the same key
/// (`"a|b" + "c"` and `"a" + "b|c"` differ). `Err` names the first part the request lacks.
pub fn build(
    scope: &str,
    parts: &[KeyPart],
    facts: &dyn RequestFacts,
) -> Result<String, &'static str> {
    let mut key = String::with_capacity(64);
    push_part(&mut key, scope);
    for part in parts {
        let value = part.value(facts).ok_or(part.name())?;
        push_part(&mut key, &value);
    }
    Ok(bounded(key))
}

/// As [`build`], but parts the request lacks are replaced by a marker that no present value can
/// produce, so that requests lacking them share one budget.
pub fn build_with_fallback(scope: &str, parts: &[KeyPart], facts: &dyn RequestFacts) -> String {
    let mut key = String::with_capacity(64);
    push_part(&mut key, scope);
    for part in parts {
        match part.value(facts) {
            Some(value) => push_part(&mut key, &value),
            None => key.push('-'),
        }
    }
    bounded(key)
}

fn push_part(key: &mut String, value: &str) {
    // Writing to a String cannot fail.
    let _ = write!(key, "{}:", value.len());
    key.push_str(value);
}

fn bounded(key: String) -> String {
    if key.len() <= MAX_KEY_BYTES {
        return key;
    }
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for byte in digest {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

fn claim_text<'p>(payload: &'p Map<String, Value>, path: &[String]) -> Option<Cow<'p, str>> {
    let (first, rest) = path.split_first()?;
    let mut value = payload.get(first)?;
    for part in rest {
        value = value.as_object()?.get(part)?;
    }
    match value {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

fn client_address(facts: &dyn RequestFacts, trusted_hops: usize) -> Option<IpAddr> {
    if trusted_hops > 0 {
        if let Some(xff) = facts.header("x-forwarded-for") {
            let mut entries = xff.rsplit(',').map(str::trim);
            // Envoy (use_remote_address: true) appended the peer: skip it, then the trusted hops'.
            if let Some(entry) = entries.nth(trusted_hops) {
                // A hop we trust wrote this entry: if it is not an address, the key part is missing
                // rather than whatever a client managed to put there.
                return parse_address(entry);
            }
        }
    }
    parse_address(facts.source_address()?)
}

/// `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80`.
pub fn parse_address(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (host, _) = rest.split_once(']')?;
        return host.parse().ok();
    }
    let (host, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn mask(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let bits = u128::from(v6);
            let keep = u32::from(ipv6_prefix.min(128));
            let masked = bits
                .checked_shr(128 - keep)
                .and_then(|b| b.checked_shl(128 - keep))
                .unwrap_or(if keep == 0 { 0 } else { bits });
            IpAddr::V6(masked.into())
        }
    }
}

/// The seed of the slot hash, the same in every worker (kept in shared data), unknown to clients:
/// without it a client cannot choose keys that collide in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed(pub u64, pub u64);

impl Seed {
    pub fn from_bytes(bytes: &[u8; 16]) -> Seed {
        let (a, b) = bytes.split_at(8);
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(a);
        k1.copy_from_slice(b);
        Seed(u64::from_le_bytes(k0), u64::from_le_bytes(k1))
    }

    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (dst, src) in out
            .iter_mut()
            .zip(self.0.to_le_bytes().into_iter().chain(self.1.to_le_bytes()))
        {
            *dst = src;
        }
        out
    }

    /// Keyed SipHash-2-4 of `key`.
    pub fn hash(&self, key: &str) -> u64 {
        // std keeps its keyed SipHash-2-4 for compatibility; it is exactly the keyed hash needed
        // here, and needs no extra crate in the .wasm.
        #[allow(deprecated)]
        let mut hasher = std::hash::SipHasher::new_with_keys(self.0, self.1);
        hasher.write(key.as_bytes());
        hasher.finish()
    }
}

#[cfg(test)]
pub mod fake {
    use super::RequestFacts;
    use serde_json::{Map, Value};
    use std::collections::HashMap;

    /// A request described by builder methods.
    #[derive(Debug, Default, Clone)]
    pub struct Facts {
        pub claims: Option<Map<String, Value>>,
        pub api_key: Option<String>,
        pub headers: HashMap<String, String>,
        /// Further copies of headers in `headers`.
        pub repeated: Vec<String>,
        pub source: Option<String>,
        pub template: String,
        pub method: String,
    }

    impl Facts {
        pub fn new() -> Facts {
            Facts {
                template: "/orders/{id}".into(),
                method: "GET".into(),
                source: Some("10.0.0.1:5555".into()),
                ..Facts::default()
            }
        }
        pub fn with_claims(mut self, claims: Value) -> Facts {
            self.claims = claims.as_object().cloned();
            self
        }
        pub fn with_api_key(mut self, name: &str) -> Facts {
            self.api_key = Some(name.into());
            self
        }
        pub fn with_header(mut self, name: &str, value: &str) -> Facts {
            self.headers.insert(name.into(), value.into());
            self
        }
        /// One more copy of a header already set.
        pub fn with_repeated(mut self, name: &str) -> Facts {
            self.repeated.push(name.into());
            self
        }
        pub fn with_source(mut self, source: Option<&str>) -> Facts {
            self.source = source.map(str::to_string);
            self
        }
        pub fn with_method(mut self, method: &str) -> Facts {
            self.method = method.into();
            self
        }
    }

    impl RequestFacts for Facts {
        fn claims(&self) -> Option<&Map<String, Value>> {
            self.claims.as_ref()
        }
        fn api_key_name(&self) -> Option<&str> {
            self.api_key.as_deref()
        }
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).map(String::as_str)
        }
        fn header_count(&self, name: &str) -> usize {
            usize::from(self.headers.contains_key(name))
                + self.repeated.iter().filter(|n| *n == name).count()
        }
        fn source_address(&self) -> Option<&str> {
            self.source.as_deref()
        }
        fn path_template(&self) -> &str {
            &self.template
        }
        fn method(&self) -> &str {
            &self.method
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::Facts;
    use super::*;
    use serde_json::json;

    fn addr(hops: usize) -> Vec<KeyPart> {
        vec![KeyPart::ClientAddress {
            trusted_hops: hops,
            ipv6_prefix: 64,
        }]
    }

    #[test]
    fn parts_are_length_prefixed_so_separators_in_values_cannot_merge_keys() {
        let parts = vec![KeyPart::Header("a".into()), KeyPart::Header("b".into())];
        let one = Facts::new().with_header("a", "x|y").with_header("b", "z");
        let two = Facts::new().with_header("a", "x").with_header("b", "y|z");
        assert_ne!(
            build("r", &parts, &one).unwrap(),
            build("r", &parts, &two).unwrap()
        );
    }

    #[test]
    fn the_scope_separates_rules_that_share_a_policy() {
        let parts = vec![KeyPart::Method];
        let facts = Facts::new();
        assert_ne!(
            build("rule_a", &parts, &facts).unwrap(),
            build("rule_b", &parts, &facts).unwrap()
        );
    }

    #[test]
    fn jwt_claims_are_read_by_dotted_path_and_objects_count_as_missing() {
        let facts = Facts::new().with_claims(json!({"sub": "alice", "org": {"id": 7}, "obj": {}}));
        let key = |path: &str| {
            build(
                "",
                &[KeyPart::JwtClaim(
                    path.split('.').map(str::to_string).collect(),
                )],
                &facts,
            )
        };
        assert_eq!(key("sub").unwrap(), "0:5:alice");
        assert_eq!(key("org.id").unwrap(), "0:1:7");
        assert_eq!(key("obj"), Err("jwt_claim"));
        assert_eq!(key("nope"), Err("jwt_claim"));
    }

    #[test]
    fn a_missing_part_is_reported_or_replaced_by_a_marker() {
        let parts = vec![KeyPart::ApiKey, KeyPart::Method];
        let facts = Facts::new();
        assert_eq!(build("", &parts, &facts), Err("api_key"));
        assert_eq!(build_with_fallback("", &parts, &facts), "0:-3:GET");
        // No value can produce the marker: a present value is always length-prefixed.
        let dash = Facts::new().with_api_key("-");
        assert_ne!(build_with_fallback("", &parts, &dash), "0:-3:GET");
    }

    #[test]
    fn long_keys_are_stored_as_a_digest_of_bounded_length() {
        let long = "x".repeat(10_000);
        let facts = Facts::new().with_header("x-tenant", &long);
        let key = build("", &[KeyPart::Header("x-tenant".into())], &facts).unwrap();
        assert!(key.starts_with("sha256:"));
        assert!(key.len() <= MAX_KEY_BYTES);
        let other = Facts::new().with_header("x-tenant", &"y".repeat(10_000));
        assert_ne!(
            key,
            build("", &[KeyPart::Header("x-tenant".into())], &other).unwrap()
        );
    }

    #[test]
    fn without_trusted_hops_the_connection_address_is_used_and_xff_ignored() {
        let facts = Facts::new()
            .with_header("x-forwarded-for", "6.6.6.6")
            .with_source(Some("10.0.0.9:1234"));
        assert_eq!(build("", &addr(0), &facts).unwrap(), "0:8:10.0.0.9");
    }

    #[test]
    fn trusted_hops_pick_the_address_the_nearest_trusted_proxy_saw() {
        // client, what the proxy saw, and the proxy itself (appended by Envoy).
        let facts = Facts::new().with_header("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.1.1.1");
        assert_eq!(build("", &addr(1), &facts).unwrap(), "0:7:1.2.3.4");
        assert_eq!(build("", &addr(2), &facts).unwrap(), "0:7:6.6.6.6");
        // Fewer entries than hops: the request bypassed the proxies; use the connection.
        assert_eq!(build("", &addr(3), &facts).unwrap(), "0:8:10.0.0.1");
        let junk = Facts::new().with_header("x-forwarded-for", "not-an-ip, 10.1.1.1");
        assert_eq!(build("", &addr(1), &junk), Err("client_address"));
    }

    #[test]
    fn ipv6_clients_are_keyed_by_prefix_and_mapped_v4_as_v4() {
        let a = Facts::new().with_source(Some("[2001:db8:1:2:aaaa::1]:443"));
        let b = Facts::new().with_source(Some("[2001:db8:1:2:bbbb::2]:443"));
        assert_eq!(
            build("", &addr(0), &a).unwrap(),
            build("", &addr(0), &b).unwrap()
        );
        let full = vec![KeyPart::ClientAddress {
            trusted_hops: 0,
            ipv6_prefix: 128,
        }];
        assert_ne!(build("", &full, &a).unwrap(), build("", &full, &b).unwrap());
        let mapped = Facts::new().with_source(Some("::ffff:1.2.3.4"));
        assert_eq!(build("", &addr(0), &mapped).unwrap(), "0:7:1.2.3.4");
        let zero = vec![KeyPart::ClientAddress {
            trusted_hops: 0,
            ipv6_prefix: 0,
        }];
        assert_eq!(build("", &zero, &a).unwrap(), "0:2:::");
        assert_eq!(parse_address("1.2.3.4:99999"), None);
        assert_eq!(parse_address("garbage"), None);
    }

    #[test]
    fn a_header_or_forwarded_for_sent_twice_makes_the_key_ambiguous() {
        let tenant = vec![KeyPart::Header("x-tenant".into()), KeyPart::Method];
        let once = Facts::new().with_header("x-tenant", "a");
        assert_eq!(ambiguous_part(&tenant, &once), None);
        let twice = once.clone().with_repeated("x-tenant");
        assert_eq!(ambiguous_part(&tenant, &twice), Some("header"));
        let xff = Facts::new()
            .with_header("x-forwarded-for", "1.2.3.4")
            .with_repeated("x-forwarded-for");
        assert_eq!(ambiguous_part(&addr(0), &xff), None);
        assert_eq!(ambiguous_part(&addr(1), &xff), Some("client_address"));
    }

    #[test]
    fn the_slot_hash_depends_on_the_seed() {
        let a = Seed(1, 2);
        let b = Seed(3, 4);
        assert_eq!(a.hash("alice"), a.hash("alice"));
        assert_ne!(a.hash("alice"), b.hash("alice"));
        assert_eq!(Seed::from_bytes(&a.to_bytes()), a);
    }
}
