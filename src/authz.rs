//! Least-privilege authorization per route rule: what the authenticated caller (a verified JWT, or
//! an API key's configured identity) must hold for the request to go on.
//!
//! A rule's `authz` member is a tree of conditions:
//! - `{"scopes": ["orders:read", "orders:write"]}`: the caller holds *every* listed scope (JWT
//!   `scope`, space-separated, or `scp`, an array or a space-separated string; or the API key's
//!   configured `scopes`);
//! - `{"roles": ["admin", "ops"], "roles_claim": "realm_access.roles"}`: the caller holds *at least
//!   one* listed role (JWT claim at `roles_claim`, default `roles`, an array or a space-separated
//!   string; or the API key's `roles`);
//! - `{"claim": {"name": "tenant", "equals": "acme"}}`, `"one_of": ["a", "b"]` or `"contains":
//!   "x"` (the claim is an array holding the value, or a space-separated string holding the word);
//!   JWT claims only, so an API-key caller never meets a claim condition;
//! - `{"all": [...]}` and `{"any": [...]}` combine conditions.
//!
//! A refusal is 403 with `www-authenticate: Bearer error="insufficient_scope"` and, when scope
//! conditions failed, `scope="<the scopes they ask for>"` (RFC 6750 §3.1).

use crate::apikey::KeyIdentity;
use crate::reader::{Node, Result};
use crate::reply::Reply;
use serde_json::{Map, Value};

/// Deepest accepted nesting of `all` / `any`.
pub const MAX_DEPTH: usize = 16;

/// A compiled `authz` condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Authz {
    All(Vec<Authz>),
    Any(Vec<Authz>),
    /// Every scope listed.
    Scopes(Vec<String>),
    /// At least one role listed; roles read from the claim at `claim` (dotted path, split).
    Roles {
        any_of: Vec<String>,
        claim: Vec<String>,
    },
    Claim {
        path: Vec<String>,
        test: ClaimTest,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClaimTest {
    Equals(Value),
    OneOf(Vec<Value>),
    Contains(Value),
}

/// Who is calling, as authentication established it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    /// The verified JWT payload.
    pub claims: Option<&'a Map<String, Value>>,
    /// The API key's identity.
    pub api_key: Option<&'a KeyIdentity>,
}

/// A refusal, with the scopes to advertise (those of the scope conditions that failed; may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Insufficient {
    pub scopes: Vec<String>,
}

impl Authz {
    /// `Ok` when the caller meets the condition.
    pub fn evaluate(&self, caller: &Caller<'_>) -> std::result::Result<(), Insufficient> {
        let mut scopes = Vec::new();
        if self.holds(caller, &mut scopes) {
            Ok(())
        } else {
            Err(Insufficient { scopes })
        }
    }

    /// Whether the caller meets the condition; the scopes of failed scope conditions are added to
    /// `wanted` (every child is evaluated, so that the advice is complete).
    fn holds(&self, caller: &Caller<'_>, wanted: &mut Vec<String>) -> bool {
        match self {
            Authz::All(children) => {
                // No short cut: every failing child adds the scopes it asks for.
                let mut ok = true;
                for child in children {
                    ok &= child.holds(caller, wanted);
                }
                ok
            }
            Authz::Any(children) => {
                let mut failed = Vec::new();
                let ok = children.iter().any(|c| c.holds(caller, &mut failed));
                if !ok {
                    for s in failed {
                        if !wanted.contains(&s) {
                            wanted.push(s);
                        }
                    }
                }
                ok
            }
            Authz::Scopes(required) => {
                let ok = required.iter().all(|s| has_scope(caller, s));
                if !ok {
                    for s in required {
                        if !wanted.contains(s) {
                            wanted.push(s.clone());
                        }
                    }
                }
                ok
            }
            Authz::Roles { any_of, claim } => any_of.iter().any(|r| has_role(caller, claim, r)),
            Authz::Claim { path, test } => caller
                .claims
                .and_then(|c| lookup(c, path))
                .is_some_and(|value| test.matches(value)),
        }
    }
}

