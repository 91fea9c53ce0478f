//! Rate limiting shared by every worker of one Envoy: named policies (requests per period with a
//! burst, a key built from parts of the request), decided with GCRA over proxy-wasm shared data,
//! each decision and its update one compare-and-swap.
//!
//! - [`gcra`]: the arithmetic, pure.
//! - [`key`]: which client a request belongs to ([`RequestFacts`] is what the lead fills in).
//! - [`store`]: the bounded slot table in shared data and the CAS loop.
//! - [`headers`]: `RateLimit-Policy` / `RateLimit` (IETF draft) or `x-ratelimit-*`, and the 429 reply.
//!
//! # Several policies on one request
//! When more than one policy applies, every policy is first *peeked* (decided without writing): if
//! any would refuse, the request is refused and no budget is spent anywhere, so a client over its
//! own limit cannot drain a shared one. Otherwise each policy takes its request in order. The
//! strictest policy decides what the client is told: the longest retry when refused, the fewest
//! remaining requests when allowed.
//!
//! # Memory
//! Per policy at most `max_keys + 1` shared-data entries (the table and the overflow slot), plus
//! one 16-byte seed entry for the whole plugin. Entries are never deleted (shared data cannot), but
//! stale ones are reused, so the bound holds for any number of distinct clients. One entry is:
//! - its name, `<name>.rl.<policy>.<index>` (about 20 bytes + the two names);
//! - its value, [`store::SLOT_OVERHEAD`] (18) bytes (+ [`store::MARKS_BYTES`], 24, for tier
//!   `local_then_service`) + the key (at most [`key::MAX_KEY_BYTES`], 128:
//!   longer keys are stored as a 71-byte digest);
//! - Envoy's own cost: a hash-map node of two `std::string`s and a CAS token (~72 bytes, ~100 with
//!   the map's spare capacity) and the heap blocks of both strings.
//!
//! About 200 bytes per tracked key for keys of 40 bytes: 100,000 keys take about 20 MB, the
//! default 10,000 about 2 MB; with 128-byte keys, about 300 bytes per key (30 MB per 100,000).

pub mod gcra;
pub mod headers;
pub mod key;
pub mod service;
pub mod store;

use crate::reader::{Node, Result};
use crate::store::{SharedStore, StoreError};
use gcra::{ceil_secs, Rate, NS_PER_MS};
pub use key::{KeyPart, RequestFacts, Seed};
pub use service::{ServiceBackend, Tier};
use store::{Outcome, SlotEvent, SlotTable, TableError, CREATE_TOKEN};

/// Default size of a policy's slot table.
pub const DEFAULT_MAX_KEYS: usize = 10_000;
/// Largest accepted `max_keys`.
pub const MAX_MAX_KEYS: usize = 10_000_000;
/// Default number of decisions tried before `on_cas_exhausted` applies.
pub const DEFAULT_CAS_ATTEMPTS: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMissingKey {
    /// Use `fallback_key`, or replace the missing parts by a marker (one budget for all who lack them).
    Fallback,
    /// Refuse the request (403).
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Each rule that names the policy has its own budgets.
    Rule,
    /// One budget per key across every rule that names the policy.
    Shared,
}

/// What to do when no decision could be stored (CAS retries exhausted, or shared data failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderStyle {
    /// `RateLimit-Policy: "name";q=100;w=60` and `RateLimit: "name";r=50;t=30`.
    Draft,
    /// `x-ratelimit-limit`, `x-ratelimit-remaining`, `x-ratelimit-reset`.
    XRateLimit,
    None,
}

/// One compiled policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitPolicy {
    pub name: String,
    pub requests: u64,
    pub period_ms: u64,
    pub burst: u64,
    pub rate: Rate,
    pub key: Vec<KeyPart>,
    pub fallback_key: Option<Vec<KeyPart>>,
    pub on_missing_key: OnMissingKey,
    pub scope: Scope,
    pub on_cas_exhausted: OnFailure,
    pub headers: HeaderStyle,
    pub headers_on_allowed: bool,
    pub max_keys: u32,
    pub cas_attempts: u32,
    /// Where the decision is made ([`service`]).
    pub tier: Tier,
    /// The rate limit service, for tiers `service` and `local_then_service`.
    pub service: Option<ServiceBackend>,
    table: SlotTable,
}

