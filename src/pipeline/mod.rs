//! One request's verdict: canonical path ([`crate::canonical`]) → route → authentication (JWT, API
//! key) → authorization → rate limit → schema (headers now, the body once it has arrived:
//! [`check_body`]). A refusal at one stage skips the later ones. Pure: the request is read through
//! [`RequestView`], per-worker state comes in a [`WorkerEnv`], and the verdict says what to change or
//! send; the host layer carries it out and turns [`Event`]s into metrics.

use crate::apikey::{ApiKeyFailure, KeyIdentity};
use crate::authz::Caller;
use crate::canonical::{canonicalize, Canonical};
use crate::config::{AmbiguousPaths, KeySource, Mode, NoMatch, Policy, Provider, Rule};
use crate::jwt::cache::{TokenCache, VerifiedToken};
use crate::jwt::extract::{extract, strip_params, FoundToken, TokenLocation};
use crate::jwt::keys::KeySet;
use crate::jwt::{jws, verify, Status};
use crate::ratelimit::service::{DescribeFailure, ServiceCall};
use crate::ratelimit::{LimitEvent, RequestFacts, Seed, Tier};
use crate::refusal::Denial;
pub use crate::request::RequestView;
use crate::route::path_only;
use crate::schema::{BodyCheck, HeadOutcome, RequestHead};
use crate::store::SharedStore;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::sync::Arc;

/// Keys for providers whose keys are fetched remotely; local keys come from the policy itself.
pub trait KeyLookup {
    /// The provider's keys and their generation, or `None` while none have been fetched.
    fn remote_keys(&mut self, provider: usize) -> Option<(Arc<KeySet>, u64)>;
}

/// What a worker lends the pipeline for one request.
pub struct WorkerEnv<'a> {
    pub keys: &'a mut dyn KeyLookup,
    pub cache: &'a mut TokenCache,
    /// Shared data, for the rate limiter.
    pub store: &'a dyn SharedStore,
    /// The rate limiter's slot seed (`None` when the policy has no rate limits).
    pub seed: Option<&'a Seed>,
    pub now_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderChange {
    Remove(String),
    Set(String, String),
}

/// Something to count (and sometimes log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    JwtAllowed,
    JwtDenied(Status),
    CacheHit,
    CacheMiss,
    NoRuleMatch,
    /// A refusal that report mode let through.
    ReportOnlyDenied,
    /// A token named a `kid` that the provider's keys lack.
    UnknownKid {
        provider: usize,
    },
    ApiKeyAllowed,
    ApiKeyDenied(ApiKeyFailure),
    AuthzAllowed,
    AuthzDenied,
    /// A rate-limit policy's event (policy index).
    RateLimit(usize, LimitEvent),
    /// A request passed its schema checks (headers, and the body when there is one).
    SchemaValidated,
    /// A request failed a schema check (the rejection's reason).
    SchemaRejected(&'static str),
    /// An undeclared operation let through under `"undeclared": "report"`.
    SchemaUndeclared,
    /// The path stays ambiguous after canonicalisation (`%2F`, `%2e%2e`, ...).
    PathAmbiguous,
    /// The path carries matrix parameters (`;jsessionid=...`).
    PathMatrixParameters,
    /// A method-override header on a guarded rule that does not allow it (refused).
    MethodOverride,
}

/// Headers that ask an upstream framework to treat the request as another method.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Index of the matching rule.
    pub rule: Option<usize>,
    /// The refusal, if the policy refuses the request; `enforced` says whether it is sent.
    pub denial: Option<Denial>,
    pub enforced: bool,
    /// Request header changes, applied when the request goes on.
    pub headers: Vec<HeaderChange>,
    /// Headers for the client: on the refusal, or added to the upstream's response (rate-limit headers).
    pub response_headers: Vec<(&'static str, String)>,
    /// The body must be buffered and checked with [`check_body`] (schema index, what to check).
    pub body_check: Option<(usize, BodyCheck)>,
    pub events: Vec<Event>,
    /// The call to the rate limit service the request waits for (when nothing refused it first).
    pub service_call: Option<ServiceCall>,
}

impl Verdict {
    /// `true` when the request must be answered by the filter instead of going upstream.
    pub fn refuses(&self) -> bool {
        self.enforced && self.denial.is_some()
    }
}

