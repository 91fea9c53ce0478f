#!/usr/bin/env python3
"""`make bench`: apiguard against Envoy alone and Envoy's native filters, on loopback, with wrk.

Suites (BENCH_SUITES, default all, in this order): micro, ready, jwt, limit, schema, redact, discovery, pipeline,
rls. Each writes its own section of docs/benchmarks.md. `micro` runs the native `cargo bench` targets and copies their
tables. `ready` starts fresh Envoys (none, noop, apiguard with the jwt suite's RS256 policy) in BENCH_READY_ROUNDS (8)
interleaved rounds and reports the time to /ready and Envoy's CPU time until then (V8 compiles the module first).

Every Envoy suite has two reference rows: its baseline (Envoy alone, no filter) and `noop`, a proxy-wasm filter that
does nothing (bench/noop/, APIGUARD_NOOP_WASM): the floor F any Rust proxy-wasm filter pays in V8. Each row is also
reported as "X over no-op" (its Envoy CPU per request minus the no-op row's), and X / F. The jwt suite:

Configurations run one after another, in interleaved rounds (A B C ... A B C ...), each in a fresh Envoy:
  none                    Envoy alone (direct_response route, no filter)
  noop                    the no-op proxy-wasm filter (the floor)
  native-<alg>            Envoy's jwt_authn, same key and token, jwt_cache_config on (like with like)
  apiguard-<alg>          apiguard, same key and token, verified-token cache on
  native-nocache-<alg>    jwt_authn without its cache: one signature check per request
  apiguard-nocache-<alg>  apiguard with jwt_cache.max_entries = 0: one signature check per request
for alg in RS256, ES256, ES384, EdDSA. Reported per configuration (median over rounds): req/s, p50, p99, Envoy CPU per
request (process CPU time delta / requests, the steadiest figure when wrk and Envoy share 2 cores), RSS, time to
/ready. The uncached rows give the cost of one signature verification (uncached minus cached CPU per request).

Measuring F and X: Envoy (concurrency 1) runs pinned to one CPU and wrk, the upstream Envoy and the collector to the
other (`taskset`, BENCH_PIN=1, CPUs BENCH_ENVOY_CPUS=0 and BENCH_CLIENT_CPUS=1), so the client never runs on Envoy's
core; rows with --concurrency 2 are not pinned (Envoy needs both cores). Each round runs the configurations in a
rotated order (round r starts at the r-th), and every figure is reported as its median over the rounds with the spread
(min-max). F and X are computed from same-round pairs: F_r = noop_r - none_r, X_r = row_r - noop_r, then the median
and min-max of those; X / F is median X_r / median F_r.

The `soak` suite (not in the default BENCH_SUITES): apiguard with every feature (the pipeline suite's `everything`)
and Envoy alone, both started once and driven for BENCH_SOAK_SECONDS (600) in alternating slices; every
BENCH_SOAK_SAMPLE seconds (60) it records CPU per request, p99 and RSS of both, and reports the first sample against
the last (nothing may grow) and RSS over Envoy alone (target: at most +60 MiB).

Environment: APIGUARD_ENVOY, APIGUARD_WASM, APIGUARD_NOOP_WASM (set by make), BENCH_ROUNDS (5), BENCH_SECONDS (2),
BENCH_CONNECTIONS (16), BENCH_CONCURRENCY (Envoy workers, 1), BENCH_ALGS (RS256,ES256,ES384,EdDSA), BENCH_OUT (a markdown
file to write the results section into, docs/benchmarks.md by make), BENCH_VARIANTS ("label=path,label=path": every
apiguard row once per build, e.g. before and after a change), BENCH_UNCACHED (1), BENCH_MEMORY (1: the limiter memory
run), BENCH_MICRO (the cargo benches of the micro suite), BENCH_PIN, BENCH_ENVOY_CPUS, BENCH_CLIENT_CPUS,
BENCH_SOAK_SECONDS, BENCH_SOAK_SAMPLE.
"""

import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ENVOY = os.environ["APIGUARD_ENVOY"]
WASM = os.environ["APIGUARD_WASM"]
NOOP_WASM = os.environ.get("APIGUARD_NOOP_WASM")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "2"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "1"))
ALGS = os.environ.get("BENCH_ALGS", "RS256,ES256,ES384,EdDSA").split(",")
SUITES = os.environ.get("BENCH_SUITES", "micro,ready,jwt,limit,schema,redact,discovery,pipeline,rls").split(",")
READY_ROUNDS = int(os.environ.get("BENCH_READY_ROUNDS", "8"))
OUT = os.environ.get("BENCH_OUT")
# Compare builds of the filter in the same run: "label=path,label=path" (e.g. opt-levels).
VARIANTS = [v.split("=", 1) for v in os.environ["BENCH_VARIANTS"].split(",")] if os.environ.get("BENCH_VARIANTS") \
    else [("", WASM)]
UNCACHED = os.environ.get("BENCH_UNCACHED", "1") == "1"
ISSUER, AUDIENCE = "https://issuer.example", "api.example"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Envoy on one core, its clients (wrk, upstream Envoy, collector) on the other: see the docstring.
PIN = os.environ.get("BENCH_PIN", "1") == "1" and bool(shutil.which("taskset")) and (os.cpu_count() or 1) >= 2
ENVOY_CPUS = os.environ.get("BENCH_ENVOY_CPUS", "0")
CLIENT_CPUS = os.environ.get("BENCH_CLIENT_CPUS", "1")
ALL_CPUS = f"0-{(os.cpu_count() or 1) - 1}"


def pinned(cmd, cpus):
    """`cmd` run on `cpus` when pinning is on (and `cpus` is set)."""
    return ["taskset", "-c", cpus, *cmd] if PIN and cpus else cmd


def cpu_set(text):
    """taskset's list syntax ("1", "1,3", "2-3") as a set of CPU numbers."""
    cpus = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


# --concurrency 2 rows: two Envoy workers, 8 connections each, compared with their own baseline and floor.
C2 = {"concurrency": 2, "connections": 16, "floor": "noop-c2"}


def pin_note():
    if not PIN:
        return "not pinned (BENCH_PIN=0, no taskset or one core)"
    return (f"Envoy pinned to CPU {ENVOY_CPUS}, wrk/upstream/collector to CPU {CLIENT_CPUS} "
            "(--concurrency 2 rows unpinned)")