/// Every named policy of the configuration (the `rate_limits` section).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub policies: Vec<LimitPolicy>,
}

/// Something to count, per policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitEvent {
    Allowed,
    Limited,
    /// A key part was missing and the policy refuses such requests.
    MissingKey,
    /// A key part was missing and the fallback key decided.
    FallbackKey,
    /// A key part was given two ways (a key header sent twice); the request was refused (400).
    AmbiguousKey,
    /// Every CAS attempt lost a race; `on_cas_exhausted` decided.
    CasExhausted,
    /// Shared data refused a read or write; `on_cas_exhausted` decided.
    StoreFailed,
    /// A slot was created in shared data: the count is the number of shared-data entries the policy
    /// uses (never more than `max_keys + 1`), not of live keys (stale slots are reused).
    SlotCreated,
    /// A stale slot was taken over by a new key.
    KeyReclaimed,
    /// The table was full of live keys; the shared overflow budget decided.
    Overflow,
    /// A write lost a CAS race and was retried.
    CasRetry,
    /// The policy was in a call to the rate limit service.
    ServiceCall,
    /// The service answered `OVER_LIMIT` for the policy.
    ServiceOverLimit,
    /// The call failed, or its answer was `UNKNOWN` or unreadable.
    ServiceError,
    /// The call timed out (`timeout`).
    ServiceTimeout,
    /// The call gave no decision and `failure_mode: allow` let the request pass.
    ServiceFailureAllowed,
    /// The call gave no decision and `failure_mode: deny` refused the request (503).
    ServiceFailureDenied,
    /// `local_then_service`: the local share was spent, so the service decides.
    LocalShareSpent,
    /// `local_then_service`: the local state was older than `service.refresh`, so the service
    /// decides although the share lasts.
    LocalShareStale,
    /// `local_then_service`: refused because the service's `OVER_LIMIT` for the key still holds
    /// (remembered in shared data), without a call.
    ServiceOverLimitRemembered,
}

impl LimitEvent {
    /// Counter name suffix, e.g. `<name>_rl_<policy>_allowed`.
    pub fn metric_name(self) -> &'static str {
        match self {
            LimitEvent::Allowed => "allowed",
            LimitEvent::Limited => "limited",
            LimitEvent::MissingKey => "missing_key",
            LimitEvent::FallbackKey => "fallback_key",
            LimitEvent::AmbiguousKey => "ambiguous_key",
            LimitEvent::CasExhausted => "cas_exhausted",
            LimitEvent::StoreFailed => "store_failed",
            LimitEvent::SlotCreated => "slots_created",
            LimitEvent::KeyReclaimed => "keys_reclaimed",
            LimitEvent::Overflow => "overflow",
            LimitEvent::CasRetry => "cas_retries",
            LimitEvent::ServiceCall => "service_calls",
            LimitEvent::ServiceOverLimit => "service_over_limit",
            LimitEvent::ServiceError => "service_errors",
            LimitEvent::ServiceTimeout => "service_timeouts",
            LimitEvent::ServiceFailureAllowed => "service_failure_allowed",
            LimitEvent::ServiceFailureDenied => "service_failure_denied",
            LimitEvent::LocalShareSpent => "local_share_spent",
            LimitEvent::LocalShareStale => "local_share_stale",
            LimitEvent::ServiceOverLimitRemembered => "service_over_limit_remembered",
        }
    }

    /// Every event, to define the counters once.
    pub const ALL: [LimitEvent; 20] = [
        LimitEvent::Allowed,
        LimitEvent::Limited,
        LimitEvent::MissingKey,
        LimitEvent::FallbackKey,
        LimitEvent::AmbiguousKey,
        LimitEvent::CasExhausted,
        LimitEvent::StoreFailed,
        LimitEvent::SlotCreated,
        LimitEvent::KeyReclaimed,
        LimitEvent::Overflow,
        LimitEvent::CasRetry,
        LimitEvent::ServiceCall,
        LimitEvent::ServiceOverLimit,
        LimitEvent::ServiceError,
        LimitEvent::ServiceTimeout,
        LimitEvent::ServiceFailureAllowed,
        LimitEvent::ServiceFailureDenied,
        LimitEvent::LocalShareSpent,
        LimitEvent::LocalShareStale,
        LimitEvent::ServiceOverLimitRemembered,
    ];

    /// Whether the event is counted only for service-backed policies (their counters are defined
    /// only for those).
    pub fn is_service(self) -> bool {
        matches!(
            self,
            LimitEvent::ServiceCall
                | LimitEvent::ServiceOverLimit
                | LimitEvent::ServiceError
                | LimitEvent::ServiceTimeout
                | LimitEvent::ServiceFailureAllowed
                | LimitEvent::ServiceFailureDenied
                | LimitEvent::LocalShareSpent
                | LimitEvent::LocalShareStale
                | LimitEvent::ServiceOverLimitRemembered
        )
    }
}

