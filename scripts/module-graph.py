#!/usr/bin/env python3
"""The module graph of src/ from `use crate::` paths (and `crate::x::` paths in code), at the level of
top-level modules; fails when it has a cycle. `make lint` runs it.

    scripts/module-graph.py          check, print the cycles if any
    scripts/module-graph.py --dot    the graph in Graphviz dot
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
USE = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")


def module_of(path):
    rel = os.path.relpath(path, ROOT)
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def graph():
    edges = {}
    for dirpath, _, files in os.walk(ROOT):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(dirpath, name)
            # Test modules may reach anywhere; only production code makes the arrows.
            if name == "tests.rs" or os.sep + "tests" + os.sep in path:
                continue
            source = open(path, encoding="utf-8").read().split("#[cfg(test)]")[0]
            source = re.sub(r"//[^\n]*", "", source)
            src = module_of(path)
            if src in ("lib", "main"):
                continue
            for target in USE.findall(source):
                if target != src:
                    edges.setdefault(src, set()).add(target)
            edges.setdefault(src, set())
    return edges


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    edges = graph()
    if "--dot" in sys.argv:
        print("digraph apiguard {")
        for src in sorted(edges):
            for dst in sorted(edges[src]):
                print(f'  "{src}" -> "{dst}";')
        print("}")
        return 0
    found = cycles(edges)
    if not found:
        print(f"module graph: {len(edges)} modules, no cycle")
        return 0
    for comp in found:
        print("cycle among: " + ", ".join(comp))
        for src in comp:
            inside = sorted(t for t in edges[src] if t in comp)
            print(f"  {src} -> {', '.join(inside)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