def sign(*args):
    out = subprocess.run(["cargo", "run", "-q", "--example", "sign_token", "--", *args],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listener(port, filters, body="ok", upstream=None, route_extra=None):
    # With an upstream port, the route proxies to it (the request body then really flows through the
    # filter); without, Envoy answers itself (direct_response). `route_extra`: more RouteAction fields
    # (the native ratelimit filter's `rate_limits`).
    if upstream:
        action = {"route": dict({"cluster": "upstream", "timeout": "5s"}, **(route_extra or {}))}
    else:
        action = {"direct_response": {"status": 200, "body": {"inline_string": body}},
                  "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}}]}
    return {
        "name": "main",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "bench",
                "route_config": {"max_direct_response_body_size_bytes": 1048576, "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                    dict({"match": {"prefix": "/"}}, **action)]}]},
                "http_filters": filters + [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
            }}]}],
    }


def apiguard_filter(jwks, cache_entries, wasm=WASM, config=None):
    config = config or {
        "jwt_cache": {"max_entries": cache_entries},
        "jwt_providers": {"bench": {"issuer": ISSUER, "audiences": [AUDIENCE],
                                     "local_jwks": {"inline_string": jwks},
                                     "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]}},
        "rules": [{"match": {"prefix": "/"}, "jwt": {"provider": "bench"}}],
    }
    return {"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": "apiguard", "root_id": "apiguard",
                   "vm_config": {"vm_id": "apiguard", "runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": wasm}}},
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                     "value": json.dumps(config)}}}}


def noop_filter():
    """The floor: a proxy-wasm filter whose callbacks all return Continue (bench/noop/), in its own VM."""
    return {"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": "noop", "root_id": "noop",
                   "vm_config": {"vm_id": "noop", "runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": NOOP_WASM}}}}}}