/// Decides one request.
pub fn decide(policy: &Policy, request: &dyn RequestView, env: &mut WorkerEnv<'_>) -> Verdict {
    let mut verdict = Verdict {
        rule: None,
        denial: None,
        enforced: policy.mode == Mode::Enforce,
        headers: remove_owned_headers(policy, request),
        response_headers: Vec::new(),
        body_check: None,
        events: Vec::new(),
        service_call: None,
    };
    if let Err(denial) = run_stages(policy, request, env, &mut verdict) {
        verdict.denial = Some(denial);
    }
    finish(verdict)
}

/// The stages in the order of `docs/architecture.md` (2-9): each either lets the request go on or
/// refuses it, and a refusal skips the later ones.
fn run_stages(
    policy: &Policy,
    request: &dyn RequestView,
    env: &mut WorkerEnv<'_>,
    verdict: &mut Verdict,
) -> Result<(), Denial> {
    let at = Judged {
        policy,
        request,
        canonical: canonicalize(request.path()),
    };
    check_canonical_path(&at, verdict)?;
    let Some(rule) = route(&at, verdict)? else {
        return Ok(());
    };
    check_guarded_request(&at, rule, verdict)?;
    let claims = authenticate_jwt_stage(&at, rule, env, verdict)?;
    let caller = Caller {
        claims: claims.as_ref().map(|t| &t.payload),
        api_key: authenticate_api_key(&at, rule, verdict)?,
    };
    authorize(rule, &caller, verdict)?;
    rate_limit(&at, rule, env, &caller, verdict)?;
    check_schema_head(&at, rule, verdict)
}

/// What every stage reads: the policy, the request, and its canonical path.
struct Judged<'a> {
    policy: &'a Policy,
    request: &'a dyn RequestView,
    canonical: Canonical<'a>,
}

/// Headers the filter owns never come from the client, whatever happens next. (Only those present:
/// a removal is a host call, and honest clients send none of them.)
fn remove_owned_headers(policy: &Policy, request: &dyn RequestView) -> Vec<HeaderChange> {
    policy
        .owned_headers
        .iter()
        .filter(|name| request.header(name).is_some())
        .cloned()
        .map(HeaderChange::Remove)
        .collect()
}

/// Rules, schemas and discovery all judge the canonical path; one that stays ambiguous cannot be
/// routed reliably (the upstream may read it as another resource), so it is refused before routing.
fn check_canonical_path(at: &Judged<'_>, verdict: &mut Verdict) -> Result<(), Denial> {
    if at.canonical.is_ambiguous() {
        verdict.events.push(Event::PathAmbiguous);
        if at.policy.ambiguous_paths == AmbiguousPaths::Reject {
            return Err(Denial::BadRequest("ambiguous_path"));
        }
    }
    if at.canonical.matrix {
        verdict.events.push(Event::PathMatrixParameters);
    }
    Ok(())
}

/// The first matching rule, whose mode then applies; `Ok(None)` when none matches and the policy
/// lets such requests through.
fn route<'p>(at: &Judged<'p>, verdict: &mut Verdict) -> Result<Option<&'p Rule>, Denial> {
    let path = at.canonical.path.as_ref();
    let Some((rule_index, rule)) =
        at.policy
            .route(at.request.method(), path, at.request.authority())
    else {
        verdict.events.push(Event::NoRuleMatch);
        return match at.policy.on_no_match {
            NoMatch::Deny => Err(Denial::NoRuleMatched),
            NoMatch::Allow => Ok(None),
        };
    };
    verdict.rule = Some(rule_index);
    verdict.enforced = rule.mode(at.policy) == Mode::Enforce;
    Ok(Some(rule))
}

/// On a guarded rule, what would let the upstream run another operation than the one judged.
fn check_guarded_request(
    at: &Judged<'_>,
    rule: &Rule,
    verdict: &mut Verdict,
) -> Result<(), Denial> {
    if !rule.guarded() {
        return Ok(());
    }
    // Matrix parameters: some servers route `/api;x/y` as `/api/y`, others not at all.
    if at.canonical.matrix && at.policy.ambiguous_paths == AmbiguousPaths::Reject {
        return Err(Denial::BadRequest("matrix_parameters"));
    }
    // A method override would make the upstream run another operation than the one judged.
    if !rule.allow_method_override
        && METHOD_OVERRIDE_HEADERS
            .iter()
            .any(|name| at.request.header(name).is_some())
    {
        verdict.events.push(Event::MethodOverride);
        return Err(Denial::BadRequest("method_override"));
    }
    Ok(())
}