/// Why the limiter refuses a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over the limit of `policy` (index into [`RateLimits::policies`]): 429.
    Limited {
        policy: usize,
        retry_after_secs: u64,
    },
    /// The request lacks a key part and the policy is `on_missing_key: deny`: 403.
    MissingKey { policy: usize, part: &'static str },
    /// The request gives a key part two ways (a key header sent twice or not UTF-8): 400, whatever
    /// `on_missing_key` says (the pipeline answers `Denial::BadRequest("ambiguous_rate_limit_key")`).
    AmbiguousKey { policy: usize, part: &'static str },
    /// The rate limit service gave no decision and the policy's `failure_mode` is `deny`: 503.
    ServiceUnavailable { policy: usize },
}

/// Why no key could be built for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyFailure {
    Missing(&'static str),
    Ambiguous(&'static str),
}

/// One request's rate-limit decision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    pub refusal: Option<Refusal>,
    /// Headers for the client: on the 429 reply when refused (with `retry-after`), else on the
    /// upstream response (only policies with `headers_on_allowed`; often empty).
    pub headers: Vec<(&'static str, String)>,
    /// (policy index, event) pairs to count.
    pub events: Vec<(usize, LimitEvent)>,
    /// `local_then_service` policies whose local share is spent or stale, with their local keys:
    /// the service decides them.
    pub escalated: Vec<(usize, String)>,
}

/// A policy's state after a decision, for headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PolicyState {
    pub policy: usize,
    pub limited: bool,
    pub remaining: u64,
    pub reset_secs: u64,
    pub retry_after_secs: u64,
    /// The (quota, window in seconds) the rate limit service reported, instead of the policy's own.
    pub quota: Option<(u64, u64)>,
}

impl RateLimits {
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The index of a policy by name.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.policies.iter().position(|p| p.name == name)
    }

    /// Decides one request for the `applied` policies (indexes, from the matched rule). `rule` is
    /// the matched rule's name (it separates budgets of `scope: rule` policies).
    pub fn check(
        &self,
        applied: &[usize],
        rule: &str,
        facts: &dyn RequestFacts,
        store: &dyn SharedStore,
        seed: &Seed,
        now_ms: u64,
    ) -> Decision {
        let mut decision = Decision::default();
        let now_ns = u128::from(now_ms) * NS_PER_MS;
        let mut keyed: Vec<(usize, &LimitPolicy, String)> = Vec::with_capacity(applied.len());
        for &index in applied {
            let Some(policy) = self.policies.get(index) else {
                continue;
            };
            if policy.tier == Tier::Service {
                continue;
            }
            match policy.key_for(rule, facts) {
                Ok((key, fallback)) => {
                    if fallback {
                        decision.events.push((index, LimitEvent::FallbackKey));
                    }
                    keyed.push((index, policy, key));
                }
                Err(KeyFailure::Missing(part)) => {
                    decision.events.push((index, LimitEvent::MissingKey));
                    decision.refusal = Some(Refusal::MissingKey {
                        policy: index,
                        part,
                    });
                    return decision;
                }
                Err(KeyFailure::Ambiguous(part)) => {
                    decision.events.push((index, LimitEvent::AmbiguousKey));
                    decision.refusal = Some(Refusal::AmbiguousKey {
                        policy: index,
                        part,
                    });
                    return decision;
                }
            }
        }

        let mut states = Vec::with_capacity(keyed.len());
        if keyed.len() > 1 {
            // Peek first: a refused request spends no policy's budget.
            for (index, policy, key) in &keyed {
                let local =
                    match policy
                        .table
                        .decide(store, seed, key, &policy.rate, now_ns, 1, false)
                    {
                        Ok(outcome) => local_state(*index, policy, &outcome, now_ms),
                        Err(e) => match failure(&mut decision, *index, policy, &e) {
                            Some(state) => Local::Decided(state),
                            None => continue,
                        },
                    };
                match local {
                    Local::Decided(state) if state.limited => {
                        if policy.tier == Tier::LocalThenService {
                            decision.escalated.push((*index, key.clone()));
                        } else {
                            states.push(state);
                        }
                    }
                    Local::Remembered(state) => {
                        decision
                            .events
                            .push((*index, LimitEvent::ServiceOverLimitRemembered));
                        states.push(state);
                    }
                    Local::Escalate(LimitEvent::LocalShareSpent) => {
                        decision.escalated.push((*index, key.clone()));
                    }
                    // Under the share: a stale state is refreshed when the request is committed.
                    _ => {}
                }
            }
            if !states.is_empty() {
                for state in &states {
                    decision.events.push((state.policy, LimitEvent::Limited));
                }
                return self.finish(decision, &states);
            }
        }

        for (index, policy, key) in &keyed {
            if decision.escalated.iter().any(|(p, _)| p == index) {
                decision.events.push((*index, LimitEvent::LocalShareSpent));
                continue;
            }
            let local = match policy.table.decide(
                store,
                seed,
                key,
                &policy.rate,
                now_ns,
                policy.cas_attempts,
                true,
            ) {
                Ok(outcome) => {
                    decision
                        .events
                        .extend(outcome.events.iter().map(|e| (*index, slot_event(*e))));
                    local_state(*index, policy, &outcome, now_ms)
                }
                Err(e) => match failure(&mut decision, *index, policy, &e) {
                    // No local state: the service decides.
                    Some(_) if policy.tier == Tier::LocalThenService => {
                        Local::Escalate(LimitEvent::LocalShareSpent)
                    }
                    Some(state) => Local::Decided(state),
                    None => {
                        decision.events.push((*index, LimitEvent::Allowed));
                        continue;
                    }
                },
            };
            let state = match local {
                Local::Decided(state) => state,
                Local::Remembered(state) => {
                    decision
                        .events
                        .push((*index, LimitEvent::ServiceOverLimitRemembered));
                    state
                }
                Local::Escalate(event) => {
                    decision.escalated.push((*index, key.clone()));
                    decision.events.push((*index, event));
                    continue;
                }
            };
            let event = if state.limited {
                LimitEvent::Limited
            } else {
                LimitEvent::Allowed
            };
            decision.events.push((*index, event));
            states.push(state);
            if state.limited {
                // Lost a race after the peek (or the only policy refuses): spend nothing more.
                break;
            }
        }
        self.finish(decision, &states)
    }

    fn finish(&self, mut decision: Decision, states: &[PolicyState]) -> Decision {
        let limited = limited_states(states);
        if let Some(strictest) = limited.iter().max_by_key(|s| s.retry_after_secs) {
            decision.refusal = Some(Refusal::Limited {
                policy: strictest.policy,
                retry_after_secs: strictest.retry_after_secs,
            });
            decision.headers = headers::for_states(self, &limited, true);
        } else {
            let shown: Vec<PolicyState> = states
                .iter()
                .copied()
                .filter(|s| {
                    self.policies
                        .get(s.policy)
                        .is_some_and(|p| p.headers_on_allowed)
                })
                .collect();
            decision.headers = headers::for_states(self, &shown, false);
        }
        decision
    }
}