def native_filter(jwks, cache):
    provider = {"issuer": ISSUER, "audiences": [AUDIENCE], "local_jwks": {"inline_string": jwks},
                "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]}
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": 100}
    return {"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"bench": provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]}}


def static_cluster(name, port):
    return {"name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}


def bootstrap(port, admin, filters, body="ok", upstream=None, collector=None, extra=None):
    extra = extra or {}
    clusters = list(extra.get("clusters", []))
    if upstream:
        clusters.append(static_cluster("upstream", upstream))
    if collector:
        clusters.append(static_cluster("collector", collector))
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "static_resources": {"listeners": [listener(port, filters, body, upstream, extra.get("route"))],
                                 "clusters": clusters}}


class Envoy:
    def __init__(self, config, workdir, name, body="ok", upstream=None, collector=None, concurrency=None, extra=None,
                 cpus=None):
        self.port, self.admin = free_port(), free_port()
        path = os.path.join(workdir, f"{name}.json")
        with open(path, "w") as f:
            json.dump(bootstrap(self.port, self.admin, config, body, upstream, collector, extra), f)
        self.log = open(os.path.join(workdir, f"{name}.log"), "w")
        start = time.monotonic()
        workers = concurrency or CONCURRENCY
        # A one-worker Envoy on its own core; more workers get every core.
        if cpus is None:
            cpus = ENVOY_CPUS if workers == 1 else ALL_CPUS
        self.proc = subprocess.Popen(pinned([ENVOY, "-c", path, "--concurrency", str(workers), "--disable-hot-restart",
                                             "-l", "warning"], cpus), stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(300):
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited, see {self.log.name}")
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/ready", timeout=1).status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.02)
        else:
            raise RuntimeError("envoy not ready in 6 s")
        self.ready_ms = (time.monotonic() - start) * 1000

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def to_ms(text):
    """wrk's latency figure ("574.00us", "1.02ms", "1.10s", "2.00m") in milliseconds; NaN if unreadable."""
    match = re.match(r"([\d.]+)(us|ms|s|m|h)$", text or "")
    if not match:
        print(f"unreadable wrk latency {text!r}", file=sys.stderr)
        return float("nan")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}[unit]


def percentile(out, label):
    match = re.search(r"^\s+" + label + r"\s+(\S+)\s*$", out, re.M)
    if not match:
        print(f"no {label} latency in wrk output:\n{out}", file=sys.stderr)
    return match.group(1) if match else None


def wrk(port, token, seconds, script=None, connections=None):
    cmd = ["wrk", "-t1", f"-c{connections or CONNECTIONS}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}/api/x"]
    if token:
        cmd[1:1] = ["-H", f"Authorization: Bearer {token}"]
    if script:
        cmd[1:1] = ["-s", script]
    out = subprocess.run(pinned(cmd, CLIENT_CPUS), check=True, capture_output=True, text=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": to_ms(percentile(out, "50%")),
            "p99": to_ms(percentile(out, "99%")),
            "requests": requests, "errors": int(non2xx.group(1)) if non2xx else 0}


class Case:
    """One configuration: the filters, the token wrk sends, the route's body, a wrk Lua script, whether the
    route proxies to an upstream Envoy (else Envoy answers itself), whether a collector is needed, Envoy's
    worker count and wrk's connections (defaults: BENCH_CONCURRENCY, BENCH_CONNECTIONS), and the name of the
    case it is compared with for "X over no-op" (default: the suite's `noop` row)."""

    def __init__(self, name, filters, token=None, body="ok", script=None, upstream=False, collector=False,
                 seconds=None, concurrency=None, connections=None, floor="noop", extra=None):
        self.name, self.filters, self.token, self.body, self.script = name, filters, token, body, script
        self.upstream, self.collector, self.seconds = upstream, collector, seconds or SECONDS
        self.concurrency, self.connections, self.floor = concurrency, connections, floor
        # {"clusters": [...], "route": {...}}: more clusters, more RouteAction fields.
        self.extra = extra


def with_variants(cases):
    """With BENCH_VARIANTS, every apiguard row once per build (label appended to its name); the jwt suite
    does this itself."""
    if len(VARIANTS) < 2:
        return cases
    out = []
    for case in cases:
        if not any(f.get("typed_config", {}).get("config", {}).get("name") == "apiguard" for f in case.filters):
            out.append(case)
            continue
        for label, wasm in VARIANTS:
            variant = Case.__new__(Case)
            variant.__dict__.update(case.__dict__)
            variant.name = case.name.replace("apiguard", f"apiguard{label}", 1)
            variant.filters = json.loads(json.dumps(case.filters).replace(json.dumps(WASM), json.dumps(wasm)))
            out.append(variant)
    return out


def with_floor(cases):
    """The suite's cases with a `noop` row (same route, body, script and workers as the baseline) after the
    baseline, and one `noop-<suffix>` after every other baseline that names its own floor."""
    if not NOOP_WASM:
        return cases
    out = []
    for case in cases:
        out.append(case)
        if not case.filters and (case is cases[0] or case.floor != "noop"):
            floor = case.floor if case is not cases[0] else "noop"
            noop = Case.__new__(Case)
            noop.__dict__.update(case.__dict__)
            noop.name, noop.filters, noop.floor = floor, [noop_filter()], floor
            out.append(noop)
    return out


def run_one(case, workdir):
    upstream = Envoy([], workdir, case.name + "-upstream", case.body, cpus=CLIENT_CPUS) if case.upstream else None
    collector = Collector() if case.collector else None
    try:
        result = measure(case, workdir, upstream.port if upstream else None, collector.port if collector else None)
        if collector:
            result["collector_batches"] = collector.batches
        return result
    finally:
        if upstream:
            upstream.stop()
        if collector:
            collector.stop()


def measure(case, workdir, upstream_port, collector_port):
    envoy = Envoy(case.filters, workdir, case.name, case.body, upstream_port, collector_port, case.concurrency,
                  getattr(case, "extra", None))
    try:
        if not first_request_passes(envoy.port, case):
            raise RuntimeError(f"{case.name}: requests are refused; see {envoy.log.name}")
        cpu0 = envoy.cpu_seconds()
        result = wrk(envoy.port, case.token, case.seconds, case.script, case.connections)
        cpu = envoy.cpu_seconds() - cpu0
        if result["errors"]:
            raise RuntimeError(f"{case.name}: {result['errors']} non-2xx responses")
        result["cpu_us"] = cpu / result["requests"] * 1e6
        result["stages"] = stage_times(envoy)
        result["rss"] = envoy.rss_mib()
        result["ready_ms"] = envoy.ready_ms
        return result
    finally:
        envoy.stop()


def stage_times(envoy):
    """A `stage-timing` build's in-VM microseconds per call of each callback (warm-up included), from its
    `<name>_stage_<callback>_ns` / `_calls` counters; empty for any other build."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{envoy.admin}/stats?filter=_stage_", timeout=5).read().decode()
    except OSError:
        return {}
    found = {(stage, what): int(n) for stage, what, n in re.findall(r"_stage_(\w+?)_(ns|calls): (\d+)", text)}
    return {stage: found[(stage, "ns")] / calls / 1000 for (stage, what), calls in found.items()
            if what == "calls" and calls and (stage, "ns") in found}


class Collector:
    """A discovery collector: counts the batches POSTed to it."""

    def __init__(self):
        import http.server
        import threading
        owner = self
        self.batches = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length", "0")))
                owner.batches += 1
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def lua_post(workdir, name, body):
    path = os.path.join(workdir, f"{name}.lua")
    with open(path, "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["content-type"] = "application/json"\n'
                f"wrk.body = {json.dumps(body)}\n")
    return path


def lua_paths(workdir, count):
    path = os.path.join(workdir, f"paths{count}.lua")
    with open(path, "w") as f:
        f.write("math.randomseed(7)\nrequest = function()\n"
                f"  return wrk.format(nil, \"/api/resource\" .. math.random(1, {count}) .. \"/items\")\nend\n")
    return path


def first_request_passes(port, case):
    """One request as wrk will send it (scripted cases: one second of wrk), which also warms the VM up."""
    if case.script:
        return wrk(port, case.token, 1, case.script)["errors"] == 0
    headers = {"Authorization": f"Bearer {case.token}"} if case.token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/x", headers=headers)
    try:
        for _ in range(20):
            urllib.request.urlopen(request, timeout=5).read()
        return True
    except OSError:
        return False


def native_ratelimit():
    """Envoy's local_ratelimit with one shared bucket that never runs dry (the cost of deciding)."""
    return {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": "bench_rl",
        "token_bucket": {"max_tokens": 1000000000, "tokens_per_fill": 1000000000, "fill_interval": "1s"},
        "filter_enabled": {"runtime_key": "rl_enabled", "default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "filter_enforced": {"runtime_key": "rl_enforced", "default_value": {"numerator": 100, "denominator": "HUNDRED"}}}}


def provider_config(jwks):
    return {"issuer": ISSUER, "audiences": [AUDIENCE], "local_jwks": {"inline_string": jwks},
            "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]}


# A limit that never denies: the cost of the decision and the shared-data update, not of refusals.
NEVER_DENY = {"requests": 1000000000, "period": "1s"}

PII_RECORD = ('{{"id": {i}, "name": "Customer {i}", "email": "customer{i}@example.com", '
              '"card": "4111 1111 1111 1111", "phone": "+1 415 555 {i:04d}", "note": "order {i} shipped to '
              'the usual address, nothing unusual", "iban": "DE89 3704 0044 0532 0130 00"}}')


# The same records with nothing sensitive in them (ids, dates, amounts, prose): what most responses look like, and
# the shape of examples/request_path.rs's `redact-4KiB-clean`.
CLEAN_RECORD = ('{{"id": {i}, "name": "Customer {i}", "created_at": "2024-05-1{d}T09:30:00Z", "amount": {a}.{c:02d}, '
                '"status": "shipped", "note": "order {i} shipped to the usual address, nothing unusual", '
                '"tags": ["vip", "newsletter"]}}')


def json_body(size, clean=False):
    records, i = [], 0
    while sum(len(r) + 1 for r in records) < size - 64:
        records.append(CLEAN_RECORD.format(i=i, d=i % 10, a=i * 7 % 1000, c=i % 100) if clean
                       else PII_RECORD.format(i=i))
        i += 1
    return '{"records": [' + ",".join(records) + "]}"


def lua_distinct_keys(workdir, keys):
    path = os.path.join(workdir, f"keys{keys}.lua")
    with open(path, "w") as f:
        f.write("math.randomseed(42)\nrequest = function()\n"
                f"  return wrk.format(nil, nil, {{[\"x-tenant\"] = \"t\" .. math.random(1, {keys})}})\nend\n")
    return path


# apiguard with one rule that asks for nothing: its fixed cost (module, headers read, request counter), the first
# of the cumulative stages (rule only -> + JWT -> + limit) that attribute X.
RULE_ONLY = {"rules": [{"match": {"prefix": "/"}}]}


def suite_jwt(jwks, workdir):
    cases = [Case("none", [])]
    cases += [Case(f"apiguard{label}-rule-only", [apiguard_filter(jwks, 0, wasm, RULE_ONLY)]) for label, wasm in VARIANTS]
    for alg in ALGS:
        token = sign("sign", alg, "--iss", ISSUER, "--aud", AUDIENCE, "--exp", "86400")
        cases.append(Case(f"native-{alg}", [native_filter(jwks, True)], token))
        for label, wasm in VARIANTS:
            cases.append(Case(f"apiguard{label}-{alg}", [apiguard_filter(jwks, 1024, wasm)], token))
        if UNCACHED:
            cases.append(Case(f"native-nocache-{alg}", [native_filter(jwks, False)], token))
            for label, wasm in VARIANTS:
                cases.append(Case(f"apiguard{label}-nocache-{alg}", [apiguard_filter(jwks, 0, wasm)], token))
    # The cached case again with two workers (one token cache per worker VM).
    alg = ALGS[0]
    token = sign("sign", alg, "--iss", ISSUER, "--aud", AUDIENCE, "--exp", "86400")
    cases += [Case("none-c2", [], **C2), Case(f"native-{alg}-c2", [native_filter(jwks, True)], token, **C2)]
    cases += [Case(f"apiguard{label}-{alg}-c2", [apiguard_filter(jwks, 1024, wasm)], token, **C2)
              for label, wasm in VARIANTS]

    def extra(med):
        lines = ["", "| algorithm | apiguard / native req/s (both cached) | one verification: native us | "
                     "one verification: apiguard us | ratio |", "|---|---:|---:|---:|---:|"]
        for alg in ALGS:
            for label, _ in VARIANTS:
                ratio = med(f"apiguard{label}-{alg}", "rps") / med(f"native-{alg}", "rps")
                if not UNCACHED:
                    lines.append(f"| {alg}{label} | {ratio:.2f} | | | |")
                    continue
                native_v = med(f"native-nocache-{alg}", "cpu_us") - med(f"native-{alg}", "cpu_us")
                ours_v = med(f"apiguard{label}-nocache-{alg}", "cpu_us") - med(f"apiguard{label}-{alg}", "cpu_us")
                lines.append(f"| {alg}{label} | {ratio:.2f} | {native_v:.0f} | {ours_v:.0f} | "
                             f"{ours_v / native_v if native_v > 0 else float('nan'):.1f}x |")
        return lines
    return cases, extra


def suite_limit(jwks, workdir):
    one = {"rate_limits": {"bench": dict(NEVER_DENY)}, "rules": [{"match": {"prefix": "/"}, "rate_limits": "bench"}]}
    per_key = {"rate_limits": {"bench": dict(NEVER_DENY, key=[{"header": "x-tenant"}], max_keys=20000)},
               "rules": [{"match": {"prefix": "/"}, "rate_limits": "bench"}]}
    script = lua_distinct_keys(workdir, 10000)
    # Two Envoy workers, 8 connections each, 30,000 live keys for a table of 20,000: slots are evicted and
    # both workers' VMs contend on the same shared data.
    over = lua_distinct_keys(workdir, 30000)
    c2 = C2
    cases = [Case("none", []), Case("native-local_ratelimit", [native_ratelimit()]),
             Case("apiguard-rule-only", [apiguard_filter(jwks, 0, config=RULE_ONLY)]),
             Case("apiguard-limit-1-key", [apiguard_filter(jwks, 0, config=one)]),
             Case("apiguard-limit-10k-keys", [apiguard_filter(jwks, 0, config=per_key)], script=script),
             Case("none-c2", [], script=over, **c2),
             Case("apiguard-limit-30k-keys-c2", [apiguard_filter(jwks, 0, config=per_key)], script=over, **c2)]

    def extra(med):
        base = med("none", "cpu_us")
        native = med("native-local_ratelimit", "cpu_us") - base
        lines = ["", "| limiter | added CPU us/req | x native local_ratelimit's added cost |", "|---|---:|---:|"]
        for name in ("native-local_ratelimit", "apiguard-limit-1-key", "apiguard-limit-10k-keys"):
            added = med(name, "cpu_us") - base
            ratio = f"{added / native:.1f}x" if native > 1 else "n/a (native cost below the noise)"
            lines.append(f"| {name} | {added:+.1f} | {ratio} |")
        lines.append("")
        lines.append("`-c2` rows: Envoy --concurrency 2, wrk -c16 (8 connections per worker), 30,000 distinct keys for "
                     "max_keys 20,000 (slots evicted, both VMs on one shared-data table); their baseline is none-c2 "
                     "and their floor noop-c2.")
        return lines
    return cases, extra


RLS_LIMITS = """
- namespace: apiguard
  name: bench
  max_value: 1000000000
  seconds: 60
  conditions: ['descriptors[0].policy == "bench"']
  variables: []
"""


class RateLimitService:
    """testing/rls-server (limitador behind the v3 API) on a redis-server of its own (in memory when Debian's
    redis-server is missing), with one limit that never denies: the cost of asking, not of refusing."""

    def __init__(self, workdir):
        self.redis = None
        limits = os.path.join(workdir, "limits.yaml")
        with open(limits, "w") as f:
            f.write(RLS_LIMITS)
        storage = ["--memory"]
        if shutil.which("redis-server"):
            port = free_port()
            self.redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                           "--appendonly", "no"], stdout=subprocess.DEVNULL)
            time.sleep(0.3)
            storage = ["--redis", f"redis://127.0.0.1:{port}"]
        self.storage = "Redis" if self.redis else "memory"
        binary = os.environ.get("APIGUARD_RLS_SERVER", os.path.join(os.path.dirname(WASM), "../../release/rls-server"))
        self.proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--limits", limits] + storage,
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline().strip().rsplit(":", 1)[1])

    def cluster(self):
        c = static_cluster("rls", self.port)
        c["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}}
        return c

    def stop(self):
        for p in (self.proc, self.redis):
            if p:
                p.terminate()
                p.wait()


RLS = None


def suite_rls(jwks, workdir):
    """A limit held by the rate limit service: Envoy's native `envoy.filters.http.ratelimit` and apiguard's
    `service` backend ask the same service (one call per request, descriptor policy=bench), and apiguard's
    `local_then_service` with its local share spent (every request: a local decision, then the call) and
    unspent (no call). Routes proxy to an upstream Envoy (the native filter needs a route action)."""
    global RLS
    RLS = RateLimitService(workdir)
    extra = {"clusters": [RLS.cluster()]}
    native_extra = dict(extra, route={"rate_limits": [{"actions": [
        {"generic_key": {"descriptor_key": "policy", "descriptor_value": "bench"}}]}]})
    native = {"name": "envoy.filters.http.ratelimit", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
        "domain": "apiguard", "timeout": "1s", "failure_mode_deny": True,
        "rate_limit_service": {"transport_api_version": "V3",
                               "grpc_service": {"envoy_grpc": {"cluster_name": "rls"}, "timeout": "1s"}}}}
    service = {"cluster": "rls", "domain": "apiguard", "timeout": "1s", "failure_mode": "deny",
               "descriptors": [{"key": "policy", "value": "bench"}]}
    only = {"rate_limits": {"bench": {"service": service}}, "rules": [{"match": {"prefix": "/"}, "rate_limits": "bench"}]}
    spent = {"rate_limits": {"bench": {"tier": "local_then_service", "requests": 1, "period": "3600s", "service": service}},
             "rules": [{"match": {"prefix": "/"}, "rate_limits": "bench"}]}
    unspent = {"rate_limits": {"bench": dict(NEVER_DENY, tier="local_then_service", service=service)},
               "rules": [{"match": {"prefix": "/"}, "rate_limits": "bench"}]}
    up = {"upstream": True, "extra": extra}
    cases = [Case("none", [], **up),
             Case("native-ratelimit-service", [native], upstream=True, extra=native_extra),
             Case("apiguard-service", [apiguard_filter(jwks, 0, config=only)], **up),
             Case("apiguard-local_then_service-spent", [apiguard_filter(jwks, 0, config=spent)], **up),
             Case("apiguard-local_then_service-unspent", [apiguard_filter(jwks, 0, config=unspent)], **up)]

    def extra_lines(med):
        native_cpu, native_p99 = med("native-ratelimit-service", "cpu_us"), med("native-ratelimit-service", "p99")
        floor = med("noop", "cpu_us") - med("none", "cpu_us") if NOOP_WASM else float("nan")
        lines = ["", f"Service: testing/rls-server (release build; limitador, {RLS.storage} storage), one limit that never denies; "
                     "every service row makes one ShouldRateLimit call per request.", "",
                 "| configuration | p99 / native p99 (target <= 1.2) | CPU over native us/req | F us/req | "
                 "over native - F (target <= 0) |", "|---|---:|---:|---:|---:|"]
        for name in ("apiguard-service", "apiguard-local_then_service-spent"):
            over = med(name, "cpu_us") - native_cpu
            lines.append(f"| {name} | {med(name, 'p99') / native_p99:.2f} | {over:+.1f} | {floor:.1f} | "
                         f"{over - floor:+.1f} |")
        return lines
    return cases, extra_lines


def suite_redact(jwks, workdir):
    body, clean = json_body(64 * 1024), json_body(64 * 1024, clean=True)
    config = {"redaction": {"pii": {"action": "redact"}}, "rules": [{"match": {"prefix": "/"}, "redaction": "pii"}]}
    cases = [Case("none-64KiB-json", [], body=body),
             Case("apiguard-redact-64KiB-json", [apiguard_filter(jwks, 0, config=config)], body=body),
             Case("none-64KiB-clean", [], body=clean),
             Case("apiguard-redact-64KiB-clean", [apiguard_filter(jwks, 0, config=config)], body=clean)]

    def extra(med):
        # Throughput in the VM: the response body's bytes over the CPU the row adds to Envoy alone with the same
        # body, and over what it adds to the no-op filter (X: without the floor every proxy-wasm filter pays).
        lines = ["", "| row | body bytes | MB/s over Envoy alone | MB/s over no-op (X) | target |",
                 "|---|---:|---:|---:|---:|"]
        for row in with_variants([c for c in cases if c.filters]):
            is_clean = row.name.endswith("clean")
            base, size = ("none-64KiB-clean", len(clean)) if is_clean else ("none-64KiB-json", len(body))
            added = med(row.name, "cpu_us") - med(base, "cpu_us")
            x = med(row.name, "cpu_us") - med("noop", "cpu_us") if NOOP_WASM else float("nan")
            rate = lambda us: f"{size / us:,.0f}" if us > 0 else "n/a"
            target = 600 if is_clean else 250
            lines.append(f"| {row.name} | {size:,} | {rate(added)} | {rate(x)} | >= {target} |")
        return lines
    return cases, extra


def pipeline_configs(jwks):
    """The pipeline suite's token, policies (JWT + limit; everything) and 1 KiB response body."""
    token = sign("sign", "ES256", "--iss", ISSUER, "--aud", AUDIENCE, "--exp", "86400")
    jwt_limit = {"jwt_providers": {"bench": provider_config(jwks)},
                 "rate_limits": {"per_user": dict(NEVER_DENY, key=[{"jwt_claim": "sub"}])},
                 "rules": [{"match": {"prefix": "/"}, "jwt": {"provider": "bench"}, "rate_limits": "per_user"}]}
    everything = {"jwt_providers": {"bench": provider_config(jwks)},
                  "rate_limits": {"per_user": dict(NEVER_DENY, key=[{"jwt_claim": "sub"}])},
                  "redaction": {"pii": {"action": "redact"}},
                  "rules": [{"match": {"prefix": "/"}, "jwt": {"provider": "bench"}, "rate_limits": "per_user",
                             "authz": {"claim": {"name": "sub", "one_of": ["alice", "bob", "bench"]}},
                             "redaction": "pii"}]}
    return token, jwt_limit, everything, json_body(1024)


def suite_pipeline(jwks, workdir):
    token, jwt_limit, everything, body = pipeline_configs(jwks)
    cases = []
    for suffix, c2 in (("", {}), ("-c2", C2)):
        cases += [Case("none" + suffix, [], body=body, **c2),
                  Case("native-jwt_authn+local_ratelimit" + suffix, [native_filter(jwks, True), native_ratelimit()],
                       token, body, **c2),
                  Case("apiguard-jwt+limit" + suffix, [apiguard_filter(jwks, 1024, config=jwt_limit)], token, body,
                       **c2),
                  Case("apiguard-everything" + suffix, [apiguard_filter(jwks, 1024, config=everything)], token, body,
                       **c2)]
    return cases, None


ORDER_SCHEMA = {"type": "object", "required": ["records"], "properties": {"records": {"type": "array", "items": {
    "type": "object", "required": ["id", "name", "email"], "additionalProperties": False,
    "properties": {"id": {"type": "integer", "minimum": 0}, "name": {"type": "string", "maxLength": 64},
                   "email": {"type": "string", "format": "email"}, "card": {"type": "string"},
                   "phone": {"type": "string"}, "note": {"type": "string", "maxLength": 256},
                   "iban": {"type": "string"}}}}}}


def suite_schema(jwks, workdir):
    body = json_body(1024)
    script = lua_post(workdir, "post1k", body)
    passing = {"rules": [{"match": {"prefix": "/"}}]}
    enforcing = {"schemas": {"order": {"json_schema": ORDER_SCHEMA}},
                 "rules": [{"match": {"prefix": "/"}, "schema": "order"}]}
    return [Case("none-1KiB-post", [], script=script, upstream=True),
            Case("apiguard-passing", [apiguard_filter(jwks, 0, config=passing)], script=script, upstream=True),
            Case("apiguard-enforcing", [apiguard_filter(jwks, 0, config=enforcing)], script=script, upstream=True)], None


def suite_discovery(jwks, workdir):
    script = lua_paths(workdir, 100)
    config = {"discovery": {"collector": {"cluster": "collector", "uri": "http://collector/v1/apiguard"},
                            "sample_rate": 1.0, "flush_interval": "5s"},
              "rules": [{"match": {"prefix": "/"}}]}
    # Long enough runs for the 5 s flush to happen.
    seconds = max(SECONDS, 7)
    cases = [Case("none-100-paths", [], script=script, seconds=seconds),
             Case("apiguard-discovery", [apiguard_filter(jwks, 0, config=config)], script=script, collector=True,
                  seconds=seconds)]

    def extra(med):
        batches = med(f"apiguard{VARIANTS[0][0]}-discovery", "collector_batches")
        return ["", f"Collector: {batches:.0f} batches received during one {seconds} s run plus warm-up "
                    f"(flush every 5 s per worker VM; 100 endpoints per batch)."]
    return cases, extra


def limiter_memory(jwks):
    """Shared-data memory per tracked key: RSS growth of one Envoy while distinct keys fill a limit's table."""
    keys = int(os.environ.get("BENCH_MEMORY_KEYS", "100000"))
    config = {"rate_limits": {"mem": dict(NEVER_DENY, key=[{"header": "x-tenant"}], max_keys=keys)},
              "rules": [{"match": {"prefix": "/"}, "rate_limits": "mem"}]}
    def sequential(offset):
        # Each wrk run starts its Lua state afresh: give every run its own range of keys.
        script = os.path.join(WORKDIR, f"sequential{offset}.lua")
        with open(script, "w") as f:
            f.write(f"counter = {offset}\nrequest = function()\n  counter = counter + 1\n"
                    "  return wrk.format(nil, nil, {[\"x-tenant\"] = \"tenant-\" .. counter})\nend\n")
        return script
    envoy = Envoy([apiguard_filter(jwks, 0, config=config)], WORKDIR, "limiter-memory")
    try:
        wrk(envoy.port, None, 1)
        before = envoy.rss_mib()
        tracked = 0
        for run in range(30):
            wrk(envoy.port, None, 3, sequential(run * 1000000))
            stats = urllib.request.urlopen(f"http://127.0.0.1:{envoy.admin}/stats?filter=rl_mem_slots_created").read()
            match = re.search(rb"slots_created: (\d+)", stats)
            tracked = int(match.group(1)) if match else 0
            if tracked >= keys:
                break
        after = envoy.rss_mib()
    finally:
        envoy.stop()
    per_key = (after - before) * 1024 * 1024 / tracked if tracked else float("nan")
    return ["", f"Limiter memory: {tracked:,} keys tracked (max_keys {keys:,}): Envoy RSS {before:.0f} -> {after:.0f} MiB, "
                f"about {per_key:.0f} bytes per key (shared data, all workers)."]


def suite_soak(jwks):
    """apiguard with every feature next to Envoy alone, each started once, driven in alternating slices for
    BENCH_SOAK_SECONDS; one sample per BENCH_SOAK_SAMPLE seconds (half of it on each Envoy)."""
    duration = int(os.environ.get("BENCH_SOAK_SECONDS", "600"))
    period = int(os.environ.get("BENCH_SOAK_SAMPLE", "60"))
    token, _, everything, body = pipeline_configs(jwks)
    envoys = {}
    started, load_before = time.monotonic(), os.getloadavg()[0]
    samples = {"none": [], "apiguard-everything": []}
    try:
        envoys["none"] = Envoy([], WORKDIR, "soak-none", body)
        envoys["apiguard-everything"] = Envoy([apiguard_filter(jwks, 1024, config=everything)], WORKDIR,
                                              "soak-apiguard", body)
        for name, envoy in envoys.items():
            if not first_request_passes(envoy.port, Case(name, [], token, body)):
                raise RuntimeError(f"soak {name}: requests are refused; see {envoy.log.name}")
        while not samples["none"] or time.monotonic() - started < duration:
            for name, envoy in envoys.items():
                cpu0 = envoy.cpu_seconds()
                r = wrk(envoy.port, token, max(1, period // 2))
                if r["errors"]:
                    raise RuntimeError(f"soak {name}: {r['errors']} non-2xx responses")
                r["cpu_us"] = (envoy.cpu_seconds() - cpu0) / r["requests"] * 1e6
                r["rss"], r["t"] = envoy.rss_mib(), time.monotonic() - started
                samples[name].append(r)
                print(f"soak {r['t']:5.0f} s {name:20} {r['rps']:9.0f} req/s  p99 {r['p99']:6.2f} ms  "
                      f"cpu {r['cpu_us']:6.1f} us/req  rss {r['rss']:5.0f} MiB", flush=True)
    finally:
        for envoy in envoys.values():
            envoy.stop()
    lines = [f"Suite `soak`. Command: `BENCH_SUITES=soak make bench` (scripts/bench.py; BENCH_SOAK_SECONDS={duration}, "
             f"BENCH_SOAK_SAMPLE={period}): Envoy alone and apiguard with every feature (the pipeline suite's "
             f"`everything`, 1 KiB response redacted), each started once and driven in alternating {max(1, period // 2)} s "
             f"slices of wrk -t1 -c{CONNECTIONS}, Envoy --concurrency {CONCURRENCY}; {pin_note()}.",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores; suite took {time.monotonic() - started:.0f} s; "
             f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.", "",
             "| sample | s | none CPU us/req | apiguard CPU us/req | none p99 ms | apiguard p99 ms | none RSS MiB | "
             "apiguard RSS MiB | apiguard RSS over none MiB |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i, (a, b) in enumerate(zip(samples["none"], samples["apiguard-everything"]), 1):
        lines.append(f"| {i} | {b['t']:.0f} | {a['cpu_us']:.1f} | {b['cpu_us']:.1f} | {a['p99']:.2f} | {b['p99']:.2f} | "
                     f"{a['rss']:.0f} | {b['rss']:.0f} | {b['rss'] - a['rss']:+.0f} |")
    first, last = samples["apiguard-everything"][0], samples["apiguard-everything"][-1]
    none_last = samples["none"][-1]
    lines += ["", f"apiguard-everything, first sample -> last: CPU {first['cpu_us']:.1f} -> {last['cpu_us']:.1f} us/req, "
                  f"p99 {first['p99']:.2f} -> {last['p99']:.2f} ms, RSS {first['rss']:.0f} -> {last['rss']:.0f} MiB; "
                  f"RSS over Envoy alone at the end: {last['rss'] - none_last['rss']:+.0f} MiB (target <= +60)."]
    return "\n".join(lines)


MICRO_BENCHES = os.environ.get("BENCH_MICRO", "schema,redact,ratelimit,verify,discovery").split(",")


def suite_micro():
    """The native micro-benchmarks (`cargo bench`, pure core, no Envoy), their tables copied as printed."""
    started = time.monotonic()
    lines = [f"Suite `micro`. Command: `make bench` (scripts/bench.py, BENCH_SUITES=micro), which runs "
             f"`cargo bench --bench NAME` for {', '.join(MICRO_BENCHES)}; host CPU, one core, each next to the obvious "
             "Rust alternative in the same run where there is one."]
    for bench in MICRO_BENCHES:
        out = subprocess.run(["cargo", "bench", "-q", "--bench", bench], check=True, capture_output=True,
                             text=True).stdout.strip()
        lines += ["", f"`cargo bench --bench {bench}`:", "", out]
    lines += ["", f"Suite took {time.monotonic() - started:.0f} s; load average at the end {os.getloadavg()[0]:.1f} "
                  "(2 cores: above ~2 means other work shared the machine)."]
    return "\n".join(lines)


SUITE_BUILDERS = {"jwt": suite_jwt, "limit": suite_limit, "redact": suite_redact, "pipeline": suite_pipeline,
                  "schema": suite_schema, "discovery": suite_discovery, "rls": suite_rls}


def spread(values, fmt="{:.1f}"):
    """min-max of a list, as text."""
    return f"{fmt.format(min(values))}-{fmt.format(max(values))}" if values else ""


def run_suite(name, cases, extra):
    results = {c.name: [] for c in cases}
    started, load_before = time.monotonic(), os.getloadavg()[0]
    for round_no in range(1, ROUNDS + 1):
        # Rotated order: no configuration always runs first (or right after the same neighbour).
        shift = (round_no - 1) % len(cases)
        for case in cases[shift:] + cases[:shift]:
            r = run_one(case, WORKDIR)
            results[case.name].append(r)
            print(f"{name} round {round_no} {case.name:34} {r['rps']:9.0f} req/s  p50 {r['p50']:6.2f} ms  "
                  f"p99 {r['p99']:6.2f} ms  cpu {r['cpu_us']:7.1f} us/req", flush=True)
    elapsed = time.monotonic() - started

    def med(case_name, key):
        return statistics.median(r[key] for r in results[case_name])

    def cpus(case_name):
        return [r["cpu_us"] for r in results[case_name]]

    def pairs(a, b):
        """Same-round differences a_r - b_r of CPU per request."""
        return [x - y for x, y in zip(cpus(a), cpus(b))]

    base = cases[0].name
    route = "routes to an upstream Envoy" if cases[0].upstream else "direct_response route"
    seconds = sorted({c.seconds for c in cases})
    lines = [
        f"Suite `{name}`. Command: `make bench` (scripts/bench.py, BENCH_SUITES={name}), {ROUNDS} interleaved rounds "
        f"(rotated order) x {'/'.join(str(s) for s in seconds)} s per configuration, wrk -t1 -c{CONNECTIONS}, Envoy "
        f"--concurrency {CONCURRENCY} (unless the row says otherwise), {route}, loopback; {pin_note()}.",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; "
        f"wasm {', '.join(f'{l or os.path.basename(w)}: {os.path.getsize(w):,}' for l, w in VARIANTS)} bytes; "
        f"suite took {elapsed:.0f} s; load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
        f"(2 cores: above ~2 means other work shared the machine).",
        "",
        f"| configuration | req/s | x {base} | p50 ms | p99 ms | Envoy CPU us/req | CPU min-max | added CPU us/req | "
        f"X over no-op us/req | X min-max | X / F | RSS MiB | ready ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = {c.name for c in cases}
    baseline_of = {}
    for case in cases:
        # A row's baseline is the last filterless row before it (`none-c2` for the -c2 rows).
        if not case.filters:
            current = case.name
        baseline_of[case.name] = current
    floors = {}
    for case in cases:
        rps, cpu = med(case.name, "rps"), med(case.name, "cpu_us")
        row_base = baseline_of[case.name]
        added = statistics.median(pairs(case.name, row_base))
        over, over_spread, ratio = "", "", ""
        if case.floor in names and case.filters:
            f_pairs = pairs(case.floor, baseline_of[case.floor])
            floors[case.floor] = f_pairs
            x_pairs = pairs(case.name, case.floor)
            x, floor_added = statistics.median(x_pairs), statistics.median(f_pairs)
            over, over_spread = f"{x:+.1f}", spread(x_pairs, "{:+.1f}")
            ratio = f"{x / floor_added:.2f}" if floor_added > 0.5 else "n/a"
        lines.append(f"| {case.name} | {rps:,.0f} | {rps / med(row_base, 'rps'):.2f} | {med(case.name, 'p50'):.2f} | "
                     f"{med(case.name, 'p99'):.2f} | {cpu:.1f} | {spread(cpus(case.name))} | {added:+.1f} | {over} | "
                     f"{over_spread} | {ratio} | {med(case.name, 'rss'):.0f} | {med(case.name, 'ready_ms'):.0f} |")
    if floors:
        described = "; ".join(f"{n}: {statistics.median(v):+.1f} us/req (same-round min-max {spread(v, '{:+.1f}')})"
                              for n, v in floors.items())
        lines += ["", f"Floor F (the no-op proxy-wasm filter's added CPU over its baseline, same-round pairs): "
                      f"{described}. A row's X is its CPU minus the no-op row's of the same round (median, min-max): "
                      "what apiguard adds on top of any proxy-wasm filter; X / F = median X / median F."]
    timed = [c.name for c in cases if any(r.get("stages") for r in results[c.name])]
    if timed:
        stages = sorted({s for n in timed for r in results[n] for s in r.get("stages", {})})
        lines += ["", "In-VM time per callback (`stage-timing` build: clock read around each callback, host calls "
                      "inside it included), us per call, median over rounds:", "",
                  "| configuration | " + " | ".join(stages) + " |", "|---|" + "---:|" * len(stages)]
        for n in timed:
            cells = [statistics.median([r["stages"][s] for r in results[n] if s in r.get("stages", {})] or [0.0])
                     for s in stages]
            lines.append(f"| {n} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    if extra:
        lines += extra(med)
    return "\n".join(lines)


def suite_ready(jwks):
    """Time to /ready and Envoy's CPU until then, per module, over fresh processes in interleaved rounds."""
    started = time.monotonic()
    rows = [("none", []), ("noop", [noop_filter()])] if NOOP_WASM else [("none", [])]
    rows += [(f"apiguard{label}", [apiguard_filter(jwks, 1024, wasm)]) for label, wasm in VARIANTS]
    ready, cpu = {n: [] for n, _ in rows}, {n: [] for n, _ in rows}
    for r in range(READY_ROUNDS):
        for name, filters in rows:
            # Never pinned to one core: V8 compiles the module on background threads, as in a deployed proxy.
            envoy = Envoy(filters, WORKDIR, f"ready-{name}-{r}", cpus=ALL_CPUS)
            try:
                cpu[name].append(envoy.cpu_seconds() * 1000)
                ready[name].append(envoy.ready_ms)
            finally:
                envoy.stop()
            print(f"ready round {r} {name:24s} {ready[name][-1]:6.0f} ms  cpu {cpu[name][-1]:6.0f} ms", flush=True)
    wasm = {"none": None, "noop": NOOP_WASM}
    wasm.update({f"apiguard{label}": w for label, w in VARIANTS})
    lines = [f"Suite `ready`. Command: `make bench` (scripts/bench.py, BENCH_SUITES=ready), {READY_ROUNDS} interleaved "
             f"rounds of fresh Envoys (--concurrency {CONCURRENCY}, on every core: never pinned, so V8 compiles on its "
             f"background threads as in a deployed proxy), apiguard with the jwt suite's RS256 policy.",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; suite took "
             f"{time.monotonic() - started:.0f} s; load average at the end {os.getloadavg()[0]:.1f} (2 cores: above ~2 "
             f"means other work shared the machine).", "",
             "| configuration | module bytes | ready ms (median) | ready ms (min) | ready ms (max) | "
             "Envoy CPU ms until ready (median) |", "|---|---:|---:|---:|---:|---:|"]
    for name, _ in rows:
        size = f"{os.path.getsize(wasm[name]):,}" if wasm[name] else ""
        lines.append(f"| {name} | {size} | {statistics.median(ready[name]):.0f} | {min(ready[name]):.0f} | "
                     f"{max(ready[name]):.0f} | {statistics.median(cpu[name]):.0f} |")
    return "\n".join(lines)


def write_section(name, table):
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    text = open(OUT).read() if os.path.exists(OUT) else "# Benchmarks\n\n"
    section = f"{begin}\n{table}\n{end}"
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    with open(OUT, "w") as f:
        f.write(text)


WORKDIR = tempfile.mkdtemp(prefix="apiguard-bench-")


def main():
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")
    if PIN:
        # This process hosts the collector: it belongs with the clients, off Envoy's core.
        os.sched_setaffinity(0, cpu_set(CLIENT_CPUS))
    jwks = sign("jwks")
    for name in SUITES:
        if name == "micro":
            table = suite_micro()
        elif name == "ready":
            table = suite_ready(jwks)
        elif name == "soak":
            table = suite_soak(jwks)
        else:
            cases, extra = SUITE_BUILDERS[name](jwks, WORKDIR)
            if name != "jwt":
                cases = with_variants(cases)
            table = run_suite(name, with_floor(cases), extra)
        if name == "rls" and RLS:
            RLS.stop()
        if name == "limit" and os.environ.get("BENCH_MEMORY", "1") == "1":
            table += "\n" + "\n".join(limiter_memory(jwks))
        print("\n" + table + "\n", flush=True)
        if OUT:
            write_section(name, table)
            print(f"written to {OUT}")
    shutil.rmtree(WORKDIR, ignore_errors=True)


if __name__ == "__main__":
    main()
