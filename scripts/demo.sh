#!/usr/bin/env bash
# `make demo`: Envoy + apiguard.wasm + an echo upstream + a JWKS server, real requests with curl, one line
# per outcome, then everything is stopped (also on Ctrl-C or failure).
#
# Needs APIGUARD_ENVOY and APIGUARD_WASM (the Makefile sets both). Ports: DEMO_PORT (listener, 18000),
# DEMO_ADMIN_PORT (18001), DEMO_UPSTREAM_PORT (18002), DEMO_JWKS_PORT (18003).
set -euo pipefail

cd "$(dirname "$0")/.."
ENVOY=${APIGUARD_ENVOY:?set APIGUARD_ENVOY (make demo does)}
WASM=${APIGUARD_WASM:?set APIGUARD_WASM (make demo does)}
PORT=${DEMO_PORT:-18000}
ADMIN_PORT=${DEMO_ADMIN_PORT:-18001}
UPSTREAM_PORT=${DEMO_UPSTREAM_PORT:-18002}
JWKS_PORT=${DEMO_JWKS_PORT:-18003}
RUN=.run/demo
mkdir -p "$RUN"
rm -f "$RUN"/*

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

for p in "$PORT" "$ADMIN_PORT" "$UPSTREAM_PORT" "$JWKS_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "port $p is in use; set DEMO_PORT / DEMO_ADMIN_PORT / DEMO_UPSTREAM_PORT / DEMO_JWKS_PORT" >&2
        exit 1
    fi
done

echo "== signing demo tokens with the fixture keys (cargo run --example sign_token) =="
sign() { cargo run -q --example sign_token -- "$@"; }
sign jwks >"$RUN/jwks.json"
TOKEN_RS256=$(sign sign RS256)
TOKEN_ES256=$(sign sign ES256)
TOKEN_EDDSA=$(sign sign EdDSA --sub bob)
TOKEN_EXPIRED=$(sign sign ES256 --exp -60)
TOKEN_AUD=$(sign sign RS256 --aud other.example)
TOKEN_ISS=$(sign sign RS256 --iss https://evil.example)
TOKEN_TAMPERED=$(sign sign RS256 --tamper)
TOKEN_WRITER=$(sign sign ES256 --sub carol --scope "orders:read orders:write")
TOKEN_READER=$(sign sign ES256 --sub dave --scope "orders:read")

python3 scripts/demo_servers.py "$UPSTREAM_PORT" "$JWKS_PORT" "$RUN/jwks.json" 2>"$RUN/servers.log" &
pids+=($!)

sed -e "s|@LISTEN_PORT@|$PORT|; s|@ADMIN_PORT@|$ADMIN_PORT|; s|@UPSTREAM_PORT@|$UPSTREAM_PORT|" \
    -e "s|@JWKS_PORT@|$JWKS_PORT|; s|@WASM@|$WASM|" envoy/demo.yaml >"$RUN/envoy.yaml"
"$ENVOY" -c "$RUN/envoy.yaml" --concurrency 2 --disable-hot-restart -l info \
    --log-path "$RUN/envoy.log" >"$RUN/envoy.console" 2>&1 &
pids+=($!)

echo "== starting Envoy (log: $RUN/envoy.log) =="
ready=""
for _ in $(seq 1 150); do
    if curl -fs "http://127.0.0.1:$ADMIN_PORT/ready" >/dev/null 2>&1; then ready=1; break; fi
    if ! kill -0 "${pids[1]}" 2>/dev/null; then break; fi
    sleep 0.1
done
if [ -z "$ready" ]; then
    echo "Envoy did not become ready; last log lines:" >&2
    tail -n 20 "$RUN/envoy.log" "$RUN/envoy.console" >&2 || true
    exit 1
fi
# The filter fetches the JWKS once Envoy runs; wait (bounded, 20 s) for the fetch to be counted.
echo "== waiting for the filter's first JWKS fetch =="
for _ in $(seq 1 200); do
    curl -s "http://127.0.0.1:$ADMIN_PORT/stats?filter=apiguard_jwks_fetch_ok" |
        grep -q 'jwks_fetch_ok: [1-9]' && break
    sleep 0.1
done

# show SCENARIO PATH [curl args...]: one row: status, then the body (refusals) or what the upstream saw.
show() {
    local name=$1 path=$2
    shift 2
    local code
    code=$(curl -s -o "$RUN/body" -D "$RUN/headers" -w '%{http_code}' "$@" "http://127.0.0.1:$PORT$path")
    local detail
    if grep -qi '^x-echo: 1' "$RUN/headers"; then
        detail=$(python3 - "$RUN/body" <<'PY'
import json, sys
seen = json.load(open(sys.argv[1]))["headers"]
shown = []
for name in ("x-jwt-sub", "authorization"):
    shown.append(f"{name}: {seen[name][:24] + '...' if len(seen.get(name, '')) > 24 else seen[name]}"
                 if name in seen else f"no {name}")
payload = "x-jwt-payload present" if "x-jwt-payload" in seen else "no x-jwt-payload"
print("upstream saw " + ", ".join(shown) + ", " + payload)
PY
)
    else
        detail="body \"$(tr -d '\r\n' <"$RUN/body")\""
        local challenge
        challenge=$(grep -i '^www-authenticate:' "$RUN/headers" | tr -d '\r' | cut -d' ' -f2- || true)
        [ -n "$challenge" ] && detail="$detail; www-authenticate: $challenge"
    fi
    printf '%-44s %-4s %s\n' "$name" "$code" "$detail"
}

echo
printf '%-44s %-4s %s\n' "SCENARIO (request)" "CODE" "OUTCOME"
printf '%-44s %-4s %s\n' "------------------" "----" "-------"
show "public route, no token (GET /healthz)" /healthz
show "no token (GET /api/orders?id=1)" "/api/orders?id=1"
show "valid RS256 token" /api/orders -H "authorization: Bearer $TOKEN_RS256"
show "valid ES256 token" /api/orders -H "authorization: Bearer $TOKEN_ES256"
show "valid EdDSA token (sub bob)" /api/orders -H "authorization: Bearer $TOKEN_EDDSA"
show "valid token in ?access_token=" "/api/orders?access_token=$TOKEN_ES256"
show "expired token" /api/orders -H "authorization: Bearer $TOKEN_EXPIRED"
show "wrong audience (aud other.example)" /api/orders -H "authorization: Bearer $TOKEN_AUD"
show "foreign issuer" /api/orders -H "authorization: Bearer $TOKEN_ISS"
show "tampered signature" /api/orders -H "authorization: Bearer $TOKEN_TAMPERED"
show "not a JWT" /api/orders -H "authorization: Bearer hello.world"
show "spoofed x-jwt-sub: admin + valid token" /api/orders \
    -H "authorization: Bearer $TOKEN_RS256" -H "x-jwt-sub: admin"
show "path trick /healthz/%2e%2e/api/orders" /healthz/%2e%2e/api/orders --path-as-is
show "matrix parameter /api;jsessionid=1/orders" "/api;jsessionid=1/orders" --path-as-is
show "method override on /api/orders + token" /api/orders \
    -H "authorization: Bearer $TOKEN_RS256" -H "x-http-method-override: DELETE"

# order SCENARIO TOKEN BODY: POST /orders; prints the status and the body the client got.
order() {
    local name=$1 token=$2 body=$3 code
    code=$(curl -s -o "$RUN/body" -D "$RUN/headers" -w '%{http_code}' -X POST \
        -H "authorization: Bearer $token" -H "content-type: application/json" --data "$body" \
        "http://127.0.0.1:$PORT/orders")
    local detail
    if grep -qi '^x-echo: 1' "$RUN/headers"; then
        detail="client got back: $(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["body"]))' "$RUN/body")"
    else
        detail="body $(tr -d '\r\n' <"$RUN/body" | cut -c1-150)"
        local extra
        extra=$(grep -iE '^(www-authenticate|retry-after|ratelimit):' "$RUN/headers" | tr -d '\r' | paste -sd ';' - || true)
        [ -n "$extra" ] && detail="$detail; $extra"
    fi
    printf '%-44s %-4s %s\n' "$name" "$code" "$detail"
}

echo
echo "== POST /orders: JWT, then scope orders:write, then 3 requests a minute per user, then the schema; the"
echo "   upstream echoes the order back and apiguard masks personal data in the response =="
printf '%-44s %-4s %s\n' "SCENARIO (request)" "CODE" "OUTCOME"
printf '%-44s %-4s %s\n' "------------------" "----" "-------"
order "reader token (no orders:write)" "$TOKEN_READER" '{"item": "book", "quantity": 1}'
order "writer, body breaks the schema" "$TOKEN_WRITER" '{"item": "book", "quantity": 0, "coupon": "X"}'
order "writer, valid order with an email and card" "$TOKEN_WRITER" \
    '{"item": "book", "quantity": 2, "contact": "carol@example.com, card 4111 1111 1111 1111"}'
order "writer, valid order" "$TOKEN_WRITER" '{"item": "pen", "quantity": 1}'
order "writer, 4th order this minute" "$TOKEN_WRITER" '{"item": "ink", "quantity": 1}'

echo
echo "== JWKS fetches seen by the JWKS server: $(grep -c 'served /jwks.json' "$RUN/servers.log" || true) =="
echo
echo "== metrics: curl http://127.0.0.1:$ADMIN_PORT/stats?filter=apiguard =="
curl -s "http://127.0.0.1:$ADMIN_PORT/stats?filter=apiguard" | grep -v ': 0$' || true
echo "(counters at 0 left out)"
