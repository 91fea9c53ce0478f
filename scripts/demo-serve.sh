#!/usr/bin/env bash
# The inventory part of `make demo`: `apiguard serve` next to an Envoy whose apiguard filter sends its
# discovery batches to it (with its collector token), real requests with curl (declared, shadow,
# retired-version and deprecated traffic), then the inventory summary, the shadow and zombie APIs and
# the findings as the service reports them, and the page's address. DEMO_KEEP=1 keeps both running
# until Ctrl-C so that the page can be opened.
#
# Needs APIGUARD_ENVOY, APIGUARD_WASM and APIGUARD_BIN (the Makefile sets them). Ports: DEMO_SERVE_PORT
# (the service, 18010), DEMO_DISCOVERY_PORT (Envoy listener, 18011), DEMO_DISCOVERY_ADMIN_PORT (18012),
# DEMO_DISCOVERY_UPSTREAM_PORT (18013), DEMO_DISCOVERY_JWKS_PORT (18014, unused by this config).
set -euo pipefail

cd "$(dirname "$0")/.."
ENVOY=${APIGUARD_ENVOY:?set APIGUARD_ENVOY (make demo does)}
WASM=${APIGUARD_WASM:?set APIGUARD_WASM (make demo does)}
BIN=${APIGUARD_BIN:?set APIGUARD_BIN (make demo does)}
SERVE_PORT=${DEMO_SERVE_PORT:-18010}
PORT=${DEMO_DISCOVERY_PORT:-18011}
ADMIN_PORT=${DEMO_DISCOVERY_ADMIN_PORT:-18012}
UPSTREAM_PORT=${DEMO_DISCOVERY_UPSTREAM_PORT:-18013}
JWKS_PORT=${DEMO_DISCOVERY_JWKS_PORT:-18014}
READ_TOKEN=demo-read-token
RUN=.run/demo-serve
mkdir -p "$RUN"
rm -rf "${RUN:?}"/*

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

for p in "$SERVE_PORT" "$PORT" "$ADMIN_PORT" "$UPSTREAM_PORT" "$JWKS_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "port $p is in use; set the DEMO_*_PORT variables (see scripts/demo-serve.sh)" >&2
        exit 1
    fi
done

echo '{"keys": []}' >"$RUN/jwks.json"
python3 scripts/demo_servers.py "$UPSTREAM_PORT" "$JWKS_PORT" "$RUN/jwks.json" 2>"$RUN/servers.log" &
pids+=($!)

# The service reads the declared document and retired prefixes from the filter's own configuration.
"$BIN" serve --listen "127.0.0.1:$SERVE_PORT" --store "sqlite:$RUN/inventory.db" \
    --proxy-token demo-envoy=demo-proxy-token --read-token "$READ_TOKEN" \
    --filter-config envoy/demo-discovery.json 2>"$RUN/serve.log" &
pids+=($!)

# envoy/demo.yaml with this filter configuration and a `collector` cluster pointing at the service.
python3 - "$RUN/envoy.yaml" <<PY
import json, sys
config = json.dumps(json.load(open("envoy/demo-discovery.json")))
text = open("envoy/demo.yaml").read()
start = text.index("                configuration:")
end = text.index("          - name: envoy.filters.http.router")
block = ("                configuration:\n"
         "                  \"@type\": type.googleapis.com/google.protobuf.StringValue\n"
         "                  value: " + json.dumps(config) + "\n")
text = text[:start] + block + text[end:]
text += ("  - name: collector\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n"
         "      cluster_name: collector\n      endpoints:\n      - lb_endpoints:\n"
         "        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $SERVE_PORT}}}\n")
text = (text.replace("@LISTEN_PORT@", "$PORT").replace("@ADMIN_PORT@", "$ADMIN_PORT")
            .replace("@UPSTREAM_PORT@", "$UPSTREAM_PORT").replace("@JWKS_PORT@", "$JWKS_PORT")
            .replace("@WASM@", "$WASM"))
open(sys.argv[1], "w").write(text)
PY
"$ENVOY" -c "$RUN/envoy.yaml" --concurrency 2 --disable-hot-restart -l info --base-id 7 \
    --log-path "$RUN/envoy.log" >"$RUN/envoy.console" 2>&1 &
pids+=($!)

echo "== starting apiguard serve (http://127.0.0.1:$SERVE_PORT) and Envoy (log: $RUN/envoy.log) =="
ready=""
for _ in $(seq 1 200); do
    if curl -fs "http://127.0.0.1:$ADMIN_PORT/ready" >/dev/null 2>&1 &&
        curl -fs "http://127.0.0.1:$SERVE_PORT/healthz" >/dev/null 2>&1; then ready=1; break; fi
    sleep 0.1
done
if [ -z "$ready" ]; then
    echo "Envoy or the service did not become ready; last log lines:" >&2
    tail -n 20 "$RUN/envoy.log" "$RUN/envoy.console" "$RUN/serve.log" >&2 || true
    exit 1
fi

call() {
    local method=$1 path=$2
    shift 2
    printf '%-7s %-44s %s\n' "$method" "$path" \
        "$(curl -s -o /dev/null -w '%{http_code}' -X "$method" "$@" "http://127.0.0.1:$PORT$path")"
}
echo
echo "== traffic through Envoy + apiguard (declared, shadow, retired /v1/, deprecated) =="
call GET /api/v3/pet/42
call GET /api/v3/pet/43 -H "authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIn0.c2ln"
call GET "/api/v3/pet/findByStatus?status=sold&debug=1"
call POST /api/v3/pet -H "content-type: application/json" --data '{"name": "rex", "photoUrls": [], "owner": {"email": "jane@example.com"}}'
call GET /api/v3/store/inventory
call GET /api/v3/internal/export
call DELETE /api/v3/store/inventory
call GET /api/v3/user/logout
call GET /v1/pet/7
call GET "/v1/pet/8?api_key=secret"

echo
echo "== waiting for the filter's batches (flush_interval 1s) =="
api() { curl -fs -H "authorization: Bearer $READ_TOKEN" "http://127.0.0.1:$SERVE_PORT$1"; }
for _ in $(seq 1 150); do
    n=$(api /api/v1/summary | python3 -c 'import json,sys; print(json.load(sys.stdin)["endpoints"])' 2>/dev/null || echo 0)
    [ "$n" -ge 9 ] && break
    sleep 0.2
done

api /api/v1/summary >"$RUN/summary.json"
api /api/v1/endpoints >"$RUN/endpoints.json"
api /api/v1/report >"$RUN/report.json"
api /api/v1/findings >"$RUN/findings.json"
python3 - "$RUN" <<'PY'
import json, sys
run = sys.argv[1]
load = lambda n: json.load(open(f"{run}/{n}.json"))
s = load("summary")
print(f"\n== inventory: {s['services']} service(s), {s['endpoints']} endpoints, {s['findings']} findings ==")
print(f"   verdicts {s['by_verdict']}; findings by severity {s['findings_by_severity']}")
print(f"\n{'METHOD':7} {'PATH TEMPLATE':36} {'VERDICT':9} {'AUTH':22} {'REQS':>4}  FINDINGS")
for e in load("endpoints"):
    print(f"{e['method']:7} {e['path_template']:36} {e['verdict']:9} {','.join(e['auth']):22} {e['count']:>4}  {','.join(e['findings'])}")
r = load("report")
print("\n== shadow APIs (observed, not declared) ==")
for e in r["shadow"]:
    print(f"   {e['method']} {e['path_template']}")
print("== zombie APIs (retired prefix or deprecated, still called) ==")
for e in r["zombie"]:
    print(f"   {e['method']} {e['path_template']}")
print("== unused declared operations ==")
for e in r["unused"]:
    print(f"   {e['method']} {e['path_template']}")
print("== drift ==")
for d in r["drift"]:
    print(f"   {d['method']} {d['path_template']}: " + ", ".join(f"{u['kind']} {u['name']}" for u in d["undeclared"]))
print("\n== findings (severity, OWASP API Top 10 2023) ==")
for f in load("findings"):
    if f["severity"] in ("high", "medium"):
        print(f"   {f['severity']:6} {f['owasp']:10} {f['code']:32} {f.get('method','')} {f.get('path_template','')}")
PY
echo
echo "== the page: http://127.0.0.1:$SERVE_PORT/ (read token: $READ_TOKEN); spec: /api/v1/openapi/<service> =="
if [ "${DEMO_KEEP:-0}" = 1 ]; then
    echo "DEMO_KEEP=1: running until Ctrl-C"
    wait
fi
