#!/usr/bin/env python3
"""`make bench`: apiguard against Envoy alone and Envoy's native jwt_authn, on loopback, with wrk.

Configurations run one after another, in interleaved rounds (A B C ... A B C ...), each in a fresh Envoy:
  none                    Envoy alone (direct_response route, no filter)
  native-<alg>            Envoy's jwt_authn, same key and token, jwt_cache_config on (like with like)
  apiguard-<alg>          apiguard, same key and token, verified-token cache on
  native-nocache-<alg>    jwt_authn without its cache: one signature check per request
  apiguard-nocache-<alg>  apiguard with jwt_cache.max_entries = 0: one signature check per request
for alg in RS256, ES256, EdDSA. Reported per configuration (median over rounds): req/s, p50, p99, Envoy CPU per
request (process CPU time delta / requests, the steadiest figure when wrk and Envoy share 2 cores), RSS, time to
/ready. The uncached rows give the cost of one signature verification (uncached minus cached CPU per request).

Environment: APIGUARD_ENVOY, APIGUARD_WASM (set by make), BENCH_ROUNDS (3), BENCH_SECONDS (4),
BENCH_CONNECTIONS (16), BENCH_CONCURRENCY (Envoy workers, 1), BENCH_ALGS (RS256,ES256,EdDSA), BENCH_OUT (a markdown
file to write the results section into, docs/benchmarks.md by make).
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
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "4"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "1"))
ALGS = os.environ.get("BENCH_ALGS", "RS256,ES256,EdDSA").split(",")
OUT = os.environ.get("BENCH_OUT")
# Compare builds of the filter in the same run: "label=path,label=path" (e.g. opt-levels).
VARIANTS = [v.split("=", 1) for v in os.environ["BENCH_VARIANTS"].split(",")] if os.environ.get("BENCH_VARIANTS") \
    else [("", WASM)]
UNCACHED = os.environ.get("BENCH_UNCACHED", "1") == "1"
ISSUER, AUDIENCE = "https://issuer.example", "api.example"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def sign(*args):
    out = subprocess.run(["cargo", "run", "-q", "--example", "sign_token", "--", *args],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listener(port, filters):
    return {
        "name": "main",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "bench",
                "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                    {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]}]},
                "http_filters": filters + [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
            }}]}],
    }


def apiguard_filter(jwks, cache_entries, wasm=WASM):
    config = {
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


def native_filter(jwks, cache):
    provider = {"issuer": ISSUER, "audiences": [AUDIENCE], "local_jwks": {"inline_string": jwks},
                "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]}
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": 100}
    return {"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"bench": provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]}}


def bootstrap(port, admin, filters):
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "static_resources": {"listeners": [listener(port, filters)]}}


class Envoy:
    def __init__(self, config, workdir, name):
        self.port, self.admin = free_port(), free_port()
        path = os.path.join(workdir, f"{name}.json")
        with open(path, "w") as f:
            json.dump(bootstrap(self.port, self.admin, config), f)
        self.log = open(os.path.join(workdir, f"{name}.log"), "w")
        start = time.monotonic()
        self.proc = subprocess.Popen([ENVOY, "-c", path, "--concurrency", str(CONCURRENCY), "--disable-hot-restart",
                                      "-l", "warning"], stdout=self.log, stderr=subprocess.STDOUT)
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
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(port, token, seconds):
    cmd = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}/api/x"]
    if token:
        cmd[1:1] = ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": to_ms(re.search(r"50%\s+(\S+)", out).group(1)),
            "p99": to_ms(re.search(r"99%\s+(\S+)", out).group(1)),
            "requests": requests, "errors": int(non2xx.group(1)) if non2xx else 0}


def run_one(name, filters, token, workdir):
    envoy = Envoy(filters, workdir, name)
    try:
        if token and wrk(envoy.port, token, 1)["errors"]:
            raise RuntimeError(f"{name}: the token is refused; see {envoy.log.name}")
        cpu0 = envoy.cpu_seconds()
        result = wrk(envoy.port, token, SECONDS)
        cpu = envoy.cpu_seconds() - cpu0
        if result["errors"]:
            raise RuntimeError(f"{name}: {result['errors']} non-2xx responses")
        result["cpu_us"] = cpu / result["requests"] * 1e6
        result["rss"] = envoy.rss_mib()
        result["ready_ms"] = envoy.ready_ms
        return result
    finally:
        envoy.stop()


def main():
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")
    workdir = tempfile.mkdtemp(prefix="apiguard-bench-")
    jwks = sign("jwks")
    configs = [("none", [], None)]
    for alg in ALGS:
        token = sign("sign", alg, "--iss", ISSUER, "--aud", AUDIENCE, "--exp", "86400")
        configs.append((f"native-{alg}", [native_filter(jwks, True)], token))
        for label, wasm in VARIANTS:
            configs.append((f"apiguard{label}-{alg}", [apiguard_filter(jwks, 1024, wasm)], token))
        if UNCACHED:
            configs.append((f"native-nocache-{alg}", [native_filter(jwks, False)], token))
            for label, wasm in VARIANTS:
                configs.append((f"apiguard{label}-nocache-{alg}", [apiguard_filter(jwks, 0, wasm)], token))
    results = {name: [] for name, _, _ in configs}
    started = time.monotonic()
    for round_no in range(1, ROUNDS + 1):
        for name, filters, token in configs:
            r = run_one(name, filters, token, workdir)
            results[name].append(r)
            print(f"round {round_no} {name:24} {r['rps']:9.0f} req/s  p50 {r['p50']:6.2f} ms  "
                  f"p99 {r['p99']:6.2f} ms  cpu {r['cpu_us']:7.1f} us/req", flush=True)
    elapsed = time.monotonic() - started

    def med(name, key):
        return statistics.median(r[key] for r in results[name])

    base_rps, base_cpu = med("none", "rps"), med("none", "cpu_us")
    lines = [
        f"Command: `make bench` (scripts/bench.py), {ROUNDS} interleaved rounds x {SECONDS} s per configuration, "
        f"wrk -t1 -c{CONNECTIONS}, Envoy --concurrency {CONCURRENCY}, direct_response route, loopback.",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; "
        f"wasm {', '.join(f'{l or WASM}: {os.path.getsize(w):,}' for l, w in VARIANTS)} bytes; run took {elapsed:.0f} s.",
        "",
        "| configuration | req/s | x none | p50 ms | p99 ms | Envoy CPU us/req | added CPU us/req | RSS MiB | ready ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, _, _ in configs:
        rps, cpu = med(name, "rps"), med(name, "cpu_us")
        lines.append(f"| {name} | {rps:,.0f} | {rps / base_rps:.2f} | {med(name, 'p50'):.2f} | {med(name, 'p99'):.2f} "
                     f"| {cpu:.1f} | {cpu - base_cpu:+.1f} | {med(name, 'rss'):.0f} | {med(name, 'ready_ms'):.0f} |")
    lines += ["", "| algorithm | apiguard / native req/s (cached) | one verification: native us | one verification: apiguard us | ratio |",
              "|---|---:|---:|---:|---:|"]
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
    table = "\n".join(lines)
    print("\n" + table)
    if OUT:
        begin, end = "<!-- bench:jwt:begin -->", "<!-- bench:jwt:end -->"
        text = open(OUT).read() if os.path.exists(OUT) else "# Benchmarks\n\n"
        section = f"{begin}\n{table}\n{end}"
        if begin in text and end in text:
            text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
        else:
            text = text.rstrip() + "\n\n" + section + "\n"
        with open(OUT, "w") as f:
            f.write(text)
        print(f"\nwritten to {OUT}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
