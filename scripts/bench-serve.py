#!/usr/bin/env python3
"""Ingest benchmark of `apiguard serve` (`make bench-serve`): batches of 100 endpoints, as a mesh of
proxies flushing every few seconds sends them, POSTed by CONCURRENCY keep-alive clients for SECONDS.

Prints batches/s, the latency percentiles of the answers (body sent to answer read, the store commit
included), the service's CPU time per batch (all threads, and the writer thread alone: the one
serial stage), its peak RSS (VmHWM) and the inventory size. Environment:

  APIGUARD_BIN      the binary (make bench-serve: target/release/apiguard)
  BENCH_SECONDS     measured run length (default 20), after a 3 s warm-up
  BENCH_CONCURRENCY clients (default 8)
  BENCH_PROXIES     distinct proxies (node ids) the batches come from (default 1000)
  BENCH_TEMPLATES   distinct endpoints in the mesh (default 2000): most batch entries merge into
                    existing records, as in a real mesh
  BENCH_STORE       store URL (default a fresh sqlite file under .run/bench-serve/)

The client is Python (threads, http.client); on 2 cores it shares the CPUs with the service, so the
figures are a lower bound of what the service does alone. The load average is printed with them.
"""
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time

BIN = os.environ.get("APIGUARD_BIN", "target/release/apiguard")
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
PROXIES = int(os.environ.get("BENCH_PROXIES", "1000"))
TEMPLATES = int(os.environ.get("BENCH_TEMPLATES", "2000"))
PORT = int(os.environ.get("BENCH_PORT", "18020"))
RUN = ".run/bench-serve"
TOKEN = "bench-token"


def endpoint(rng, t, start):
    return {
        "host": f"svc{t % 20}.mesh", "method": ("GET", "POST", "PUT", "DELETE")[t % 4],
        "path_template": f"/api/v{1 + t % 3}/resource{t}/{{id}}", "template_source": "inferred",
        "api_type": "rest", "operation": None, "declaration": "unknown",
        "count": rng.randint(1, 500), "first_seen_ms": start + 10, "last_seen_ms": start + 4900,
        "status": {"1xx": 0, "2xx": rng.randint(1, 400), "3xx": 0, "4xx": rng.randint(0, 20), "5xx": 0, "none": 0},
        "request_bytes_max": rng.randint(0, 4000), "response_bytes_max": rng.randint(0, 40000),
        "query_params": sorted(rng.sample(["page", "size", "sort", "fields", "q"], 2)),
        "request_content_types": ["application/json"], "response_content_types": ["application/json"],
        "auth": [rng.choice(["bearer_jwt", "none", "api_key_header"])], "jwt_issuers": [],
        "data_classes": {"request": [], "response": rng.choice([[], ["email"], ["phone"]])},
        "findings": rng.choice([[], ["no_authentication"], ["version_banner", "missing_hsts"]]),
        "request_shape": None,
        "response_shape": {"type": ["object"], "properties": {
            "id": {"type": ["integer"]}, "name": {"type": ["string"]},
            f"f{t % 7}": {"type": ["string", "null"]},
            "items": {"type": ["array"], "items": {"type": ["object"], "properties": {"sku": {"type": ["string"]}}}}}},
    }


START = b"@START@"
END = b"@END@"


def batches(seed, count):
    """`count` distinct batch bodies with the window left as placeholders: each send fills in a new
    window (a new batch id), so the pool is reused without resending a duplicate."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        proxy = rng.randrange(PROXIES)
        start = 1_700_000_000_000
        doc = {"schema_version": 1,
               "source": {"plugin": "apiguard", "worker": str(seed), "node": f"sidecar~10.0.{proxy // 250}.{proxy % 250}~app"},
               "window": {"start_ms": "@START@", "end_ms": "@END@"}, "part": {"index": 0, "count": 1},
               "sample_rate": 1.0,
               "endpoints": [endpoint(rng, t, start) for t in sorted(rng.sample(range(TEMPLATES), 100))],
               "overflow": None, "overflowed": 0, "dropped": 0, "dropped_endpoints": 0}
        out.append(json.dumps(doc).encode().replace(b'"@START@"', START).replace(b'"@END@"', END))
    return out


def rss_kib(pid, field):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid):
    """utime + stime of the process, seconds."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def writer_cpu_seconds(pid):
    """utime + stime of the service's writer thread (named apiguard-writer), seconds: the one
    serial stage, so batches/s on idle cores is at most 1 / (its CPU per batch)."""
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            if open(f"/proc/{pid}/task/{tid}/comm").read().strip() == "apiguard-writer":
                fields = open(f"/proc/{pid}/task/{tid}/stat").read().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        pass
    return None