impl ClaimTest {
    fn matches(&self, value: &Value) -> bool {
        match self {
            ClaimTest::Equals(expected) => value == expected,
            ClaimTest::OneOf(options) => options.contains(value),
            ClaimTest::Contains(expected) => match value {
                Value::Array(items) => items.contains(expected),
                Value::String(words) => expected
                    .as_str()
                    .is_some_and(|w| words.split(' ').any(|x| x == w)),
                _ => false,
            },
        }
    }
}

fn lookup<'v>(claims: &'v Map<String, Value>, path: &[String]) -> Option<&'v Value> {
    let (first, rest) = path.split_first()?;
    let mut value = claims.get(first)?;
    for part in rest {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// A list claim: an array of strings, or a string of words separated by spaces (U+0020 only, as
/// RFC 6749 §3.3 separates scopes: `"admin\tread"` is one word, not `admin`).
fn list_contains(value: Option<&Value>, wanted: &str) -> bool {
    match value {
        Some(Value::String(words)) => words.split(' ').any(|w| w == wanted),
        Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(wanted)),
        _ => false,
    }
}

fn has_scope(caller: &Caller<'_>, scope: &str) -> bool {
    caller
        .claims
        .is_some_and(|c| list_contains(c.get("scope"), scope) || list_contains(c.get("scp"), scope))
        || caller
            .api_key
            .is_some_and(|k| k.scopes.iter().any(|s| s == scope))
}

fn has_role(caller: &Caller<'_>, claim: &[String], role: &str) -> bool {
    caller
        .claims
        .is_some_and(|c| list_contains(lookup(c, claim), role))
        || caller
            .api_key
            .is_some_and(|k| k.roles.iter().any(|r| r == role))
}

/// The `www-authenticate` value of a refusal.
pub fn challenge(denial: &Insufficient) -> String {
    if denial.scopes.is_empty() {
        "Bearer error=\"insufficient_scope\"".to_string()
    } else {
        format!(
            "Bearer error=\"insufficient_scope\", scope=\"{}\"",
            denial.scopes.join(" ")
        )
    }
}

/// The 403 reply. `strip_details` sends the status alone.
pub fn reply(denial: &Insufficient, strip_details: bool) -> Reply {
    if strip_details {
        return Reply::status_only(403);
    }
    Reply {
        extra_headers: Vec::new(),
        status: 403,
        body: "Access denied: the caller lacks a scope, role or claim this request requires"
            .to_string(),
        headers: vec![
            ("content-type", "text/plain".to_string()),
            ("www-authenticate", challenge(denial)),
        ],
    }
}

/// Compiles a rule's `authz` member.
pub fn compile(node: &Node<'_>) -> Result<Authz> {
    compile_at(node, 0)
}

const FORMS: [&str; 5] = ["all", "any", "scopes", "roles", "claim"];

