//! Remote JWKS: fetched once for the whole Envoy (not once per worker), shared through shared data,
//! refreshed before it expires, retried with exponential back-off, refetched (rate-limited) when a
//! token names an unknown `kid`. Pure logic: the host runs the HTTP call this module asks for.
//!
//! Clients cannot empty the token cache: unknown-`kid` refetches are bounded per provider for the whole
//! Envoy (at most one per `refetch_on_unknown_kid`, counted from the last successful fetch, whatever
//! tokens clients send; failed fetches follow the back-off), and a fetch that brings the same keys keeps
//! the key generation, so cached verifications stay valid.
//!
//! Two shared keys per provider, `<name>.jwks.<provider>.state` and `<name>.jwks.<provider>.doc`:
//! - `state` is small, read by every worker on every tick: who holds the fetch lease and until when,
//!   consecutive failures, when the next attempt may start, and when the current document was fetched;
//! - `doc` holds the last good JWKS body, read only when `state` says it is newer than the local copy.
//!
//! A worker fetches only after winning the lease with compare-and-swap, so one fetch serves every worker;
//! a lease that outlives the call's timeout expires, so a lost callback cannot block refreshes forever.
//! A failed refresh keeps the last good keys (availability over strictness; the failure is counted).
//! Until the first fetch succeeds, requests that need these keys get `Jwks remote fetch is failed`,
//! as Envoy's `jwt_authn` does with `async_fetch`.

use super::keys::KeySet;
use crate::store::{SharedStore, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// Fraction of `cache_duration` after which a document is refreshed (before it expires).
const REFRESH_AT_PERCENT: u64 = 80;
/// Extra time a lease lasts beyond the call's own timeout.
const LEASE_MARGIN_MS: u64 = 1_000;
/// Attempts at a CAS update of the state record before giving up for this tick.
const CAS_ATTEMPTS: usize = 4;

/// The shared, small record that coordinates fetching.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct FetchState {
    holder: u64,
    lease_until_ms: u64,
    failures: u32,
    next_attempt_ms: u64,
    doc_fetched_at_ms: u64,
}

impl FetchState {
    fn encode(&self) -> Vec<u8> {
        format!(
            "v1 {} {} {} {} {}",
            self.holder,
            self.lease_until_ms,
            self.failures,
            self.next_attempt_ms,
            self.doc_fetched_at_ms
        )
        .into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<FetchState> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split(' ');
        if parts.next()? != "v1" {
            return None;
        }
        let state = FetchState {
            holder: parts.next()?.parse().ok()?,
            lease_until_ms: parts.next()?.parse().ok()?,
            failures: parts.next()?.parse().ok()?,
            next_attempt_ms: parts.next()?.parse().ok()?,
            doc_fetched_at_ms: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(state)
    }
}

/// An HTTP call the host should make now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOrder {
    pub provider: usize,
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
}

/// What came back from the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchResult {
    /// An HTTP response (the body may be partial if the host capped it).
    Response { status: u16, body: Vec<u8> },
    /// No response: connection failure, timeout, reset.
    NoResponse,
    /// A response whose body the host did not copy because it is larger than `max_bytes`.
    Oversized { bytes: usize },
}

/// The result of a fetch, for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    Installed { keys: usize },
    Failed { reason: String, retry_in_ms: u64 },
}

#[derive(Debug)]
struct ProviderKeys {
    provider: usize,
    name: String,
    remote: RemoteJwks,
    state_key: String,
    doc_key: String,
    keys: Option<Arc<KeySet>>,
    /// Bumped whenever keys that differ from the installed ones are installed; cached verifications
    /// of older generations are void.
    generation: u64,
    installed_fetched_at_ms: u64,
    in_flight: bool,
    unknown_kid_seen: bool,
}

/// Where and how often to fetch a provider's JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout: Duration,
    pub cache_duration: Duration,
    pub max_bytes: usize,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Least time between two fetches caused by tokens with an unknown `kid`; `None` never refetches for that.
    pub refetch_on_unknown_kid: Option<Duration>,
}

/// One worker's view of every remote JWKS of the policy.
#[derive(Debug)]
pub struct JwksCoordinator {
    worker_id: u64,
    providers: Vec<ProviderKeys>,
}