impl LimitPolicy {
    /// The request's key and whether it is a fallback key, or the name of the missing part.
    fn key_for(
        &self,
        rule: &str,
        facts: &dyn RequestFacts,
    ) -> std::result::Result<(String, bool), KeyFailure> {
        let scope = match self.scope {
            Scope::Rule => rule,
            Scope::Shared => "",
        };
        if let Some(part) = key::ambiguous_part(&self.key, facts).or_else(|| {
            self.fallback_key
                .as_deref()
                .and_then(|parts| key::ambiguous_part(parts, facts))
        }) {
            return Err(KeyFailure::Ambiguous(part));
        }
        match key::build(scope, &self.key, facts) {
            Ok(key) => Ok((key, false)),
            Err(part) if self.on_missing_key == OnMissingKey::Deny => {
                Err(KeyFailure::Missing(part))
            }
            Err(_) => {
                let parts = self.fallback_key.as_deref().unwrap_or(&self.key);
                // `~` never starts a primary key (those start with a length): the two never mix.
                let mut key = String::from("~");
                key.push_str(&key::build_with_fallback(scope, parts, facts));
                Ok((key, true))
            }
        }
    }

    /// The quota and window advertised in `RateLimit-Policy`: whole seconds, scaled when the
    /// period is not a whole number of seconds.
    pub fn quota_window(&self) -> (u64, u64) {
        if self.period_ms.is_multiple_of(1000) {
            (self.requests, self.period_ms / 1000)
        } else {
            let per_second = u128::from(self.requests) * 1000 / u128::from(self.period_ms.max(1));
            (u64::try_from(per_second).unwrap_or(u64::MAX), 1)
        }
    }
}

