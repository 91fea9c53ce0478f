//! Why apiguard refuses a request ([`Denial`]) and the exact reply each refusal gets
//! ([`for_denial`]): status, body and headers, in one place. The list is documented in
//! `docs/responses.md`. Features build their own parts of a reply (`authz::reply`, ...); this module
//! composes them, so that features never depend on it.

use crate::apikey::{self, ApiKeyFailure};
use crate::authz::{self, Insufficient};
use crate::config::Policy;
use crate::jwt::Status;
use crate::ratelimit::{self, Refusal};
use crate::reply::Reply;
use crate::schema::Rejection;

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The rule's JWT requirement is not met.
    Jwt(Status),
    /// No rule matched and `on_no_match` is `deny`.
    NoRuleMatched,
    /// The rule's API key set (index) does not accept the request's key.
    ApiKey { set: usize, failure: ApiKeyFailure },
    /// The caller lacks a scope, role or claim the rule's `authz` requires.
    Authz(Insufficient),
    /// Over a rate limit, or missing a key part a limit needs.
    RateLimited(Refusal),
    /// The request does not match its schema or OpenAPI operation.
    Schema(Rejection),
    /// A body holds sensitive data under a `block` redaction policy, or cannot be inspected.
    SensitiveData { response: bool },
    /// The request cannot be judged safely as sent (an ambiguous path, bytes that are not UTF-8 in
    /// something the filter must read, a credential sent twice, a method override). The reason is a
    /// fixed, value-free name such as `ambiguous_path`.
    BadRequest(&'static str),
}

impl Denial {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Denial::Jwt(status) => status.metric_name(),
            Denial::NoRuleMatched => "no_rule_match",
            Denial::ApiKey { failure, .. } => failure.metric_name(),
            Denial::Authz(_) => "insufficient_privilege",
            Denial::RateLimited(Refusal::Limited { .. }) => "rate_limited",
            Denial::RateLimited(Refusal::MissingKey { .. }) => "rate_limit_key_missing",
            Denial::RateLimited(Refusal::AmbiguousKey { .. }) => "ambiguous_rate_limit_key",
            Denial::RateLimited(Refusal::ServiceUnavailable { .. }) => {
                "rate_limit_service_unavailable"
            }
            Denial::Schema(rejection) => rejection.reason(),
            Denial::SensitiveData { .. } => "sensitive_data",
            Denial::BadRequest(reason) => reason,
        }
    }
}