impl JwksCoordinator {
    /// `remotes`: (provider index, provider name, where to fetch) for each provider with remote keys;
    /// `plugin` prefixes the shared-data keys; `worker_id` must differ between VMs (a random number):
    /// it identifies the lease holder.
    pub fn new(plugin: &str, remotes: &[(usize, &str, &RemoteJwks)], worker_id: u64) -> Self {
        let providers = remotes
            .iter()
            .map(|&(provider, name, remote)| {
                let prefix = format!("{plugin}.jwks.{name}");
                ProviderKeys {
                    provider,
                    name: name.to_string(),
                    remote: remote.clone(),
                    state_key: format!("{prefix}.state"),
                    doc_key: format!("{prefix}.doc"),
                    keys: None,
                    generation: 0,
                    installed_fetched_at_ms: 0,
                    in_flight: false,
                    unknown_kid_seen: false,
                }
            })
            .collect();
        JwksCoordinator {
            worker_id,
            providers,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// The most bytes a provider's JWKS response may have (the host copies no more).
    pub fn max_bytes(&self, provider: usize) -> usize {
        self.providers
            .iter()
            .find(|p| p.provider == provider)
            .map_or(0, |p| p.remote.max_bytes)
    }

    /// The provider's name, for logs.
    pub fn provider_name(&self, provider: usize) -> &str {
        self.providers
            .iter()
            .find(|p| p.provider == provider)
            .map_or("", |p| p.name.as_str())
    }

    /// Creates the shared state records if they do not exist yet, so that later updates can rely on
    /// compare-and-swap (shared data has no create-if-absent). Call from `on_configure`.
    pub fn ensure_shared_records(&self, store: &dyn SharedStore) -> Result<(), StoreError> {
        for p in &self.providers {
            if store.get(&p.state_key)?.0.is_none() {
                store.set(&p.state_key, &FetchState::default().encode(), None)?;
            }
        }
        Ok(())
    }

    /// The keys for a provider and their generation, if any have been installed on this worker.
    pub fn keys(&self, provider: usize) -> Option<(Arc<KeySet>, u64)> {
        let p = self.providers.iter().find(|p| p.provider == provider)?;
        p.keys.as_ref().map(|k| (Arc::clone(k), p.generation))
    }

    /// Notes a token whose `kid` no key matched: the next tick may refetch (rate-limited).
    pub fn note_unknown_kid(&mut self, provider: usize) {
        if let Some(p) = self.providers.iter_mut().find(|p| p.provider == provider) {
            p.unknown_kid_seen = true;
        }
    }

    /// Installs keys another worker fetched, if the shared state says they are newer. Cheap when nothing
    /// changed (one small read per provider). Used on ticks and when a request finds no keys.
    pub fn sync(&mut self, store: &dyn SharedStore, provider: usize) {
        if let Some(p) = self.providers.iter_mut().find(|p| p.provider == provider) {
            if let Ok(Some(state)) = read_state(store, &p.state_key).map(|(s, _)| s) {
                install_if_newer(p, store, &state);
            }
        }
    }

    /// Called on every tick: installs newer shared keys, and returns the fetches this worker won the
    /// lease for and must start now.
    pub fn on_tick(&mut self, store: &dyn SharedStore, now_ms: u64) -> Vec<FetchOrder> {
        let worker_id = self.worker_id;
        let mut orders = Vec::new();
        for p in &mut self.providers {
            let Ok((Some(state), cas)) = read_state(store, &p.state_key) else {
                // Missing or unreadable record: recreate it; fetching waits for the next tick.
                let _ = store.set(&p.state_key, &FetchState::default().encode(), None);
                continue;
            };
            install_if_newer(p, store, &state);
            if p.in_flight || !fetch_due(p, &state, now_ms) {
                continue;
            }
            if state.lease_until_ms > now_ms || state.next_attempt_ms > now_ms {
                continue;
            }
            let lease = FetchState {
                holder: worker_id,
                lease_until_ms: now_ms + p.remote.timeout.as_millis() as u64 + LEASE_MARGIN_MS,
                ..state
            };
            if store
                .set(&p.state_key, &lease.encode(), cas.or(Some(0)))
                .is_ok()
            {
                p.in_flight = true;
                orders.push(FetchOrder {
                    provider: p.provider,
                    cluster: p.remote.cluster.clone(),
                    authority: p.remote.authority.clone(),
                    path: p.remote.path.clone(),
                    timeout_ms: p.remote.timeout.as_millis() as u64,
                });
            }
        }
        orders
    }

    /// Records the result of a fetch this worker started: installs and publishes good keys, or
    /// schedules the next attempt with exponential back-off.
    pub fn on_fetch_done(
        &mut self,
        store: &dyn SharedStore,
        provider: usize,
        now_ms: u64,
        result: FetchResult,
    ) -> FetchOutcome {
        let worker_id = self.worker_id;
        let Some(p) = self.providers.iter_mut().find(|p| p.provider == provider) else {
            return FetchOutcome::Failed {
                reason: "no such remote provider".into(),
                retry_in_ms: 0,
            };
        };
        p.in_flight = false;
        let parsed = match result {
            FetchResult::NoResponse => {
                Err("no response (connection failed or timed out)".to_string())
            }
            FetchResult::Oversized { bytes } => Err(format!(
                "body of {bytes} bytes is larger than max_bytes ({})",
                p.remote.max_bytes
            )),
            FetchResult::Response { status, .. } if status != 200 => {
                Err(format!("HTTP status {status}"))
            }
            FetchResult::Response { body, .. } if body.len() > p.remote.max_bytes => Err(format!(
                "body larger than max_bytes ({})",
                p.remote.max_bytes
            )),
            FetchResult::Response { body, .. } => match KeySet::from_jwks(&body) {
                Ok(keys) if keys.is_empty() => Err("JWKS has no usable key".to_string()),
                Ok(keys) => Ok((keys, body)),
                Err(e) => Err(format!("JWKS refused: {e}")),
            },
        };
        match parsed {
            Ok((keys, body)) => {
                let count = keys.len();
                let mut doc = format!("{now_ms}\n").into_bytes();
                doc.extend_from_slice(&body);
                let published = store.set(&p.doc_key, &doc, None).is_ok();
                install(p, keys, now_ms);
                update_state(store, &p.state_key, |s| FetchState {
                    holder: worker_id,
                    lease_until_ms: 0,
                    failures: 0,
                    next_attempt_ms: 0,
                    doc_fetched_at_ms: if published {
                        now_ms
                    } else {
                        s.doc_fetched_at_ms
                    },
                });
                FetchOutcome::Installed { keys: count }
            }
            Err(reason) => {
                let mut retry_in_ms = 0;
                update_state(store, &p.state_key, |s| {
                    let failures = s.failures.saturating_add(1);
                    retry_in_ms = backoff_ms(&p.remote, failures, worker_id);
                    FetchState {
                        holder: worker_id,
                        lease_until_ms: 0,
                        failures,
                        next_attempt_ms: now_ms + retry_in_ms,
                        doc_fetched_at_ms: s.doc_fetched_at_ms,
                    }
                });
                FetchOutcome::Failed {
                    reason,
                    retry_in_ms,
                }
            }
        }
    }
}

fn read_state(
    store: &dyn SharedStore,
    key: &str,
) -> Result<(Option<FetchState>, Option<u32>), StoreError> {
    let (value, cas) = store.get(key)?;
    Ok((value.as_deref().and_then(FetchState::decode), cas))
}

fn update_state(
    store: &dyn SharedStore,
    key: &str,
    mut change: impl FnMut(&FetchState) -> FetchState,
) {
    for _ in 0..CAS_ATTEMPTS {
        let Ok((state, cas)) = read_state(store, key) else {
            return;
        };
        let next = change(&state.unwrap_or_default());
        match store.set(key, &next.encode(), cas.or(Some(0))) {
            Err(StoreError::CasMismatch) => continue,
            _ => return,
        }
    }
}

fn install_if_newer(p: &mut ProviderKeys, store: &dyn SharedStore, state: &FetchState) {
    if state.doc_fetched_at_ms <= p.installed_fetched_at_ms {
        return;
    }
    let Ok((Some(doc), _)) = store.get(&p.doc_key) else {
        return;
    };
    let Some(newline) = doc.iter().position(|b| *b == b'\n') else {
        return;
    };
    let (head, body) = doc.split_at(newline);
    let fetched_at = std::str::from_utf8(head)
        .ok()
        .and_then(|h| h.parse::<u64>().ok())
        .unwrap_or(0);
    if fetched_at <= p.installed_fetched_at_ms {
        return;
    }
    if let Ok(keys) = KeySet::from_jwks(body.get(1..).unwrap_or_default()) {
        if !keys.is_empty() {
            install(p, keys, fetched_at);
        }
    }
}

/// Installs a fetched key set. The generation (which voids cached verifications) moves only when the
/// keys differ from the installed ones: a refresh, or an unknown-`kid` refetch, that brings the same
/// keys keeps every cached token.
fn install(p: &mut ProviderKeys, keys: KeySet, fetched_at_ms: u64) {
    let unchanged = p.keys.as_deref().is_some_and(|old| old.same_keys(&keys));
    if !unchanged {
        p.keys = Some(Arc::new(keys));
        p.generation += 1;
    }
    p.installed_fetched_at_ms = fetched_at_ms;
    p.unknown_kid_seen = false;
}

fn fetch_due(p: &ProviderKeys, state: &FetchState, now_ms: u64) -> bool {
    if state.doc_fetched_at_ms == 0 {
        return true;
    }
    let age = now_ms.saturating_sub(state.doc_fetched_at_ms);
    let refresh_after = p.remote.cache_duration.as_millis() as u64 * REFRESH_AT_PERCENT / 100;
    if age >= refresh_after {
        return true;
    }
    match p.remote.refetch_on_unknown_kid {
        Some(min_interval) if p.unknown_kid_seen => age >= min_interval.as_millis() as u64,
        _ => false,
    }
}

/// `base * 2^(failures-1)`, capped at `max`, minus up to 20% jitter so that several Envoys do not retry
/// in lock-step.
fn backoff_ms(remote: &RemoteJwks, failures: u32, seed: u64) -> u64 {
    let base = remote.retry_base.as_millis() as u64;
    let max = remote.retry_max.as_millis() as u64;
    let exp = failures.saturating_sub(1).min(32);
    let raw = base.saturating_mul(1u64 << exp).min(max);
    let jitter = raw / 5 * (seed.wrapping_add(u64::from(failures)) % 100) / 100;
    raw - jitter
}

#[cfg(test)]
mod tests;