/// The refused states among `states`.
fn limited_states(states: &[PolicyState]) -> Vec<PolicyState> {
    states.iter().copied().filter(|s| s.limited).collect()
}

fn state_of(policy: usize, step: &gcra::Step) -> PolicyState {
    PolicyState {
        policy,
        limited: !step.allowed,
        remaining: step.remaining,
        reset_secs: ceil_secs(step.reset_ns),
        retry_after_secs: ceil_secs(step.retry_after_ns).max(u64::from(!step.allowed)),
        quota: None,
    }
}

/// What a local decision means.
enum Local {
    /// The local state decides (allowed or refused).
    Decided(PolicyState),
    /// A `local_then_service` key the service said is over its limit, until a time not yet come:
    /// refused with the service's limit, without a call.
    Remembered(PolicyState),
    /// `local_then_service`: the service decides, because the local share is spent
    /// ([`LimitEvent::LocalShareSpent`]) or the local state is stale ([`LimitEvent::LocalShareStale`],
    /// the request took its part of the share).
    Escalate(LimitEvent),
}

fn local_state(index: usize, policy: &LimitPolicy, outcome: &Outcome, now_ms: u64) -> Local {
    let marks = &outcome.marks;
    if marks.over_until_ms > now_ms {
        let reset_secs = (marks.over_until_ms - now_ms).div_ceil(1000);
        let (requests, unit) = marks.quota;
        return Local::Remembered(PolicyState {
            policy: index,
            limited: true,
            remaining: 0,
            reset_secs,
            retry_after_secs: reset_secs.max(1),
            quota: (unit > 0).then_some((u64::from(requests), u64::from(unit))),
        });
    }
    let state = state_of(index, &outcome.step);
    match policy.tier {
        Tier::LocalThenService if state.limited => Local::Escalate(LimitEvent::LocalShareSpent),
        Tier::LocalThenService if outcome.stale => Local::Escalate(LimitEvent::LocalShareStale),
        _ => Local::Decided(state),
    }
}