/// The reply for a denial. `original_uri` is `scheme://host/path` (no query string, so that a token
/// passed as a query parameter is never echoed back), as Envoy's `jwt_authn` puts it in the realm.
/// `rate_headers` are the rate limiter's headers for this request.
pub fn for_denial(
    denial: &Denial,
    policy: &Policy,
    original_uri: &str,
    rate_headers: &[(&'static str, String)],
) -> Reply {
    let strip_details = policy.strip_failure_response;
    match denial {
        Denial::Jwt(status) => jwt_failure(*status, original_uri, strip_details),
        Denial::NoRuleMatched => Reply {
            extra_headers: Vec::new(),
            status: 403,
            body: if strip_details {
                String::new()
            } else {
                "Access denied: no apiguard rule matches this request".into()
            },
            headers: text_plain(strip_details),
        },
        Denial::ApiKey { set, failure } => match policy.api_keys.sets.get(*set) {
            Some(set) => apikey::reply(*failure, set, strip_details),
            None => Reply {
                extra_headers: Vec::new(),
                status: 401,
                body: failure.message().to_string(),
                headers: text_plain(strip_details),
            },
        },
        Denial::Authz(insufficient) => authz::reply(insufficient, strip_details),
        Denial::RateLimited(refusal) => {
            ratelimit::headers::reply(refusal, &policy.rate_limits, rate_headers, strip_details)
        }
        Denial::Schema(rejection) => {
            let mut headers = rejection.headers();
            if strip_details {
                headers.retain(|(name, _)| *name == "allow");
            }
            let body = if strip_details {
                String::new()
            } else {
                rejection.problem_body()
            };
            Reply {
                extra_headers: Vec::new(),
                status: rejection.status(),
                body,
                headers,
            }
        }
        Denial::SensitiveData { response } => sensitive_data(*response, strip_details),
        Denial::BadRequest(reason) => Reply {
            extra_headers: Vec::new(),
            status: 400,
            body: if strip_details {
                String::new()
            } else {
                format!("Bad request: {reason}")
            },
            headers: text_plain(strip_details),
        },
    }
}

/// As Envoy's `jwt_authn`: 403 for a disallowed audience, 401 otherwise; the status message as body;
/// `www-authenticate: Bearer realm="<uri>"`, with `, error="invalid_token"` unless the token is missing.
/// `strip_details` sends the status code alone (Envoy's `strip_failure_response`).
fn jwt_failure(status: Status, original_uri: &str, strip_details: bool) -> Reply {
    let code = if status == Status::JwtAudienceNotAllowed {
        403
    } else {
        401
    };
    if strip_details {
        return Reply::status_only(code);
    }
    let mut challenge = format!("Bearer realm=\"{}\"", quote_safe(original_uri));
    if status != Status::JwtMissed {
        challenge.push_str(", error=\"invalid_token\"");
    }
    let mut headers = text_plain(false);
    headers.push(("www-authenticate", challenge));
    Reply {
        extra_headers: Vec::new(),
        status: code,
        body: status.message().to_string(),
        headers,
    }
}

/// A body withheld by a `block` redaction policy: 502 for a response (the upstream's answer is
/// not passed on), 403 for a request.
fn sensitive_data(response: bool, strip_details: bool) -> Reply {
    let (status, body) = if response {
        (
            502,
            r#"{"error":"response blocked: it contains sensitive data"}"#,
        )
    } else {
        (
            403,
            r#"{"error":"request blocked: it contains sensitive data"}"#,
        )
    };
    if strip_details {
        return Reply::status_only(status);
    }
    Reply {
        extra_headers: Vec::new(),
        status,
        body: body.to_string(),
        headers: vec![("content-type", "application/json".to_string())],
    }
}

/// The body that replaces a blocked response when its headers have already gone to the client.
pub fn sensitive_data_body() -> &'static [u8] {
    br#"{"error":"response blocked: it contains sensitive data"}"#
}

fn text_plain(empty: bool) -> Vec<(&'static str, String)> {
    if empty {
        Vec::new()
    } else {
        vec![("content-type", "text/plain".to_string())]
    }
}

/// A quoted-string must not contain `"` or `\` unescaped, nor control characters.
fn quote_safe(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(strip: bool) -> Policy {
        Policy::from_value(&serde_json::json!({"strip_failure_response": strip})).unwrap()
    }

    fn reply_for(denial: Denial, uri: &str, strip: bool) -> Reply {
        for_denial(&denial, &policy(strip), uri, &[])
    }

    #[test]
    fn a_missing_token_gets_401_with_a_bearer_challenge_without_error() {
        let r = reply_for(
            Denial::Jwt(Status::JwtMissed),
            "http://api.example/orders",
            false,
        );
        assert_eq!(r.status, 401);
        assert_eq!(r.body, "Jwt is missing");
        assert!(r.headers.contains(&(
            "www-authenticate",
            "Bearer realm=\"http://api.example/orders\"".to_string()
        )));
    }

    #[test]
    fn a_bad_token_gets_invalid_token_and_a_wrong_audience_gets_403() {
        let r = reply_for(Denial::Jwt(Status::JwtExpired), "http://h/p", false);
        assert_eq!((r.status, r.body.as_str()), (401, "Jwt is expired"));
        assert!(r.headers.contains(&(
            "www-authenticate",
            "Bearer realm=\"http://h/p\", error=\"invalid_token\"".to_string()
        )));
        let r = reply_for(
            Denial::Jwt(Status::JwtAudienceNotAllowed),
            "http://h/p",
            false,
        );
        assert_eq!(
            (r.status, r.body.as_str()),
            (403, "Audiences in Jwt are not allowed")
        );
    }

    #[test]
    fn stripped_failures_say_nothing_but_the_status() {
        let r = reply_for(Denial::Jwt(Status::JwtVerificationFail), "http://h/p", true);
        assert_eq!(
            r,
            Reply {
                extra_headers: Vec::new(),
                status: 401,
                body: String::new(),
                headers: Vec::new()
            }
        );
    }

    #[test]
    fn the_realm_cannot_be_broken_out_of_by_a_crafted_host() {
        let r = reply_for(
            Denial::Jwt(Status::JwtMissed),
            "http://h\"x\\y\r\n/p",
            false,
        );
        assert!(r.headers.contains(&(
            "www-authenticate",
            "Bearer realm=\"http://hxy/p\"".to_string()
        )));
    }
}
