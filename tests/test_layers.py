"""The layers of the code (README "How it works"): a module imports only its own layer and those
below it, no imports go round in a cycle, and no product module grows past ~400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from typing import Iterator

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
    if not top_level_only:  # lazy imports too, but not those under `if TYPE_CHECKING:`, which never run
        checking = [n for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)]
        skip = {id(x) for n in checking for x in ast.walk(n)}
        nodes = [n for n in nodes if id(n) not in skip]
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


def _cycle(top_level_only: bool, within: str = "") -> list[str]:
    """One import cycle among the modules (those whose name starts with `within`), or []."""
    modules = {m: p for m, p in _modules().items() if m.startswith(within)}
    known = set(modules)
    graph = {m: _imports(p, m, known, top_level_only=top_level_only) - {"retrieval"} for m, p in modules.items()}
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
    return cycle


def test_no_import_cycles():
    cycle = _cycle(top_level_only=True)
    assert not cycle, " -> ".join(cycle)


@pytest.mark.parametrize("pkg", ["indexer", "retrieval"])
def test_no_import_cycles_lazy_imports_included(pkg):
    cycle = _cycle(top_level_only=False, within=pkg)
    assert not cycle, " -> ".join(cycle)


def _functions(pkg: str) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for path in (ROOT / pkg).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", node


@pytest.mark.parametrize("pkg", ["indexer", "retrieval"])
def test_functions_stay_small(pkg):
    """No function over 100 lines or with more than 8 parameters (self aside; a click command
    takes one parameter per option, and its options are declared elsewhere: retrieval.request)."""
    too_big = []
    for where, fn in _functions(pkg):
        a = fn.args
        params = [x for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
        size = (fn.end_lineno or fn.lineno) - fn.lineno + 1
        command = any("command" in ast.unparse(d) or "option" in ast.unparse(d) for d in fn.decorator_list)
        if size > 100 or (len(params) > 8 and not command):
            too_big.append(f"{where}: {size} lines, {len(params)} parameters")
    assert not too_big, "\n".join(too_big)


def test_modules_stay_small():
    too_long = {m: n for m, p in _modules().items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not too_long, f"split these modules (over {MAX_LINES} lines): {too_long}"