/// Counts a failed decision and applies `on_cas_exhausted`: `None` lets the policy pass (without
/// state to report), `Some` refuses with a one-second retry.
fn failure(
    decision: &mut Decision,
    index: usize,
    policy: &LimitPolicy,
    error: &TableError,
) -> Option<PolicyState> {
    let event = match error {
        TableError::CasExhausted => LimitEvent::CasExhausted,
        TableError::Store(_) => LimitEvent::StoreFailed,
    };
    decision.events.push((index, event));
    (policy.on_cas_exhausted == OnFailure::Deny).then_some(PolicyState {
        policy: index,
        limited: true,
        remaining: 0,
        reset_secs: 1,
        retry_after_secs: 1,
        quota: None,
    })
}

fn slot_event(event: SlotEvent) -> LimitEvent {
    match event {
        SlotEvent::SlotCreated => LimitEvent::SlotCreated,
        SlotEvent::SlotReclaimed => LimitEvent::KeyReclaimed,
        SlotEvent::Overflow => LimitEvent::Overflow,
        SlotEvent::CasRetry => LimitEvent::CasRetry,
    }
}

/// The shared-data key holding the slot-hash seed.
pub fn seed_key(namespace: &str) -> String {
    format!("{namespace}.rl.seed")
}

/// Establishes the one seed every worker uses: the stored one if there is one, else `candidate`
/// (random bytes from the host), created so that two workers starting at once still agree. Call
/// from `on_configure` (every worker) before deciding requests; on `Err`, refuse the configuration:
/// workers with different seeds would keep one key in two slots (two budgets).
pub fn ensure_seed(
    store: &dyn SharedStore,
    namespace: &str,
    candidate: [u8; 16],
) -> std::result::Result<Seed, StoreError> {
    let name = seed_key(namespace);
    let (value, cas) = store.get(&name)?;
    if let Some(seed) = value.as_deref().and_then(seed_from) {
        return Ok(seed);
    }
    // Absent: create with a token no existing entry carries. Unreadable: replace what was read.
    let token = if value.is_some() { cas } else { None };
    match store.set(&name, &candidate, Some(token.unwrap_or(CREATE_TOKEN))) {
        Ok(()) | Err(StoreError::CasMismatch) => {}
        Err(other) => return Err(other),
    }
    let (value, _) = store.get(&name)?;
    value
        .as_deref()
        .and_then(seed_from)
        .ok_or_else(|| StoreError::Host(format!("{name} holds no usable seed")))
}

fn seed_from(bytes: &[u8]) -> Option<Seed> {
    let array: &[u8; 16] = bytes.try_into().ok()?;
    Some(Seed::from_bytes(array))
}

/// Compiles the `rate_limits` section: an object of named policies. `namespace` is the
/// configuration's `name` (the prefix of shared-data keys).
pub fn compile(node: &Node<'_>, namespace: &str) -> Result<RateLimits> {
    let mut policies = Vec::new();
    for (name, policy_node) in node.entries()? {
        if name.is_empty()
            || name.len() > 32
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(policy_node.error(
                "policy names use 1 to 32 characters from a-z, 0-9 and _ (they appear in metric names, shared-data keys and headers)",
            ));
        }
        policies.push(compile_policy(name, &policy_node, namespace)?);
    }
    Ok(RateLimits { policies })
}

