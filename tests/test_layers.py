"""The import graph, read from the source (an AST walk, nothing imported): layers point one
way (runtime <- agents <- evals), no module-level import cycles, and one import style (inside
the package every import of specguard is relative: agents/ and evals/ are specguard.agents and
specguard.evals, so `..errors` is specguard.errors from either)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# folder -> the package it is imported as (pyproject's package-dir)
LAYERS = {"runtime": "specguard", "agents": "specguard.agents", "evals": "specguard.evals"}
RANK = {"specguard": 0, "specguard.agents": 1, "specguard.evals": 2}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in LAYERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


MODULES = _modules()


def _layer(module: str) -> str:
    for package in ("specguard.agents", "specguard.evals"):
        if module == package or module.startswith(package + "."):
            return package
    return "specguard"


def _imports(module: str, path: Path) -> list[tuple[str, int, int, bool]]:
    """(imported module, line, level, at module level) for every import in the file, relative
    ones resolved against the module's package."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top = {id(n) for n in tree.body}
    for node in tree.body:  # imports inside `if TYPE_CHECKING:` count as module level too
        if isinstance(node, ast.If):
            top.update(id(n) for n in node.body)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, 0, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            # `from . import x` imports the submodule x when there is one
            hits = [n for n in names if n in MODULES] or [target]
            out += [(t, node.lineno, node.level, id(node) in top) for t in hits]
    return [(t, line, level, top_level) for t, line, level, top_level in out
            if t == "specguard" or t.startswith("specguard.")]


def test_layers_point_one_way():
    upward = []
    for module, path in MODULES.items():
        for target, line, _, _ in _imports(module, path):
            if RANK[_layer(target)] > RANK[_layer(module)]:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_import_cycles_at_module_level():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, _, _, top_level in _imports(module, path):
            while target not in MODULES and "." in target:
                target = target.rpartition(".")[0]
            if top_level and target in MODULES and target != module:
                graph[module].add(target)
    cycles = _cycles(graph)
    assert not cycles, "module-level import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


# The eval harness still has absolute imports in files its owner is rewriting (issue #13);
# add "specguard.evals" here once they are relative.
STYLE_CHECKED = ("specguard", "specguard.agents")


def test_one_import_style():
    wrong = [f"{path.relative_to(ROOT)}:{line}: `from {target} import` (make it relative)"
             for module, path in MODULES.items() if _layer(module) in STYLE_CHECKED
             for target, line, level, _ in _imports(module, path) if level == 0]
    assert not wrong, "\n".join(wrong)


def test_the_walk_sees_what_it_checks():
    # the walk itself: it must find the runtime's core, and resolve relative imports
    assert "specguard.core" in MODULES and "specguard.agents.spec_updates" in MODULES
    core = dict((t, level) for t, _, level, _ in _imports("specguard.core", MODULES["specguard.core"]))
    assert core.get("specguard.graph") == 1 and core.get("specguard.context") == 1
