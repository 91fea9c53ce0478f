//! `ApiGuardRoot` lives as long as the VM (one per worker, and one on the main thread): it owns the
//! compiled policy, the worker's token cache and remote-JWKS state, and creates an `ApiGuard` per
//! request.

use super::abi;
use super::http::ApiGuard;
use super::metrics::Metrics;
use super::store::HostStore;
use crate::config::Policy;
use crate::discovery::delivery::{self, Outcome};
use crate::discovery::event::Source;
use crate::discovery::{DiscoveryWorker, WorkerStats};
use crate::exchange::{Counter, Worker};
use crate::jwt::jwks_state::{FetchOrder, FetchOutcome, FetchResult};
use crate::ratelimit;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// How often each VM looks at the shared JWKS state (and fetches when it wins the lease).
const TICK: Duration = Duration::from_millis(500);

/// What one VM keeps between requests: the core's worker state and this VM's metric ids.
pub(super) struct Vm {
    pub(super) worker: Worker,
    pub(super) metrics: Metrics,
    /// Discovery figures already turned into metrics (metrics take deltas).
    discovery_reported: WorkerStats,
}

#[derive(Default)]
pub struct ApiGuardRoot {
    worker: Option<Rc<RefCell<Vm>>>,
    /// HTTP calls in flight, by token.
    calls: HashMap<u32, Call>,
}

/// What an HTTP call in flight is for.
enum Call {
    /// A JWKS fetch for this provider.
    Jwks(usize),
    /// A discovery batch with this outbox id.
    Discovery(u64),
}

/// Largest collector answer read (for an OTLP `partial_success`); a larger one is not read.
const MAX_COLLECTOR_ANSWER_BYTES: usize = 4096;

impl Context for ApiGuardRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(call) = self.calls.remove(&token_id) else {
            return;
        };
        let Some(worker) = self.worker.as_ref().map(Rc::clone) else {
            return;
        };
        let status = abi::header_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok());
        match call {
            Call::Jwks(provider) => {
                let mut vm = worker.borrow_mut();
                let result = match status {
                    None => FetchResult::NoResponse,
                    Some(_) if body_size > vm.worker.jwks.max_bytes(provider) => {
                        FetchResult::Oversized { bytes: body_size }
                    }
                    Some(status) => {
                        let body = abi::buffer(BufferType::HttpCallResponseBody, body_size)
                            .unwrap_or_default();
                        FetchResult::Response { status, body }
                    }
                };
                let outcome =
                    vm.worker
                        .jwks
                        .on_fetch_done(&HostStore, provider, super::now_ms(), result);
                report_fetch(&vm, provider, &outcome);
            }
            Call::Discovery(id) => {
                let outcome = status.map_or(Outcome::NoResponse, Outcome::Status);
                // Retry-After and an OTLP partial success; a larger body is not read.
                let retry_after =
                    abi::header_value(MapType::HttpCallResponseHeaders, "retry-after")
                        .ok()
                        .flatten();
                let body = if body_size <= MAX_COLLECTOR_ANSWER_BYTES {
                    abi::buffer(BufferType::HttpCallResponseBody, body_size).unwrap_or_default()
                } else {
                    Vec::new()
                };
                let answer = delivery::read_answer(retry_after.as_deref(), &body);
                let now = super::now_ms();
                let next = worker.borrow_mut().worker.discovery.as_mut().and_then(|d| {
                    d.finish_call_with(id, outcome, answer, now);
                    d.next_call(now)
                });
                if let Some(next) = next {
                    self.send_discovery(&worker, next);
                }
            }
        }
    }
}

