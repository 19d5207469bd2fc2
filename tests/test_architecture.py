"""The package's shape: no import cycles between judge's modules or packages, counting imports inside
functions and under ``TYPE_CHECKING`` (a cycle hidden that way is still a cycle), and a ceiling on imports
inside functions (they are for slow third-party loads and lazy CLI start-up, not for dodging a cycle).

The sizes of the largest modules and classes are measured by ``python benchmarks/structure.py``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "judge"

#: Imports of judge's own modules inside functions. They may go down (or be replaced by module-level
#: imports); a new one needs a reason that is not an import cycle.
MAX_FUNCTION_IMPORTS = 103


@dataclass
class Graph:
    """Module-level import edges of judge, with how each import is written."""

    modules: dict[str, Path]
    edges: dict[str, set[str]] = field(default_factory=dict)
    function_imports: list[tuple[str, int, str]] = field(default_factory=list)


def module_name(path: Path) -> str:
    """``judge/a/b.py`` -> ``judge.a.b``; a package's ``__init__.py`` -> the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(tree: ast.AST, package: str) -> Iterator[tuple[ast.stmt, list[str], bool]]:
    """Every import statement with the judge names it imports and whether it sits inside a function."""
    def walk(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.stmt, list[str], bool]]:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                yield child, [a.name for a in child.names], inside
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*up, base] if base else up)
                yield child, [f"{base}.{a.name}" for a in child.names], inside
            yield from walk(child, inside)
    yield from walk(tree, False)


def import_graph(package: Path = PACKAGE) -> Graph:
    """The import graph of every module of ``package`` (migrations left out: Alembic loads them)."""
    modules = {module_name(p): p for p in package.rglob("*.py") if "migrations" not in p.parts}
    graph = Graph(modules, {name: set() for name in modules})
    for name, path in modules.items():
        package_name = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for stmt, targets, in_function in _imports(ast.parse(path.read_text(encoding="utf-8")), package_name):
            own = [t for t in targets if t == "judge" or t.startswith("judge.")]
            if own and in_function:
                graph.function_imports.append((name, stmt.lineno, ", ".join(own)))
            for target in own:
                resolved = _resolve(target, modules)
                if resolved is not None and resolved != name:
                    graph.edges[name].add(resolved)
    return graph


def package_of(module: str) -> str:
    """``judge.a.b`` -> ``judge.a``; a top-level module is its own package."""
    return ".".join(module.split(".")[:2])


def package_edges(graph: Graph) -> dict[str, set[str]]:
    """Edges between judge's packages (and top-level modules); the ``judge`` package itself is left out (it
    re-exports the public names lazily)."""
    edges: dict[str, set[str]] = {}
    for source, targets in graph.edges.items():
        for target in targets:
            a, b = package_of(source), package_of(target)
            if a != b and "judge" not in (a, b):
                edges.setdefault(a, set()).add(b)
                edges.setdefault(b, set())
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_between_modules() -> None:
    assert cycles(import_graph().edges) == []


def test_no_import_cycle_between_packages() -> None:
    assert cycles(package_edges(import_graph())) == []


def test_cycle_finder_sees_a_cycle_through_a_function_import(tmp_path: Path) -> None:
    package = tmp_path / "judge"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from judge.b import g\n")
    (package / "b.py").write_text("def g():\n    from judge.a import x\n")
    (package / "c.py").write_text("import judge.a\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        graph = import_graph(package)
    finally:
        ROOT = saved
    assert cycles(graph.edges) == [["judge.a", "judge.b"]]
    assert [(m, line) for m, line, _ in graph.function_imports] == [("judge.b", 2)]


def test_function_level_imports_do_not_grow() -> None:
    found = import_graph().function_imports
    assert len(found) <= MAX_FUNCTION_IMPORTS, "\n".join(f"{m}:{line}: {names}" for m, line, names in found)
