#!/usr/bin/env bash
# `make demo` (second part), `make demo-rls`: two Envoy processes with apiguard share one budget held by a rate
# limit service (testing/rls-server: Kuadrant's limitador behind the v3 RateLimitService API, counting in a
# redis-server of its own; in memory when redis-server is missing). Requests alternate between the two Envoys;
# the key `alice` has 5 requests an hour in total, `bob` his own 5.
#
# Needs APIGUARD_ENVOY, APIGUARD_WASM and target/debug/rls-server (the Makefile provides them). Ports:
# DEMO_RLS_PORT (first of 6 consecutive ports, 18010).
set -euo pipefail

cd "$(dirname "$0")/.."
ENVOY=${APIGUARD_ENVOY:?set APIGUARD_ENVOY (make demo does)}
WASM=${APIGUARD_WASM:?set APIGUARD_WASM (make demo does)}
RLS_SERVER=${APIGUARD_RLS_SERVER:-target/debug/rls-server}
BASE=${DEMO_RLS_PORT:-18010}
REDIS_PORT=$BASE RLS_PORT=$((BASE + 1))
RUN=.run/demo-rls
mkdir -p "$RUN"
rm -f "$RUN"/*

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

for p in $(seq "$BASE" $((BASE + 5))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "port $p is in use; set DEMO_RLS_PORT" >&2
        exit 1
    fi
done

cat >"$RUN/limits.yaml" <<'YAML'
- namespace: apiguard
  name: per_user
  max_value: 5
  seconds: 3600
  conditions: ['descriptors[0].policy == "per_user"']
  variables: ['descriptors[0].user']
YAML

if command -v redis-server >/dev/null 2>&1; then
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$RUN/redis.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && break; sleep 0.1; done
    storage=(--redis "redis://127.0.0.1:$REDIS_PORT")
    echo "== rate limit service: limitador on redis-server :$REDIS_PORT =="
else
    storage=(--memory)
    echo "== rate limit service: limitador in memory (no redis-server) =="
fi
"$RLS_SERVER" --listen "127.0.0.1:$RLS_PORT" --limits "$RUN/limits.yaml" "${storage[@]}" \
    --response-header x-rls:limitador >"$RUN/rls.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$RLS_PORT") 2>/dev/null && break; sleep 0.1; done

PLUGIN='{"rate_limits": {"per_user": {"key": [{"header": "x-user"}], "headers_on_allowed": true,
  "service": {"cluster": "ratelimit", "domain": "apiguard", "timeout": "500ms",
  "descriptors": [{"key": "policy", "value": "per_user"}, {"key": "user", "from": {"header": "x-user"}}]}}},
  "rules": [{"match": {"prefix": "/"}, "rate_limits": "per_user"}]}'

start_envoy() { # name listen admin
    cat >"$RUN/$1.yaml" <<YAML
admin: {address: {socket_address: {address: 127.0.0.1, port_value: $3}}}
static_resources:
  listeners:
  - address: {socket_address: {address: 127.0.0.1, port_value: $2}}
    filter_chains: [{filters: [{name: envoy.filters.network.http_connection_manager, typed_config: {
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager,
      stat_prefix: demo, use_remote_address: true,
      route_config: {virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /},
        direct_response: {status: 200, body: {inline_string: "hello from $1\n"}}}]}]},
      http_filters: [
        {name: envoy.filters.http.wasm, typed_config: {
          "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm,
          config: {name: apiguard, root_id: apiguard,
            vm_config: {vm_id: apiguard, runtime: envoy.wasm.runtime.v8, code: {local: {filename: $WASM}}},
            configuration: {"@type": type.googleapis.com/google.protobuf.StringValue, value: '$PLUGIN'}}}},
        {name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]}}]}]
  clusters:
  - name: ratelimit
    type: STATIC
    connect_timeout: 1s
    # gRPC from the filter needs HTTP/2 to the service.
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment: {cluster_name: ratelimit, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $RLS_PORT}}}}]}]}
YAML
    "$ENVOY" -c "$RUN/$1.yaml" --concurrency 2 --disable-hot-restart --base-id $(( $2 % 60000 )) -l info \
        --log-path "$RUN/$1.log" >"$RUN/$1.console" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 150); do
        curl -fs "http://127.0.0.1:$3/ready" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "Envoy $1 did not become ready:" >&2
    tail -n 20 "$RUN/$1.log" "$RUN/$1.console" >&2 || true
    exit 1
}
A_PORT=$((BASE + 2)) A_ADMIN=$((BASE + 3)) B_PORT=$((BASE + 4)) B_ADMIN=$((BASE + 5))
echo "== starting two Envoys (--concurrency 2 each): proxy-a :$A_PORT, proxy-b :$B_PORT =="
start_envoy proxy-a "$A_PORT" "$A_ADMIN"
start_envoy proxy-b "$B_PORT" "$B_ADMIN"

send() { # proxy port user
    local out code remaining retry
    out=$(curl -s -D - -o /dev/null -H "x-user: $3" "http://127.0.0.1:$2/orders")
    code=$(printf '%s' "$out" | head -n1 | awk '{print $2}')
    remaining=$(printf '%s' "$out" | tr -d '\r' | awk -F': ' 'tolower($1)=="ratelimit" {print $2}')
    retry=$(printf '%s' "$out" | tr -d '\r' | awk -F': ' 'tolower($1)=="retry-after" {print "retry-after " $2}')
    printf '  %-8s %-6s -> %s  %s %s\n' "$1" "$3" "$code" "$remaining" "$retry"
}
echo "== alice: 5 requests an hour in total, whichever proxy she reaches =="
for i in $(seq 1 8); do
    if [ $((i % 2)) -eq 1 ]; then send proxy-a "$A_PORT" alice; else send proxy-b "$B_PORT" alice; fi
done
echo "== bob: his own budget =="
send proxy-a "$A_PORT" bob
send proxy-b "$B_PORT" bob
echo "== counters (both proxies) =="
sleep 5.5 # histograms show after the stats flush (5 s)
for admin in "$A_ADMIN" "$B_ADMIN"; do
    curl -s "http://127.0.0.1:$admin/stats?filter=apiguard_rl_per_user_(allowed|limited|service_calls|service_latency_us)$" | sed 's/^/  /'
done