impl ApiGuardRoot {
    /// Sends the discovery batch `id`; a call that cannot start is finished as unanswered.
    fn send_discovery(&mut self, vm: &Rc<RefCell<Vm>>, id: u64) {
        let mut vm = vm.borrow_mut();
        let w = &mut vm.worker;
        let (Some(config), Some(discovery)) = (w.policy.discovery.as_ref(), w.discovery.as_mut())
        else {
            return;
        };
        let dispatched = match discovery.callout(config, id) {
            Some(c) => {
                hostcalls::dispatch_http_call(c.cluster, c.headers, Some(c.body), vec![], c.timeout)
            }
            None => return,
        };
        match dispatched {
            Ok(token) => {
                self.calls.insert(token, Call::Discovery(id));
            }
            Err(e) => {
                log::warn!(
                    "{}: cannot call the discovery collector: {e:?}",
                    w.policy.name
                );
                discovery.finish_call(id, Outcome::NoResponse, super::now_ms());
            }
        }
    }
}

impl RootContext for ApiGuardRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match abi::buffer(BufferType::PluginConfiguration, usize::MAX) {
            Ok(bytes) => bytes,
            Err(e) => {
                log::error!("apiguard: cannot read the plugin configuration: {e:?}");
                return false;
            }
        };
        // The same function `apiguard check` calls (cli/src/check.rs).
        let policy = match Policy::from_plugin_configuration(&bytes) {
            Ok(policy) => Rc::new(policy),
            Err(e) => {
                // Envoy refuses the filter when on_configure returns false; this line says why.
                log::error!("apiguard: {e}");
                return false;
            }
        };
        if let Err(e) = probe_service_clusters(&policy) {
            log::error!("apiguard: {e}");
            return false;
        }
        let jwks = policy.jwks_coordinator(worker_id());
        if let Err(e) = jwks.ensure_shared_records(&HostStore) {
            log::warn!(
                "{}: cannot initialise shared JWKS state: {e:?}",
                policy.name
            );
        }
        let seed = if policy.rate_limits.is_empty() {
            None
        } else {
            let mut candidate = [0u8; 16];
            if let Err(e) = getrandom::getrandom(&mut candidate) {
                log::error!(
                    "{}: no randomness for the rate-limit seed: {e}",
                    policy.name
                );
                return false;
            }
            match ratelimit::ensure_seed(&HostStore, &policy.name, candidate) {
                Ok(seed) => Some(seed),
                Err(e) => {
                    // Workers with different seeds would give one client two budgets: refuse instead.
                    log::error!(
                        "{}: cannot agree on the rate-limit seed in shared data: {e:?}",
                        policy.name
                    );
                    return false;
                }
            }
        };
        log::info!(
            "{}: configured: {} rule(s), {} JWT provider(s), {} API-key set(s), {} rate limit(s), mode {:?}",
            policy.name,
            policy.rules.len(),
            policy.providers.len(),
            policy.api_keys.sets.len(),
            policy.rate_limits.policies.len(),
            policy.mode
        );
        let discovery = policy.discovery.as_ref().map(|d| {
            let source = Source {
                plugin: policy.name.clone(),
                worker: format!("{:016x}", worker_id()),
                node: abi::property(&["node", "id"])
                    .ok()
                    .flatten()
                    .and_then(|b| String::from_utf8(b).ok()),
            };
            DiscoveryWorker::new(d, source, super::now_ms())
        });
        if (!jwks.is_empty() || discovery.is_some()) && hostcalls::set_tick_period(TICK).is_err() {
            log::error!("{}: cannot set the tick period", policy.name);
            return false;
        }
        let metrics = Metrics::define(&policy);
        let mut worker = Worker::new(policy, jwks);
        worker.seed = seed;
        worker.discovery = discovery;
        self.worker = Some(Rc::new(RefCell::new(Vm {
            worker,
            metrics,
            discovery_reported: WorkerStats::default(),
        })));
        // No fetch from here: Envoy also configures short-lived VMs that are destroyed right after,
        // cancelling their calls; the first tick (every VM that serves traffic ticks) fetches.
        true
    }

    fn on_tick(&mut self) {
        let Some(worker) = self.worker.as_ref().map(Rc::clone) else {
            return;
        };
        let now = super::now_ms();
        let orders = worker.borrow_mut().worker.jwks.on_tick(&HostStore, now);
        for order in orders {
            match dispatch(&order) {
                Ok(token) => {
                    self.calls.insert(token, Call::Jwks(order.provider));
                }
                Err(e) => {
                    let mut w = worker.borrow_mut();
                    log::warn!(
                        "{}: cannot call cluster {:?} for JWKS: {e:?}",
                        w.worker.policy.name,
                        order.cluster
                    );
                    let outcome = w.worker.jwks.on_fetch_done(
                        &HostStore,
                        order.provider,
                        now,
                        FetchResult::NoResponse,
                    );
                    report_fetch(&w, order.provider, &outcome);
                }
            }
        }
        let flush = {
            let mut vm = worker.borrow_mut();
            let vm = &mut *vm;
            match (
                vm.worker.policy.discovery.as_ref(),
                vm.worker.discovery.as_mut(),
            ) {
                (Some(config), Some(discovery)) => {
                    let call = discovery.tick(config, now);
                    let stats = discovery.stats();
                    vm.metrics.discovery(&vm.discovery_reported, &stats);
                    vm.discovery_reported = stats;
                    call
                }
                _ => None,
            }
        };
        if let Some(id) = flush {
            self.send_discovery(&worker, id);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let worker = self.worker.as_ref().map(Rc::clone)?;
        Some(Box::new(ApiGuard::new(worker)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

fn dispatch(order: &FetchOrder) -> Result<u32, proxy_wasm::types::Status> {
    hostcalls::dispatch_http_call(
        &order.cluster,
        vec![
            (":method", "GET"),
            (":path", &order.path),
            (":authority", &order.authority),
            ("accept", "application/json"),
        ],
        None,
        vec![],
        Duration::from_millis(order.timeout_ms),
    )
}

fn report_fetch(vm: &Vm, provider: usize, outcome: &FetchOutcome) {
    let name = &vm.worker.policy.name;
    let provider_name = vm.worker.jwks.provider_name(provider);
    match outcome {
        FetchOutcome::Installed { keys } => {
            vm.metrics.inc(Counter::JwksFetchOk);
            log::info!("{name}: JWKS for provider {provider_name:?} fetched: {keys} key(s)");
        }
        FetchOutcome::Failed {
            reason,
            retry_in_ms,
        } => {
            vm.metrics.inc(Counter::JwksFetchFailed);
            log::warn!("{name}: JWKS fetch for provider {provider_name:?} failed: {reason}; retry in {retry_in_ms} ms");
        }
    }
}

/// A random identity for this VM, used as the JWKS lease holder.
fn worker_id() -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::getrandom(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        // Without randomness, the clock still differs between VMs started at different instants.
        Err(_) => super::now_ms(),
    }
}

/// Refuses a configuration whose rate limit service cluster Envoy does not know: a gRPC call to an
/// unknown cluster fails at once (`ParseFailure`), a call to a known one starts and is cancelled
/// at once. The error names the JSON path of the `cluster` member.
fn probe_service_clusters(policy: &crate::config::Policy) -> Result<(), String> {
    use crate::ratelimit::service::{METHOD_NAME, SERVICE_NAME};
    let mut probed: Vec<&str> = Vec::new();
    for limit in &policy.rate_limits.policies {
        let Some(service) = limit.service.as_ref() else {
            continue;
        };
        if probed.contains(&service.cluster.as_str()) {
            continue;
        }
        probed.push(&service.cluster);
        match hostcalls::dispatch_grpc_call(
            &service.cluster,
            SERVICE_NAME,
            METHOD_NAME,
            vec![],
            Some(&[]),
            Duration::from_millis(1),
        ) {
            Ok(token) => {
                // Nothing is waiting for this answer; Envoy answers Ok or NotFound here.
                let _ = hostcalls::cancel_grpc_call(token);
            }
            Err(proxy_wasm::types::Status::ParseFailure) => {
                return Err(format!(
                    "rate_limits.{}.service.cluster: Envoy has no cluster named {:?} (it must exist and speak HTTP/2)",
                    limit.name, service.cluster
                ));
            }
            Err(e) => log::warn!(
                "{}: cannot check the rate limit service cluster {:?}: {e:?}",
                policy.name,
                service.cluster
            ),
        }
    }
    Ok(())
}