/// Authentication, first part: the rule's JWT requirement; the verified token's claims.
fn authenticate_jwt_stage(
    at: &Judged<'_>,
    rule: &Rule,
    env: &mut WorkerEnv<'_>,
    verdict: &mut Verdict,
) -> Result<Option<Arc<VerifiedToken>>, Denial> {
    match &rule.jwt {
        None => Ok(None),
        Some(requirement) => {
            authenticate_jwt(at.policy, requirement, at.request, env, verdict).map_err(Denial::Jwt)
        }
    }
}

/// Authentication, second part: the rule's API key set. A key found is removed from what goes
/// upstream (header, or query parameter).
fn authenticate_api_key<'p>(
    at: &Judged<'p>,
    rule: &Rule,
    verdict: &mut Verdict,
) -> Result<Option<&'p KeyIdentity>, Denial> {
    let Some((index, set)) = rule
        .api_key
        .and_then(|i| at.policy.api_keys.sets.get(i).map(|s| (i, s)))
    else {
        return Ok(None);
    };
    match set.authenticate(at.request) {
        Ok(identity) => {
            verdict.events.push(Event::ApiKeyAllowed);
            if let Some(header) = set.header_to_remove() {
                verdict
                    .headers
                    .push(HeaderChange::Remove(header.to_string()));
            }
            if let Some(param) = set.param_to_strip() {
                strip_path_param(&mut verdict.headers, at.request.path(), param);
            }
            Ok(Some(identity))
        }
        Err(failure) => {
            verdict.events.push(Event::ApiKeyDenied(failure));
            Err(Denial::ApiKey {
                set: index,
                failure,
            })
        }
    }
}

/// Authorization: scopes, roles and claims over what authentication established.
fn authorize(rule: &Rule, caller: &Caller<'_>, verdict: &mut Verdict) -> Result<(), Denial> {
    let Some(authz) = &rule.authz else {
        return Ok(());
    };
    match authz.evaluate(caller) {
        Ok(()) => {
            verdict.events.push(Event::AuthzAllowed);
            Ok(())
        }
        Err(insufficient) => {
            verdict.events.push(Event::AuthzDenied);
            Err(Denial::Authz(insufficient))
        }
    }
}

/// Rate limits: only requests that passed everything else spend budget.
fn rate_limit(
    at: &Judged<'_>,
    rule: &Rule,
    env: &mut WorkerEnv<'_>,
    caller: &Caller<'_>,
    verdict: &mut Verdict,
) -> Result<(), Denial> {
    if rule.rate_limits.is_empty() {
        return Ok(());
    }
    let method = at.request.method();
    let facts = Facts {
        request: at.request,
        // One budget per method whatever its case (`get` over HTTP/2 is `GET`).
        method: if method.bytes().any(|b| b.is_ascii_lowercase()) {
            Cow::Owned(method.to_ascii_uppercase())
        } else {
            Cow::Borrowed(method)
        },
        rule,
        claims: caller.claims,
        api_key: caller.api_key,
    };
    // Local decisions need the shared slot seed (set in every worker's `on_configure`).
    let decision = match env.seed {
        Some(seed) => at.policy.rate_limits.check(
            &rule.rate_limits,
            &rule.name,
            &facts,
            env.store,
            seed,
            env.now_ms,
        ),
        None => crate::ratelimit::Decision::default(),
    };
    verdict.events.extend(
        decision
            .events
            .iter()
            .map(|(p, e)| Event::RateLimit(*p, *e)),
    );
    verdict.response_headers = decision.headers;
    match decision.refusal {
        None => {}
        Some(crate::ratelimit::Refusal::AmbiguousKey { .. }) => {
            return Err(Denial::BadRequest("ambiguous_rate_limit_key"))
        }
        Some(other) => return Err(Denial::RateLimited(other)),
    }
    // One call for every service-backed policy of the rule (and the local shares that are spent).
    let limits = &at.policy.rate_limits;
    let to_service: Vec<usize> = rule
        .rate_limits
        .iter()
        .copied()
        .filter(|&p| {
            decision.escalated.iter().any(|(e, _)| *e == p)
                || limits
                    .policies
                    .get(p)
                    .is_some_and(|x| x.tier == Tier::Service)
        })
        .collect();
    if to_service.is_empty() {
        return Ok(());
    }
    match limits.service_call(&to_service, &facts) {
        Ok(call) => {
            verdict.service_call = call.map(|call| ServiceCall {
                local_keys: decision.escalated,
                ..call
            });
            Ok(())
        }
        Err(DescribeFailure::Ambiguous { policy, .. }) => {
            verdict
                .events
                .push(Event::RateLimit(policy, LimitEvent::AmbiguousKey));
            Err(Denial::BadRequest("ambiguous_rate_limit_key"))
        }
        Err(DescribeFailure::Missing { policy, part }) => {
            verdict
                .events
                .push(Event::RateLimit(policy, LimitEvent::MissingKey));
            Err(Denial::RateLimited(crate::ratelimit::Refusal::MissingKey {
                policy,
                part,
            }))
        }
    }
}

