#!/usr/bin/env python3
"""Where the bytes of a .wasm are: code bytes per crate and the largest functions.

The module needs its name section, so build one that keeps names (the shipped one is stripped):

    cargo build --profile profiling --target wasm32-wasip1
    scripts/wasm-size.py target/wasm32-wasip1/profiling/apiguard.wasm [TOP]

To see the module after `make build`'s post-link pass, run wasm-opt with -g (keep names) on that file first, with
the Makefile's WASM_OPT_FLAGS. Code bytes are charged to the crate a function is named after: generic code
inlined into a caller counts for the caller, and `<T as Trait>` impls count for the crate of T.
"""

import collections
import re
import sys


def leb(data, i):
    result = shift = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, i


def read(path):
    """(section sizes, [(code bytes, function name)])."""
    data = open(path, "rb").read()
    i, imported, bodies, names, sections = 8, 0, [], {}, collections.Counter()
    kinds = {0: "custom", 1: "type", 2: "import", 3: "function", 5: "memory", 7: "export", 9: "elem", 10: "code",
             11: "data"}
    while i < len(data):
        sid = data[i]
        size, i = leb(data, i + 1)
        end = i + size
        sections[kinds.get(sid, f"section {sid}")] += size
        if sid == 2:
            count, j = leb(data, i)
            for _ in range(count):
                for _ in range(2):  # module and field names
                    n, j = leb(data, j)
                    j += n
                kind = data[j]
                j += 1
                if kind == 0:
                    _, j = leb(data, j)
                    imported += 1
                elif kind == 1:
                    j += 1
                    flags, j = leb(data, j)
                    _, j = leb(data, j)
                    if flags & 1:
                        _, j = leb(data, j)
                elif kind == 2:
                    flags, j = leb(data, j)
                    _, j = leb(data, j)
                    if flags & 1:
                        _, j = leb(data, j)
                else:
                    j += 2
        elif sid == 10:
            count, j = leb(data, i)
            for _ in range(count):
                n, k = leb(data, j)
                bodies.append(n + (k - j))
                j = k + n
        elif sid == 0:
            n, j = leb(data, i)
            if data[j:j + n] == b"name":
                j += n
                while j < end:
                    sub = data[j]
                    n, j = leb(data, j + 1)
                    stop = j + n
                    if sub == 1:
                        count, j = leb(data, j)
                        for _ in range(count):
                            index, j = leb(data, j)
                            n, j = leb(data, j)
                            names[index] = data[j:j + n].decode("utf-8", "replace")
                            j += n
                    j = stop
        i = end
    return sections, [(size, names.get(imported + k, f"func[{imported + k}]")) for k, size in enumerate(bodies)]


def crate(name):
    legacy = re.match(r"_ZN(\d+)", name)
    if legacy:
        start = len(legacy.group(0))
        part = name[start:start + int(legacy.group(1))]
        impl = re.match(r"_\$LT\$(?:\$[A-Z]+\$|(?:mut|dyn)\$u20\$|\$u5b\$)*([A-Za-z0-9_]+)", part)
        return impl.group(1) if impl else part
    v0 = re.search(r"C(?:s[0-9A-Za-z]*_)?(\d+)", name) if name.startswith("_R") else None
    if v0:
        start = v0.end()
        return name[start:start + int(v0.group(1))]
    return name  # C symbols (dlmalloc, memcpy, ...)


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    sections, functions = read(path)
    total = sum(size for size, _ in functions)
    print(f"{path}: sections " + ", ".join(f"{k} {v:,}" for k, v in sections.most_common()))
    print(f"\n| crate | code bytes | functions |\n|---|---:|---:|")
    by_crate, count = collections.Counter(), collections.Counter()
    for size, name in functions:
        by_crate[crate(name)] += size
        count[crate(name)] += 1
    for name, size in by_crate.most_common(top):
        print(f"| {name} | {size:,} | {count[name]} |")
    print(f"| all | {total:,} | {len(functions)} |")
    print(f"\n| largest functions | code bytes |\n|---|---:|")
    for size, name in sorted(functions, reverse=True)[:top]:
        print(f"| `{name[:120]}` | {size:,} |")


if __name__ == "__main__":
    main()