/// Compiles a rule's `rate_limits` member: a policy name or a list of names.
pub fn compile_rule_refs(node: &Node<'_>, limits: &RateLimits) -> Result<Vec<usize>> {
    let names: Vec<(String, Node<'_>)> = match node.value {
        serde_json::Value::String(_) => vec![(node.non_empty_str()?.to_string(), node.clone())],
        _ => node
            .array()?
            .into_iter()
            .map(|n| Ok((n.non_empty_str()?.to_string(), n)))
            .collect::<Result<_>>()?,
    };
    let mut indexes = Vec::with_capacity(names.len());
    for (name, n) in names {
        let index = limits.find(&name).ok_or_else(|| {
            let known: Vec<&str> = limits.policies.iter().map(|p| p.name.as_str()).collect();
            n.error(format!(
                "no rate_limits policy named {name:?} (known: {})",
                known.join(", ")
            ))
        })?;
        if indexes.contains(&index) {
            return Err(n.error(format!("policy {name:?} is listed twice")));
        }
        indexes.push(index);
    }
    // One call per request: every service-backed policy of a rule asks the same service.
    let mut backends = indexes
        .iter()
        .filter_map(|&i| limits.policies.get(i)?.service.as_ref());
    if let Some(first) = backends.next() {
        if backends.any(|b| b.cluster != first.cluster || b.domain != first.domain) {
            return Err(node.error(
                "the service-backed policies of one rule share one call: give them the same service cluster and domain",
            ));
        }
    }
    Ok(indexes)
}

fn compile_policy(name: &str, node: &Node<'_>, namespace: &str) -> Result<LimitPolicy> {
    let obj = node.object(&[
        "requests",
        "period",
        "burst",
        "key",
        "fallback_key",
        "on_missing_key",
        "scope",
        "on_cas_exhausted",
        "headers",
        "headers_on_allowed",
        "max_keys",
        "cas_attempts",
        "tier",
        "service",
    ])?;
    let key = match obj.get("key") {
        None => Vec::new(),
        Some(n) => compile_key(&n)?,
    };
    let (tier, service) = service::compile(
        obj.get("tier"),
        obj.get("service"),
        name,
        &key,
        compile_key_part,
    )?;
    // A service-only policy needs no local rate: the service holds the limit.
    let (requests, period_ms) = if tier == Tier::Service && obj.get("requests").is_none() {
        if let Some(n) = obj.get("period") {
            return Err(n.error("period goes with requests"));
        }
        (0, 1000)
    } else {
        let requests = obj.require("requests")?.u64()?;
        let period_node = obj.require("period")?;
        let period_ms = u64::try_from(period_node.duration()?.as_millis())
            .map_err(|_| period_node.error("period is too long"))?;
        if period_ms == 0 {
            return Err(period_node.error("period must be at least 1ms"));
        }
        (requests, period_ms)
    };
    let burst = match obj.get("burst") {
        None => requests,
        Some(n) => {
            let burst = n.u64()?;
            if burst == 0 && requests > 0 {
                return Err(n.error(
                    "burst 0 would refuse every request; set requests to 0 for that, or burst to at least 1",
                ));
            }
            burst
        }
    };
    let fallback_key = obj
        .get("fallback_key")
        .map(|n| compile_key(&n))
        .transpose()?;
    let on_missing_key = obj
        .get("on_missing_key")
        .map(|n| {
            n.one_of(&[
                ("fallback", OnMissingKey::Fallback),
                ("deny", OnMissingKey::Deny),
            ])
        })
        .transpose()?
        .unwrap_or(OnMissingKey::Fallback);
    if on_missing_key == OnMissingKey::Deny {
        if let Some(n) = obj.get("fallback_key") {
            return Err(n.error("fallback_key is used only with on_missing_key: \"fallback\""));
        }
    }
    let scope = obj
        .get("scope")
        .map(|n| n.one_of(&[("rule", Scope::Rule), ("shared", Scope::Shared)]))
        .transpose()?
        .unwrap_or(Scope::Rule);
    let on_cas_exhausted = obj
        .get("on_cas_exhausted")
        .map(|n| n.one_of(&[("allow", OnFailure::Allow), ("deny", OnFailure::Deny)]))
        .transpose()?
        .unwrap_or(OnFailure::Allow);
    let headers = obj
        .get("headers")
        .map(|n| {
            n.one_of(&[
                ("draft", HeaderStyle::Draft),
                ("x-ratelimit", HeaderStyle::XRateLimit),
                ("none", HeaderStyle::None),
            ])
        })
        .transpose()?
        .unwrap_or(HeaderStyle::Draft);
    let headers_on_allowed = obj
        .get("headers_on_allowed")
        .map(|n| n.bool())
        .transpose()?
        .unwrap_or(false);
    let max_keys = obj
        .get("max_keys")
        .map(|n| n.usize_in(1, MAX_MAX_KEYS))
        .transpose()?
        .unwrap_or(DEFAULT_MAX_KEYS);
    let max_keys = u32::try_from(max_keys).unwrap_or(u32::MAX);
    let cas_attempts = obj
        .get("cas_attempts")
        .map(|n| n.usize_in(1, 64))
        .transpose()?
        .map_or(DEFAULT_CAS_ATTEMPTS, |n| {
            u32::try_from(n).unwrap_or(DEFAULT_CAS_ATTEMPTS)
        });
    let refresh_ms = service
        .as_ref()
        .filter(|_| tier == Tier::LocalThenService)
        .map(|s| s.refresh_ms);
    Ok(LimitPolicy {
        name: name.to_string(),
        requests,
        period_ms,
        burst,
        rate: Rate::new(requests, period_ms, burst),
        key,
        fallback_key,
        on_missing_key,
        scope,
        on_cas_exhausted,
        headers,
        headers_on_allowed,
        max_keys,
        cas_attempts,
        tier,
        service,
        table: SlotTable::new(namespace, name, max_keys).with_refresh(refresh_ms),
    })
}

