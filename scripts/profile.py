#!/usr/bin/env python3
"""`make profile`: instructions per request for each request shape, counted by callgrind.

Runs examples/request_path.rs (built with `--profile profiling`: the release build with symbols) under
`valgrind --tool=callgrind`, collecting only inside `Driver::measured` (one request through the core, its headers
already built), once per shape. Native x86-64
instructions, not wasm: they rank the work and prove a change, they are not V8's cost.

Environment: PROFILE_BIN (the driver), PROFILE_REQUESTS (2000), PROFILE_SHAPES (all), PROFILE_TOP (top functions
per shape, 8; 0 prints none), PROFILE_OUT (a folder to keep the callgrind files in).
"""

import os
import re
import subprocess
import sys
import tempfile

BIN = os.environ.get("PROFILE_BIN", "target/profiling/examples/request_path")
REQUESTS = int(os.environ.get("PROFILE_REQUESTS", "2000"))
TOP = int(os.environ.get("PROFILE_TOP", "8"))
OUT = os.environ.get("PROFILE_OUT") or tempfile.mkdtemp(prefix="apiguard-profile-")


def callgrind(shape):
    out = os.path.join(OUT, f"{shape}.callgrind")
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--collect-atstart=no",
                    "--toggle-collect=request_path::Driver::measured", BIN, shape, str(REQUESTS)],
                   check=True, capture_output=True, text=True)
    with open(out) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1]), out
    raise RuntimeError(f"no totals in {out}")


def top_functions(path):
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", path], check=True, capture_output=True,
                          text=True).stdout
    rows = []
    for line in text.splitlines():
        match = re.match(r"\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(?:\S+:)?(.+?)(?:\s+\[.*\])?$", line)
        if match and "PROGRAM TOTALS" not in line:
            rows.append((int(match.group(1).replace(",", "")), float(match.group(2)), match.group(3)))
    return rows[:TOP]


def main():
    shapes = os.environ.get("PROFILE_SHAPES") or subprocess.run(
        [BIN, "list"], check=True, capture_output=True, text=True).stdout
    shapes = shapes.replace(",", " ").split()
    print(f"Instructions per request (callgrind, native x86-64, {REQUESTS} requests after a 10,000-request "
          f"warm-up). Files: {OUT}")
    print()
    print("| shape | instructions per request |")
    print("|---|---:|")
    tops = []
    for shape in shapes:
        total, path = callgrind(shape)
        print(f"| {shape} | {total / REQUESTS:,.0f} |", flush=True)
        tops.append((shape, path))
    if TOP:
        for shape, path in tops:
            print(f"\nTop functions (self), {shape}:")
            for count, share, name in top_functions(path):
                print(f"  {count / REQUESTS:9,.0f} /req {share:5.1f}%  {name[:150]}")


if __name__ == "__main__":
    try:
        main()
    except (subprocess.CalledProcessError, RuntimeError) as e:
        sys.exit(f"profile failed: {e}")
