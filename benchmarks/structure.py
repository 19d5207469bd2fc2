"""The package's shape: the largest modules and classes (lines), import cycles, imports inside functions.

Targets: no module over 400 lines, no class over 250, no import cycle between modules or packages (the
cycle checks and the ceiling on imports inside functions are also tests: tests/test_architecture.py).

    python benchmarks/structure.py [--top 10]
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_architecture import PACKAGE, cycles, import_graph, package_edges  # noqa: E402

MODULE_MAX = 400
CLASS_MAX = 250


def sizes() -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(lines, module) and (lines, module:class) for every module and class of the package, largest first."""
    modules: list[tuple[int, str]] = []
    classes: list[tuple[int, str]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        rel = str(path.relative_to(ROOT))
        modules.append((len(text.splitlines()), rel))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                classes.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.name}"))
    return sorted(modules, reverse=True), sorted(classes, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    modules, classes = sizes()
    graph = import_graph()
    print("| measure | value | target |\n|---|---|---|")
    print(f"| largest module | {modules[0][0]} lines ({modules[0][1]}) | <= {MODULE_MAX} |")
    print(f"| modules over {MODULE_MAX} lines | {sum(n > MODULE_MAX for n, _ in modules)} of {len(modules)} | 0 |")
    print(f"| largest class | {classes[0][0]} lines ({classes[0][1]}) | <= {CLASS_MAX} |")
    print(f"| classes over {CLASS_MAX} lines | {sum(n > CLASS_MAX for n, _ in classes)} | 0 |")
    print(f"| module import cycles | {len(cycles(graph.edges))} | 0 |")
    print(f"| package import cycles | {len(cycles(package_edges(graph)))} | 0 |")
    print(f"| imports of judge modules inside functions | {len(graph.function_imports)} | not growing |")
    print("\n| largest modules | lines |\n|---|---|")
    for n, name in modules[: args.top]:
        print(f"| {name} | {n} |")
    print("\n| largest classes | lines |\n|---|---|")
    for n, name in classes[: args.top]:
        print(f"| {name} | {n} |")


if __name__ == "__main__":
    main()
