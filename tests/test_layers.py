"""The layers of the code (README "How it works"): a module imports only its own layer and those
below it, no imports go round in a cycle, and no product module grows past ~400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("retrieval", "indexer")
MAX_LINES = 400


def _layer(module: str) -> int:
    """1: errors, file names, encoders; 2: the indexer (scan, kinds, store, pipeline...);
    3: the query side and the face (library, search, query, cli, server)."""
    if module in ("retrieval.errors", "retrieval.paths") or module.startswith("retrieval.encoders"):
        return 1
    if module.startswith("indexer"):
        return 2
    return 3


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imports(path: Path, module: str, known: set[str], top_level_only: bool) -> set[str]:
    """Product modules `module` imports (anywhere in it, or only at module level)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:  # `if TYPE_CHECKING:` imports do not run
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def test_no_module_imports_a_higher_layer():
    modules = _modules()
    known = set(modules)
    wrong = []
    for module, path in modules.items():
        if module == "retrieval":  # the package's lazy re-exports (Library, Query, Hit) are the face itself
            continue
        for target in _imports(path, module, known, top_level_only=False):
            if target != "retrieval" and _layer(target) > _layer(module):
                wrong.append(f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})")
    assert not wrong, "\n".join(wrong)


def test_indexer_never_imports_the_query_side_or_the_face():
    modules = _modules()
    known = set(modules)
    for module, path in modules.items():
        if module.startswith("indexer"):
            assert all(_layer(t) <= 2 for t in _imports(path, module, known, top_level_only=False)), module


def test_no_import_cycles():
    modules = _modules()
    known = set(modules)
    graph = {m: _imports(p, m, known, top_level_only=True) - {"retrieval"} for m, p in modules.items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(m: str, stack: list[str]) -> bool:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                cycle.extend(stack[stack.index(n):] + [m, n] if n in stack else [m, n])
                return True
            if state.get(n) is None and visit(n, stack + [m]):
                return True
        state[m] = 2
        return False

    for m in sorted(graph):
        if state.get(m) is None and visit(m, []):
            break
    assert not cycle, " -> ".join(cycle)


def test_modules_stay_small():
    too_long = {m: n for m, p in _modules().items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not too_long, f"split these modules (over {MAX_LINES} lines): {too_long}"