fn compile_at(node: &Node<'_>, depth: usize) -> Result<Authz> {
    if depth > MAX_DEPTH {
        return Err(node.error(format!("nested deeper than {MAX_DEPTH} levels")));
    }
    let obj = node.object(&["all", "any", "scopes", "roles", "roles_claim", "claim"])?;
    let present: Vec<(&str, Node<'_>)> = FORMS
        .iter()
        .filter_map(|f| obj.get(f).map(|n| (*f, n)))
        .collect();
    let [(form, n)] = present.as_slice() else {
        return Err(node.error(format!("set exactly one of {}", FORMS.join(", "))));
    };
    if *form != "roles" {
        if let Some(r) = obj.get("roles_claim") {
            return Err(r.error("roles_claim goes with roles"));
        }
    }
    Ok(match *form {
        "all" | "any" => {
            let items = n.array()?;
            if items.is_empty() {
                return Err(n.error("must list at least one condition"));
            }
            let children = items
                .iter()
                .map(|i| compile_at(i, depth + 1))
                .collect::<Result<Vec<_>>>()?;
            if *form == "all" {
                Authz::All(children)
            } else {
                Authz::Any(children)
            }
        }
        "scopes" => {
            let scopes = non_empty_list(n)?;
            if let Some(bad) = scopes.iter().find(|s| !s.bytes().all(is_scope_char)) {
                return Err(n.error(format!(
                    "{bad:?} is not a scope token (RFC 6749: printable ASCII without space, '\"' and '\\\\')"
                )));
            }
            Authz::Scopes(scopes)
        }
        "roles" => Authz::Roles {
            any_of: non_empty_list(n)?,
            claim: match obj.get("roles_claim") {
                Some(c) => claim_path(&c)?,
                None => vec!["roles".to_string()],
            },
        },
        _ => {
            let c = n.object(&["name", "equals", "one_of", "contains"])?;
            let path = claim_path(&c.require("name")?)?;
            let tests: Vec<(&str, Node<'_>)> = ["equals", "one_of", "contains"]
                .iter()
                .filter_map(|t| c.get(t).map(|v| (*t, v)))
                .collect();
            let [(test, v)] = tests.as_slice() else {
                return Err(n.error("set exactly one of equals, one_of, contains"));
            };
            let test = match *test {
                "equals" => ClaimTest::Equals(scalar(v)?),
                "contains" => ClaimTest::Contains(scalar(v)?),
                _ => {
                    let items = v.array()?;
                    if items.is_empty() {
                        return Err(v.error("must list at least one value"));
                    }
                    ClaimTest::OneOf(items.iter().map(scalar).collect::<Result<_>>()?)
                }
            };
            Authz::Claim { path, test }
        }
    })
}

fn is_scope_char(b: u8) -> bool {
    b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b)
}

fn non_empty_list(node: &Node<'_>) -> Result<Vec<String>> {
    let list = node.string_list()?;
    if list.is_empty() {
        return Err(node.error("must list at least one value"));
    }
    Ok(list)
}

fn claim_path(node: &Node<'_>) -> Result<Vec<String>> {
    let name = node.non_empty_str()?;
    let path: Vec<String> = name.split('.').map(str::to_string).collect();
    if path.iter().any(String::is_empty) {
        return Err(node
            .error("claim names are dot-separated non-empty parts, e.g. \"realm_access.roles\""));
    }
    Ok(path)
}

fn scalar(node: &Node<'_>) -> Result<Value> {
    match node.value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(node.value.clone()),
        _ => Err(node.error("expected a string, number or boolean")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::ConfigError;
    use serde_json::json;

    fn compile_value(value: &Value) -> std::result::Result<Authz, ConfigError> {
        compile(&Node::root(value))
    }

    fn authz(doc: Value) -> Authz {
        compile_value(&doc).unwrap()
    }

    fn claims(doc: Value) -> Map<String, Value> {
        doc.as_object().cloned().unwrap()
    }

    fn jwt(c: &Map<String, Value>) -> Caller<'_> {
        Caller {
            claims: Some(c),
            api_key: None,
        }
    }

    #[test]
    fn scopes_are_read_from_scope_and_scp_and_all_are_required() {
        let a = authz(json!({"scopes": ["orders:read", "orders:write"]}));
        let both = claims(json!({"scope": "openid orders:read orders:write"}));
        assert_eq!(a.evaluate(&jwt(&both)), Ok(()));
        let scp = claims(json!({"scp": ["orders:read", "orders:write"]}));
        assert_eq!(a.evaluate(&jwt(&scp)), Ok(()));
        let mixed = claims(json!({"scope": "orders:read", "scp": "orders:write"}));
        assert_eq!(a.evaluate(&jwt(&mixed)), Ok(()));
        let one = claims(json!({"scope": "orders:read"}));
        assert_eq!(
            a.evaluate(&jwt(&one)),
            Err(Insufficient {
                scopes: vec!["orders:read".into(), "orders:write".into()]
            })
        );
        // A scope is a whole word, never a substring.
        let sub = claims(json!({"scope": "orders:read-only orders:writer"}));
        assert!(a.evaluate(&jwt(&sub)).is_err());
    }

    #[test]
    fn scopes_are_separated_by_spaces_only_as_rfc_6749_says() {
        let a = authz(json!({"scopes": ["admin"]}));
        for words in [
            "admin\tread",
            "read\nadmin",
            "admin\u{a0}read",
            "read\radmin",
        ] {
            let c = claims(json!({ "scope": words }));
            assert!(a.evaluate(&jwt(&c)).is_err(), "{words:?}");
        }
        let c = claims(json!({"scope": "read  admin"}));
        assert_eq!(a.evaluate(&jwt(&c)), Ok(()));
        let contains = authz(json!({"claim": {"name": "groups", "contains": "eng"}}));
        let c = claims(json!({"groups": "ops\teng"}));
        assert!(contains.evaluate(&jwt(&c)).is_err());
    }

    #[test]
    fn roles_need_one_of_the_listed_and_follow_the_configured_claim() {
        let a = authz(json!({"roles": ["admin", "ops"], "roles_claim": "realm_access.roles"}));
        let ops = claims(json!({"realm_access": {"roles": ["viewer", "ops"]}}));
        assert_eq!(a.evaluate(&jwt(&ops)), Ok(()));
        let top = claims(json!({"roles": ["admin"]}));
        assert_eq!(a.evaluate(&jwt(&top)), Err(Insufficient::default()));
        let default = authz(json!({"roles": ["admin"]}));
        assert_eq!(default.evaluate(&jwt(&top)), Ok(()));
        let string = claims(json!({"roles": "viewer admin"}));
        assert_eq!(default.evaluate(&jwt(&string)), Ok(()));
    }

    #[test]
    fn claim_conditions_compare_values_exactly() {
        let eq = authz(json!({"claim": {"name": "tenant", "equals": "acme"}}));
        assert!(eq
            .evaluate(&jwt(&claims(json!({"tenant": "acme"}))))
            .is_ok());
        assert!(eq
            .evaluate(&jwt(&claims(json!({"tenant": "acme2"}))))
            .is_err());
        assert!(eq
            .evaluate(&jwt(&claims(json!({"tenant": ["acme"]}))))
            .is_err());
        assert!(eq.evaluate(&jwt(&claims(json!({})))).is_err());
        let one_of = authz(json!({"claim": {"name": "org.tier", "one_of": ["gold", 3]}}));
        assert!(one_of
            .evaluate(&jwt(&claims(json!({"org": {"tier": 3}}))))
            .is_ok());
        assert!(one_of
            .evaluate(&jwt(&claims(json!({"org": {"tier": "silver"}}))))
            .is_err());
        let contains = authz(json!({"claim": {"name": "groups", "contains": "eng"}}));
        assert!(contains
            .evaluate(&jwt(&claims(json!({"groups": ["ops", "eng"]}))))
            .is_ok());
        assert!(contains
            .evaluate(&jwt(&claims(json!({"groups": "ops eng"}))))
            .is_ok());
        assert!(contains
            .evaluate(&jwt(&claims(json!({"groups": "engineering"}))))
            .is_err());
        let flag = authz(json!({"claim": {"name": "email_verified", "equals": true}}));
        assert!(flag
            .evaluate(&jwt(&claims(json!({"email_verified": true}))))
            .is_ok());
        assert!(flag
            .evaluate(&jwt(&claims(json!({"email_verified": "true"}))))
            .is_err());
    }

    #[test]
    fn all_and_any_combine_and_advertise_the_scopes_that_failed() {
        let a = authz(json!({"all": [
            {"scopes": ["orders:read"]},
            {"any": [{"roles": ["admin"]}, {"claim": {"name": "tenant", "equals": "acme"}}]}
        ]}));
        let ok = claims(json!({"scope": "orders:read", "tenant": "acme"}));
        assert!(a.evaluate(&jwt(&ok)).is_ok());
        let admin = claims(json!({"scope": "orders:read", "roles": ["admin"]}));
        assert!(a.evaluate(&jwt(&admin)).is_ok());
        let neither = claims(json!({"scope": "orders:read", "tenant": "other"}));
        assert_eq!(a.evaluate(&jwt(&neither)), Err(Insufficient::default()));
        let no_scope = claims(json!({"tenant": "acme"}));
        assert_eq!(
            a.evaluate(&jwt(&no_scope)),
            Err(Insufficient {
                scopes: vec!["orders:read".into()]
            })
        );
        let any = authz(json!({"any": [{"scopes": ["a"]}, {"scopes": ["b", "a"]}]}));
        assert_eq!(
            any.evaluate(&jwt(&claims(json!({})))),
            Err(Insufficient {
                scopes: vec!["a".into(), "b".into()]
            })
        );
    }

    #[test]
    fn an_api_key_identity_carries_its_configured_scopes_and_roles_but_no_claims() {
        let key = KeyIdentity {
            name: "acme".into(),
            scopes: vec!["orders:read".into()],
            roles: vec!["partner".into()],
        };
        let caller = Caller {
            claims: None,
            api_key: Some(&key),
        };
        assert!(authz(json!({"scopes": ["orders:read"]}))
            .evaluate(&caller)
            .is_ok());
        assert!(authz(json!({"roles": ["partner"]}))
            .evaluate(&caller)
            .is_ok());
        assert!(authz(json!({"scopes": ["orders:write"]}))
            .evaluate(&caller)
            .is_err());
        assert!(authz(json!({"claim": {"name": "sub", "equals": "acme"}}))
            .evaluate(&caller)
            .is_err());
        assert!(authz(json!({"scopes": ["x"]}))
            .evaluate(&Caller::default())
            .is_err());
    }

    #[test]
    fn the_refusal_is_403_with_an_insufficient_scope_challenge() {
        let d = Insufficient {
            scopes: vec!["orders:read".into(), "orders:write".into()],
        };
        let r = reply(&d, false);
        assert_eq!(r.status, 403);
        assert!(r.headers.contains(&(
            "www-authenticate",
            "Bearer error=\"insufficient_scope\", scope=\"orders:read orders:write\"".to_string()
        )));
        assert_eq!(
            challenge(&Insufficient::default()),
            "Bearer error=\"insufficient_scope\""
        );
        let r = reply(&d, true);
        assert_eq!((r.status, r.body.as_str(), r.headers.len()), (403, "", 0));
    }

    #[test]
    fn bad_conditions_are_refused_with_their_path() {
        let path = |doc: Value| compile_value(&doc).unwrap_err().path;
        assert_eq!(path(json!({"all": [{"scopes": []}]})), "all[0].scopes");
        assert_eq!(path(json!({"any": []})), "any");
        assert_eq!(path(json!({"scopes": ["a"], "roles": ["b"]})), "$");
        assert_eq!(path(json!({})), "$");
        assert_eq!(path(json!({"scope": ["a"]})), "scope");
        assert_eq!(path(json!({"scopes": ["has space"]})), "scopes");
        assert_eq!(path(json!({"scopes": ["q\"uote"]})), "scopes");
        assert_eq!(
            path(json!({"scopes": ["a"], "roles_claim": "r"})),
            "roles_claim"
        );
        assert_eq!(
            path(json!({"claim": {"name": "a..b", "equals": 1}})),
            "claim.name"
        );
        assert_eq!(
            path(json!({"claim": {"name": "a", "equals": 1, "contains": 2}})),
            "claim"
        );
        assert_eq!(
            path(json!({"claim": {"name": "a", "equals": {"x": 1}}})),
            "claim.equals"
        );
        assert_eq!(
            path(json!({"claim": {"name": "a", "one_of": [1, [2]]}})),
            "claim.one_of[1]"
        );
        let mut deep = json!({"scopes": ["a"]});
        for _ in 0..=MAX_DEPTH {
            deep = json!({"all": [deep]});
        }
        assert!(compile_value(&deep).is_err());
    }
}