/// Schema: what the headers tell (operation, parameters, content type, declared length); the body,
/// if it must be checked, is checked later by [`check_body`].
fn check_schema_head(at: &Judged<'_>, rule: &Rule, verdict: &mut Verdict) -> Result<(), Denial> {
    let Some((index, schema)) = rule
        .schema
        .and_then(|i| at.policy.schemas.policies.get(i).map(|s| (i, s)))
    else {
        return Ok(());
    };
    let path_and_query = at.canonical.with_query();
    let head = Head {
        request: at.request,
        path: &path_and_query,
    };
    match schema.check_head(&head, at.request.has_body()) {
        HeadOutcome::Pass => verdict.events.push(Event::SchemaValidated),
        HeadOutcome::NeedBody(check) => verdict.body_check = Some((index, check)),
        HeadOutcome::Undeclared(_) => verdict.events.push(Event::SchemaUndeclared),
        HeadOutcome::Reject(rejection) => {
            verdict
                .events
                .push(Event::SchemaRejected(rejection.reason()));
            return Err(Denial::Schema(rejection));
        }
    }
    Ok(())
}

/// Removes a query parameter from the `:path` the request will go upstream with: the one an earlier
/// stage already set, else the request's own.
fn strip_path_param(headers: &mut Vec<HeaderChange>, path: &str, param: &str) {
    let current = headers.iter_mut().find_map(|h| match h {
        HeaderChange::Set(name, value) if name == ":path" => Some(value),
        _ => None,
    });
    match current {
        Some(value) => {
            if let Some(stripped) = strip_params(value, &[param]) {
                *value = stripped;
            }
        }
        None => {
            if let Some(stripped) = strip_params(path, &[param]) {
                headers.push(HeaderChange::Set(":path".into(), stripped));
            }
        }
    }
}

/// Checks a buffered request body against the schema [`decide`] selected. `Err` carries the refusal
/// (the caller applies the rule's mode); the event says what to count.
pub fn check_body(
    policy: &Policy,
    schema: usize,
    check: BodyCheck,
    body: &[u8],
) -> (Event, Option<Denial>) {
    let Some(schema) = policy.schemas.policies.get(schema) else {
        return (Event::SchemaValidated, None);
    };
    if body.len() > schema.limits.max_body_bytes {
        let rejection = schema.too_large();
        return (
            Event::SchemaRejected(rejection.reason()),
            Some(Denial::Schema(rejection)),
        );
    }
    match schema.check_body(check, body) {
        Ok(()) => (Event::SchemaValidated, None),
        Err(rejection) => (
            Event::SchemaRejected(rejection.reason()),
            Some(Denial::Schema(rejection)),
        ),
    }
}

/// The most body bytes the schema lets [`check_body`] see; more is refused while buffering.
pub fn body_limit(policy: &Policy, schema: usize) -> usize {
    policy
        .schemas
        .policies
        .get(schema)
        .map_or(0, |s| s.limits.max_body_bytes)
}

/// The schema's view of the request: the canonical path (and the query string as sent).
struct Head<'a> {
    request: &'a dyn RequestView,
    path: &'a str,
}

impl RequestHead for Head<'_> {
    fn method(&self) -> &str {
        self.request.method()
    }
    fn path(&self) -> &str {
        self.path
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.request.header(name)
    }
}

fn finish(mut verdict: Verdict) -> Verdict {
    if verdict.denial.is_some() && !verdict.enforced {
        verdict.events.push(Event::ReportOnlyDenied);
    }
    verdict
}

/// The rate limiter's view of the request.
struct Facts<'a> {
    request: &'a dyn RequestView,
    /// The method, upper-cased.
    method: Cow<'a, str>,
    rule: &'a Rule,
    claims: Option<&'a Map<String, Value>>,
    api_key: Option<&'a KeyIdentity>,
}

