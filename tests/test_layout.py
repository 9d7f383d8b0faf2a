"""The shape of the code: no import circles anywhere (core, gateway, every plugin), and the
core's subpackages keep their jobs — operator tooling and test support stay out of the
runtime's way."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE_PACKAGES = {"cli", "nats", "observability", "ops", "runtime", "testing"}


def _modules() -> dict[str, Path]:
    roots = [ROOT / "osiris_core", ROOT / "gateway" / "osiris_gateway",
             *sorted((ROOT / "plugins").glob("*/osiris_*"))]
    out: dict[str, Path] = {}
    for root in roots:
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module of ours `name` imports, lazily and under TYPE_CHECKING included (a circle
    hidden in a function is still a circle). A package's own `__init__`, entered implicitly
    by importing one of its modules, is not an edge."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                if f"{module}.{alias.name}" in MODULES:
                    found.add(f"{module}.{alias.name}")
                elif module in MODULES:
                    found.add(module)
    found.discard(name)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def test_the_circle_finder_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_in_the_core_the_gateway_or_any_plugin() -> None:
    assert len(MODULES) > 150  # the walk found the tree
    circles = _circles(GRAPH)
    detail = {tuple(c): {m: sorted(GRAPH[m] & set(c)) for m in c} for c in circles}
    assert not circles, detail


def test_the_core_has_its_named_subpackages() -> None:
    found = {p.parent.name for p in (ROOT / "osiris_core").glob("*/__init__.py")}
    assert found == CORE_PACKAGES


def _importers(prefix: str) -> set[str]:
    return {m for m, deps in GRAPH.items() if any(d == prefix or d.startswith(prefix + ".")
                                                  for d in deps)}


def test_operator_tooling_is_imported_only_by_the_cli() -> None:
    outside = {m for m in _importers("osiris_core.ops")
               if not m.startswith(("osiris_core.ops", "osiris_core.cli"))}
    assert not outside


def test_nothing_that_serves_imports_test_support() -> None:
    outside = {m for m in _importers("osiris_core.testing")
               if not m.startswith("osiris_core.testing") and not m.endswith(".testing")}
    assert not outside


def test_the_runtime_does_not_reach_up_into_the_cli() -> None:
    below = ("osiris_core.runtime", "osiris_core.nats", "osiris_core.observability")
    for prefix in ("osiris_core.cli", "osiris_core.ops"):
        assert not {m for m in _importers(prefix) if m.startswith(below)}, prefix


DOMAIN = re.compile(r"hermes|phi3|\btts\b|speech|\bgpu|cuda|vram|\bdgm|planner|orchestrator|"
                    r"\bsim\b|bridge|feedback|trad(e|ing)|propos|ticker|adapter|market", re.I)
"""What the application is about: words the core's code (names and strings; docstrings may
give examples) never uses."""
COMPAT = ROOT / "osiris_core" / "moved.py"
"""The one exception: the table of old paths that moved out of the core (deprecated)."""


def _code_words(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    docs = {id(n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docs:
            text = node.value
        elif isinstance(node, ast.Name):
            text = node.id
        elif isinstance(node, ast.Attribute):
            text = node.attr
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            text = node.name
        elif isinstance(node, ast.alias):
            text = node.name
        if text and DOMAIN.search(text):
            found.append((getattr(node, "lineno", 0), text))
    return found


def test_the_domain_finder_finds_the_domain(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text('"""About trading (a docstring may say so)."""\n'
                   'TICKS = "market.ticks"\n\ndef gpu_budget():\n    pass\n')
    assert sorted(t for _, t in _code_words(src)) == ["gpu_budget", "market.ticks"]


def test_the_core_knows_nothing_of_the_application() -> None:
    core = {m: p for m, p in MODULES.items() if m.startswith("osiris_core")}
    reaching_out = {m: sorted(d for d in GRAPH[m] if not d.startswith("osiris_core"))
                    for m in core}
    assert not {m: d for m, d in reaching_out.items() if d}, "the core imports the application"
    words = {str(p.relative_to(ROOT)): _code_words(p) for p in core.values() if p != COMPAT}
    assert not {f: w for f, w in words.items() if w}