fn compile_key(node: &Node<'_>) -> Result<Vec<KeyPart>> {
    node.array()?.iter().map(compile_key_part).collect()
}

const KEY_PARTS: [&str; 6] = [
    "jwt_claim",
    "api_key",
    "header",
    "client_address",
    "path_template",
    "method",
];

fn compile_key_part(node: &Node<'_>) -> Result<KeyPart> {
    let obj = node.object(&KEY_PARTS)?;
    let present: Vec<(&str, Node<'_>)> = KEY_PARTS
        .iter()
        .filter_map(|name| obj.get(name).map(|n| (*name, n)))
        .collect();
    let [(kind, n)] = present.as_slice() else {
        return Err(node.error(format!(
            "a key part sets exactly one of {}",
            KEY_PARTS.join(", ")
        )));
    };
    Ok(match *kind {
        "jwt_claim" => {
            let name = n.non_empty_str()?;
            let path: Vec<String> = name.split('.').map(str::to_string).collect();
            if path.iter().any(String::is_empty) {
                return Err(
                    n.error("claim names are dot-separated non-empty parts, e.g. \"org.id\"")
                );
            }
            KeyPart::JwtClaim(path)
        }
        "header" => KeyPart::Header(n.header_name()?),
        "client_address" => {
            let o = n.object(&["use_remote_address", "trusted_hops", "ipv6_prefix"])?;
            // Envoy's `source.address` is the client's own `x-forwarded-for` unless the connection
            // manager has `use_remote_address: true`: the operator must say it has.
            let stated = o.get("use_remote_address").map(|u| u.bool()).transpose()?;
            if stated != Some(true) {
                return Err(o
                    .get("use_remote_address")
                    .unwrap_or_else(|| n.clone())
                    .error(
                        "client_address needs \"use_remote_address\": true, stating that Envoy's \
                         http_connection_manager sets use_remote_address: true; without it Envoy \
                         takes the client address from x-forwarded-for, which clients choose",
                    ));
            }
            let trusted_hops = o
                .get("trusted_hops")
                .map(|h| h.usize_in(0, 16))
                .transpose()?
                .unwrap_or(0);
            let ipv6_prefix = o
                .get("ipv6_prefix")
                .map(|h| h.usize_in(0, 128))
                .transpose()?
                .map_or(64, |p| u8::try_from(p).unwrap_or(128));
            KeyPart::ClientAddress {
                trusted_hops,
                ipv6_prefix,
            }
        }
        flag => {
            if !n.bool()? {
                return Err(n.error("only true is meaningful here; remove the part instead"));
            }
            match flag {
                "api_key" => KeyPart::ApiKey,
                "path_template" => KeyPart::PathTemplate,
                _ => KeyPart::Method,
            }
        }
    })
}

#[cfg(test)]
mod tests;