impl RequestFacts for Facts<'_> {
    fn claims(&self) -> Option<&Map<String, Value>> {
        self.claims
    }
    fn api_key_name(&self) -> Option<&str> {
        self.api_key.map(|k| k.name.as_str())
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.request.header(name)
    }
    fn header_count(&self, name: &str) -> usize {
        self.request.header_count(name)
    }
    fn header_is_utf8(&self, name: &str) -> bool {
        self.request.header_is_utf8(name)
    }
    fn source_address(&self) -> Option<&str> {
        self.request.source_address()
    }
    fn path_template(&self) -> &str {
        &self.rule.path_label
    }
    fn method(&self) -> &str {
        &self.method
    }
}

/// Evaluates a rule's JWT requirement; on success, the claims of the first provider (in configuration
/// order) whose token verified, and the header changes of every such provider.
///
/// Every location the requirement can consult is read first: a credential that could be read two ways
/// (see [`extract`]) refuses the request whatever the requirement, `allow_missing_or_failed` included.
fn authenticate_jwt(
    policy: &Policy,
    requirement: &crate::jwt::requirement::Requirement,
    request: &dyn RequestView,
    env: &mut WorkerEnv<'_>,
    verdict: &mut Verdict,
) -> Result<Option<Arc<VerifiedToken>>, Status> {
    let mut consulted = Vec::new();
    requirement.providers(policy.providers.len(), &mut consulted);
    let mut found: Vec<Option<Vec<FoundToken<'_>>>> = vec![None; policy.providers.len()];
    for p in consulted {
        let (Some(provider), Some(slot)) = (policy.providers.get(p), found.get_mut(p)) else {
            continue;
        };
        if slot.is_none() {
            match extract(&provider.locations, request) {
                Ok(tokens) => *slot = Some(tokens),
                Err(status) => {
                    verdict.events.push(Event::JwtDenied(status));
                    return Err(status);
                }
            }
        }
    }
    let mut checks: Vec<Option<ProviderCheck>> = vec![None; policy.providers.len()];
    let events = &mut verdict.events;
    let status = requirement.evaluate(
        &mut |p| {
            if let Some(done) = checks.get(p).and_then(|c| c.as_ref()) {
                return done.status;
            }
            let tokens = found.get(p).and_then(Option::as_deref).unwrap_or(&[]);
            let check = match policy.providers.get(p) {
                Some(provider) => check_provider(p, provider, tokens, env, events),
                None => ProviderCheck {
                    status: Status::JwtMissed,
                    verified: None,
                    locations: Vec::new(),
                },
            };
            let status = check.status;
            if let Some(slot) = checks.get_mut(p) {
                *slot = Some(check);
            }
            status
        },
        policy.providers.len(),
    );
    if status != Status::Ok {
        verdict.events.push(Event::JwtDenied(status));
        return Err(status);
    }
    verdict.events.push(Event::JwtAllowed);
    let mut first = None;
    let mut strip: Vec<&str> = Vec::new();
    for (provider, check) in policy.providers.iter().zip(&checks) {
        if let Some(ProviderCheck {
            status: Status::Ok,
            verified: Some(token),
            locations,
        }) = check
        {
            forward_headers(provider, token, locations, &mut verdict.headers, &mut strip);
            first.get_or_insert_with(|| Arc::clone(token));
        }
    }
    if let Some(path) = strip_params(request.path(), &strip) {
        verdict
            .headers
            .push(HeaderChange::Set(":path".into(), path));
    }
    Ok(first)
}

#[derive(Debug, Clone)]
struct ProviderCheck {
    status: Status,
    /// The first token's verified claims (every token found must verify, as in Envoy).
    verified: Option<Arc<VerifiedToken>>,
    /// Where the tokens were found, so that they can be removed before forwarding.
    locations: Vec<usize>,
}