def main():
    shutil.rmtree(RUN, ignore_errors=True)
    os.makedirs(RUN)
    store = os.environ.get("BENCH_STORE", f"sqlite:{RUN}/inventory.db")
    serve = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{PORT}", "--store", store,
                              "--proxy-token", f"mesh={TOKEN}", "--workers", str(max(CONCURRENCY, 4)),
                              "--queue", "1024", "--per-proxy-queue", "1024"],
                             stderr=open(f"{RUN}/serve.log", "w"))
    try:
        for _ in range(200):
            try:
                c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        per_client = 40
        print(f"building {CONCURRENCY} x {per_client} batch bodies of 100 endpoints ...", file=sys.stderr)
        work = [batches(k, per_client) for k in range(CONCURRENCY)]
        size = sum(len(b) for b in work[0]) / len(work[0])
        latencies, statuses, lock = [], {}, threading.Lock()
        t0 = time.monotonic()
        warm, end = t0 + 3, t0 + 3 + SECONDS

        def client(k):
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
            headers = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
            n = 0
            while True:
                now = time.monotonic()
                if now >= end:
                    return
                # Window n of this client: a batch id never sent before.
                start = 1_700_000_000_000 + n * 5000
                body = (work[k][n % len(work[k])].replace(START, str(start).encode())
                        .replace(END, str(start + 5000).encode()))
                n += 1
                conn.request("POST", "/v1/apiguard", body, headers)
                r = conn.getresponse()
                r.read()
                done = time.monotonic()
                if now >= warm:
                    with lock:
                        latencies.append(done - now)
                        statuses[r.status] = statuses.get(r.status, 0) + 1

        cpu_start = [None]
        writer_start = [None]

        def mark_cpu():
            time.sleep(max(0.0, warm - time.monotonic()))
            cpu_start[0] = cpu_seconds(serve.pid)
            writer_start[0] = writer_cpu_seconds(serve.pid)

        marker = threading.Thread(target=mark_cpu)
        marker.start()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(CONCURRENCY)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        marker.join()
        cpu_used = cpu_seconds(serve.pid) - (cpu_start[0] or 0.0)
        writer_now = writer_cpu_seconds(serve.pid)
        writer_used = None if writer_now is None or writer_start[0] is None else writer_now - writer_start[0]
        measured = min(time.monotonic(), end) - warm
        latencies.sort()
        pct = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0
        ok = statuses.get(200, 0)
        c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
        c.request("GET", "/api/v1/summary")
        summary = json.loads(c.getresponse().read())
        print(json.dumps({
            "store": store.split(":")[0], "concurrency": CONCURRENCY, "seconds": round(measured, 1),
            "batch_bytes_avg": int(size), "batches_ok": ok, "statuses": statuses,
            "batches_per_s": round(ok / measured, 1) if measured > 0 else 0,
            "endpoint_entries_per_s": round(100 * ok / measured) if measured > 0 else 0,
            "latency_ms": {"p50": round(pct(0.50), 2), "p90": round(pct(0.90), 2), "p99": round(pct(0.99), 2),
                           "max": round(latencies[-1] * 1000, 2) if latencies else 0},
            "service_cpu_ms_per_batch": round(1000 * cpu_used / ok, 2) if ok else None,
            "writer_cpu_ms_per_batch": round(1000 * writer_used / ok, 2) if ok and writer_used is not None else None,
            "rss_peak_mib": round(rss_kib(serve.pid, "VmHWM") / 1024, 1),
            "rss_now_mib": round(rss_kib(serve.pid, "VmRSS") / 1024, 1),
            "inventory_endpoints": summary.get("endpoints"),
            "loadavg": open("/proc/loadavg").read().split()[:3],
        }, indent=1))
    finally:
        serve.terminate()
        serve.wait()


if __name__ == "__main__":
    main()
