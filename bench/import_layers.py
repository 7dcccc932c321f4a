#!/usr/bin/env python3
"""Measure: imports against the layer order, and import cycles (issue 22, "imports in one direction").

The layers, lowest first (a module may import its own package and any lower layer):

    runtime < store < tools < guardrails < agents < workflows < feeds < worker.py < history < evaluation
    < bench < api < cli

The import graph is grimp's (``include_external_packages=False``): every import grimp sees, at module level,
including imports inside functions and under ``TYPE_CHECKING``. ``worker.py`` is a single module, which grimp
cannot take as a package: its own imports are read with ``ast`` (every ``import`` in the file), and the modules
that import it come from a second grimp graph in which it is an external module.

Printed: upward imports (importer's layer below the imported module's layer, or two different packages of the
same rank), the folder pairs they make, and the import cycles (strongly connected components of more than one
module) with their sizes and folders. ``--json`` prints the same as JSON.

    .venv/bin/python bench/import_layers.py
    .venv/bin/python bench/import_layers.py --root /tmp/before --json
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import grimp

ROOT = Path(__file__).resolve().parents[1]
LAYERS: list[tuple[str, ...]] = [("runtime",), ("store",), ("tools",), ("guardrails",), ("agents",), ("workflows",),
                                 ("feeds",), ("worker",), ("history",), ("evaluation",), ("bench",), ("api",),
                                 ("cli",)]
"""Lowest first; packages in one tuple share a rank (and may not import each other)."""
PACKAGES = [p for rank in LAYERS for p in rank if p != "worker"]
RANK = {package: rank for rank, names in enumerate(LAYERS) for package in names}


def package_of(module: str) -> str:
    return module.split(".", 1)[0]


def _worker_imports(root: Path, modules: set[str]) -> set[str]:
    """The careloom modules worker.py imports (anywhere in the file), as grimp would name them."""
    found: set[str] = set()
    for node in ast.walk(ast.parse((root / "worker.py").read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                     for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:  # `import a.b.c` imports a.b.c; an attribute is its module's
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_edges(root: Path) -> tuple[set[str], set[tuple[str, str]]]:
    """Every careloom module, worker.py's included, and (importer, imported) for every import between them."""
    sys.path.insert(0, str(root))
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False)
    edges = {(m, imported) for m in graph.modules for imported in graph.find_modules_directly_imported_by(m)}
    with_external = grimp.build_graph(*PACKAGES, include_external_packages=True)
    edges |= {(m, "worker") for m in with_external.find_modules_that_directly_import("worker")}
    edges |= {("worker", m) for m in _worker_imports(root, set(graph.modules))}
    return {*graph.modules, "worker"}, edges


def strongly_connected(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Tarjan's components (iterative), every module once."""
    successors: dict[str, list[str]] = {}
    for a, b in sorted(edges):
        successors.setdefault(a, []).append(b)
        successors.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for start in successors:
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            recurse = False
            for j in range(i, len(successors[node])):
                nxt = successors[node][j]
                if nxt not in index:
                    work.append((node, j + 1))
                    work.append((nxt, 0))
                    recurse = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if recurse:
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def measure(root: Path) -> dict[str, Any]:
    modules, edges = import_edges(root)
    upward = sorted((a, b) for a, b in edges if package_of(a) != package_of(b)
                    and RANK[package_of(a)] <= RANK[package_of(b)])
    pairs = Counter((package_of(a), package_of(b)) for a, b in upward)
    cycles = sorted((c for c in strongly_connected(edges) if len(c) > 1), key=len, reverse=True)
    return {
        "root": str(root),
        "modules": len(modules),
        "imports": len(edges),
        "upward_imports": len(upward),
        "upward_folder_pairs": len(pairs),
        "folder_pairs": [{"importer": a, "imported": b, "imports": n} for (a, b), n in sorted(pairs.items())],
        "upward": [{"importer": a, "imported": b} for a, b in upward],
        "cycles": [{"size": len(c), "folders": sorted({package_of(m) for m in c}), "modules": c} for c in cycles],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT, help="the careloom tree (default: the one holding this "
                        "file)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--list", action="store_true", help="also list every upward import")
    args = parser.parse_args()
    report = measure(args.root.resolve())
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['root']}: {report['modules']} modules, {report['imports']} imports between them")
    print(f"upward imports: {report['upward_imports']} in {report['upward_folder_pairs']} folder pairs")
    for pair in report["folder_pairs"]:
        print(f"  {pair['importer']:>11} -> {pair['imported']:<11} {pair['imports']}")
    if args.list:
        for edge in report["upward"]:
            print(f"    {edge['importer']} -> {edge['imported']}")
    print(f"import cycles (modules in one strongly connected component): {len(report['cycles'])}, "
          f"{sum(c['size'] for c in report['cycles'])} modules")
    for cycle in report["cycles"]:
        print(f"  size {cycle['size']:>3}, folders {', '.join(cycle['folders'])}")
        print(f"    {' '.join(cycle['modules'])}")


if __name__ == "__main__":
    main()