fn check_provider(
    index: usize,
    provider: &Provider,
    found: &[FoundToken<'_>],
    env: &mut WorkerEnv<'_>,
    events: &mut Vec<Event>,
) -> ProviderCheck {
    let locations: Vec<usize> = found.iter().map(|f| f.location).collect();
    if found.is_empty() {
        return ProviderCheck {
            status: Status::JwtMissed,
            verified: None,
            locations,
        };
    }
    let key_set = match &provider.keys {
        KeySource::Local(set) => Some((Arc::clone(set), 0)),
        KeySource::Remote(_) => env.keys.remote_keys(index),
    };
    let mut first = None;
    for token in found {
        match verify_token(
            index,
            provider,
            token.token,
            key_set.as_ref(),
            env.cache,
            env.now_ms / 1000,
            events,
        ) {
            Ok(verified) => {
                first.get_or_insert(verified);
            }
            Err(status) => {
                return ProviderCheck {
                    status,
                    verified: None,
                    locations,
                }
            }
        }
    }
    ProviderCheck {
        status: Status::Ok,
        verified: first,
        locations,
    }
}

fn verify_token(
    index: usize,
    provider: &Provider,
    token: &str,
    key_set: Option<&(Arc<KeySet>, u64)>,
    cache: &mut TokenCache,
    now: u64,
    events: &mut Vec<Event>,
) -> Result<Arc<VerifiedToken>, Status> {
    if token.len() > provider.max_token_bytes {
        return Err(Status::JwtTooLarge);
    }
    if let Some((_, generation)) = key_set {
        if let Some(hit) = cache.get(token, index, *generation, now) {
            events.push(Event::CacheHit);
            return Ok(hit);
        }
    }
    events.push(Event::CacheMiss);
    let jwt = jws::parse(token)?;
    // Claims before keys and signature, as Envoy: an expired token is "expired" even while keys are missing.
    verify::check_claims(&jwt, &provider.claims, now)?;
    let (keys, generation) = key_set.ok_or(Status::JwksFetchFail)?;
    if let Err(status) = verify::check_signature(&jwt, keys) {
        if status == Status::JwksKidAlgMismatch {
            events.push(Event::UnknownKid { provider: index });
        }
        return Err(status);
    }
    let skew = provider.claims.clock_skew_secs;
    let verified = Arc::new(VerifiedToken {
        payload: jwt.payload,
        payload_b64: jwt.payload_b64.to_string(),
        valid_from: jwt.claims.nbf.map_or(0, |nbf| nbf.saturating_sub(skew)),
        valid_until: jwt
            .claims
            .exp
            .map_or(u64::MAX, |exp| exp.saturating_add(skew)),
    });
    cache.insert(token, index, *generation, Arc::clone(&verified), now);
    Ok(verified)
}

fn forward_headers<'p>(
    provider: &'p Provider,
    token: &VerifiedToken,
    locations: &[usize],
    headers: &mut Vec<HeaderChange>,
    strip_params: &mut Vec<&'p str>,
) {
    for claim in &provider.claim_to_headers {
        if let Some(value) = claim_value(&token.payload, &claim.claim_path) {
            headers.push(HeaderChange::Set(claim.header_name.clone(), value));
        }
    }
    if let Some(name) = &provider.forward_payload_header {
        headers.push(HeaderChange::Set(name.clone(), token.payload_b64.clone()));
    }
    if !provider.forward {
        for location in locations {
            // A token header and a token parameter are removed (as Envoy 1.40); cookies stay (as Envoy).
            match provider.locations.get(*location) {
                Some(TokenLocation::Header { name, .. }) => {
                    headers.push(HeaderChange::Remove(name.clone()))
                }
                Some(TokenLocation::Param(name)) => strip_params.push(name),
                Some(TokenLocation::Cookie(_)) | None => {}
            }
        }
    }
}

/// A claim as a header value: strings as they are, numbers and booleans printed, lists of strings
/// joined with commas (as Envoy). Objects, nulls and mixed lists give no header. Characters that
/// cannot appear in a header value (control characters) make the claim unusable rather than unsafe.
fn claim_value(payload: &serde_json::Map<String, Value>, path: &[String]) -> Option<String> {
    let (first, rest) = path.split_first()?;
    let mut value = payload.get(first)?;
    for part in rest {
        value = value.as_object()?.get(part)?;
    }
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => {
            let parts: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            parts?.join(",")
        }
        Value::Null | Value::Object(_) => return None,
    };
    (!text.chars().any(char::is_control)).then_some(text)
}

/// `scheme://host/path` without the query string, at most 256 bytes (as Envoy's `buildOriginalUri`).
pub fn original_uri(request: &dyn RequestView) -> String {
    let mut uri = format!(
        "{}://{}{}",
        request.scheme(),
        request.authority(),
        path_only(request.path())
    );
    if uri.len() > 256 {
        let mut cut = 256;
        while !uri.is_char_boundary(cut) {
            cut -= 1;
        }
        uri.truncate(cut);
    }
    uri
}

#[cfg(test)]
pub(crate) mod tests;
