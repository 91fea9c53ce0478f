//! What the client is told: the IETF draft headers (`draft-ietf-httpapi-ratelimit-headers`:
//! `RateLimit-Policy: "name";q=100;w=60` and `RateLimit: "name";r=50;t=30`), or the older
//! `x-ratelimit-limit` / `-remaining` / `-reset` that Envoy's rate-limit filter and many peers emit,
//! and the 429 reply with `retry-after`.
//!
//! With GCRA, `t` and `x-ratelimit-reset` are the seconds until the bucket is full again, and
//! `retry-after` the seconds until one more request may pass (rounded up, at least 1).

use super::{HeaderStyle, PolicyState, RateLimits, Refusal};
use crate::reply::Reply;

/// Headers for the given policy states (refused ones when `refused`, else the allowed ones that
/// show headers): draft lists every draft-style policy, strictest first; `x-ratelimit-*` describes
/// the strictest x-style policy only; a refusal adds `retry-after`.
pub(crate) fn for_states(
    limits: &RateLimits,
    states: &[PolicyState],
    refused: bool,
) -> Vec<(&'static str, String)> {
    let mut ordered: Vec<&PolicyState> = states.iter().collect();
    // One state per policy that applied (a handful): an insertion sort, no copy of the standard sort.
    crate::sorting::small_sort_by(&mut ordered, |a, b| {
        if refused {
            b.retry_after_secs.cmp(&a.retry_after_secs)
        } else {
            a.remaining
                .cmp(&b.remaining)
                .then(b.reset_secs.cmp(&a.reset_secs))
        }
    });
    let mut policy_items = Vec::new();
    let mut limit_items = Vec::new();
    let mut headers = Vec::new();
    let mut x_done = false;
    for state in ordered {
        let Some(policy) = limits.policies.get(state.policy) else {
            continue;
        };
        let (quota, window) = match (state.quota, policy.tier) {
            (Some(q), _) => q,
            // A service-only policy has no local quota to show: the service did not say.
            (None, super::Tier::Service) => continue,
            (None, _) => policy.quota_window(),
        };
        match policy.headers {
            HeaderStyle::Draft => {
                policy_items.push(format!("\"{}\";q={quota};w={window}", policy.name));
                limit_items.push(format!(
                    "\"{}\";r={};t={}",
                    policy.name, state.remaining, state.reset_secs
                ));
            }
            HeaderStyle::XRateLimit if !x_done => {
                x_done = true;
                headers.push(("x-ratelimit-limit", format!("{quota}, {quota};w={window}")));
                headers.push(("x-ratelimit-remaining", state.remaining.to_string()));
                headers.push(("x-ratelimit-reset", state.reset_secs.to_string()));
            }
            HeaderStyle::XRateLimit | HeaderStyle::None => {}
        }
    }
    if !policy_items.is_empty() {
        headers.push(("ratelimit-policy", policy_items.join(", ")));
        headers.push(("ratelimit", limit_items.join(", ")));
    }
    if refused {
        let retry = states
            .iter()
            .map(|s| s.retry_after_secs)
            .max()
            .unwrap_or(1)
            .max(1);
        headers.push(("retry-after", retry.to_string()));
    }
    headers
}

/// The reply for a refusal. `headers` are the decision's headers; `strip_details` leaves the body
/// empty (the rate-limit headers stay: they tell the client when to come back, nothing more).
pub fn reply(
    refusal: &Refusal,
    limits: &RateLimits,
    headers: &[(&'static str, String)],
    strip_details: bool,
) -> Reply {
    let (status, body) = match refusal {
        Refusal::Limited { .. } => (429, "Too Many Requests: rate limit exceeded".to_string()),
        Refusal::MissingKey { policy, part } => {
            let name = limits.policies.get(*policy).map_or("", |p| p.name.as_str());
            (
                403,
                format!("Access denied: rate-limit policy {name:?} needs the request's {part}"),
            )
        }
        Refusal::AmbiguousKey { .. } => (400, "Bad request: ambiguous_rate_limit_key".to_string()),
        Refusal::ServiceUnavailable { .. } => (
            503,
            "Service Unavailable: the rate limit service gave no decision".to_string(),
        ),
    };
    let mut all = Vec::with_capacity(headers.len() + 1);
    if !strip_details {
        all.push(("content-type", "text/plain".to_string()));
    }
    all.extend(headers.iter().cloned());
    Reply {
        extra_headers: Vec::new(),
        status,
        body: if strip_details { String::new() } else { body },
        headers: all,
    }
}
