"""The package's layers, read from its source: imports go downward only, and privates stay home.

The layers, bottom first (the README's "Layout" draws them). A module may import its own
layer and the layers below; every import counts, also one inside a function.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "prefect_cluster_triggers"
# package prefix -> folder in the repository (pyproject.toml's package-dir)
FOLDERS = {"core": "core", "flows": "flows", "blocks": "blocks", "deployments": "deployments"}
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("core",)),
    ("engine", ("flows.engine",)),
    ("storage", ("blocks",)),
    ("prefect objects", ("deployments.prefect_objects",)),
    ("trigger service", ("deployments.service", "flows.clustering_flow")),
    ("evaluator", ("deployments.evaluator",)),
    ("interfaces", ("deployments.api", "deployments.cli")),
    ("local stack", ("deployments.stack",)),
]
# Layers whose code never imports Prefect: they run and are tested without a server.
PREFECT_FREE = ("core", "engine")
ALSO_PREFECT_FREE = ("blocks.files",)  # the storage formats under the blocks


def _modules() -> dict[str, Path]:
    found = {}
    for prefix, folder in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((prefix, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


MODULES = _modules()


def _layer(module: str) -> int:
    """The layer of `module` (a name below the package): the longest matching prefix decides."""
    best, rank = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    return rank


def _imports(module: str, path: Path) -> Iterator[tuple[str, str | None, int]]:
    """(imported module below the package, imported name or None, line) for every import of ours."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + "."):
                    yield alias.name.removeprefix(PACKAGE + "."), None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            elif node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
                target = node.module.removeprefix(PACKAGE).lstrip(".")
            else:
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}" if target else alias.name
                if submodule in MODULES:
                    yield submodule, None, node.lineno
                else:
                    yield target, alias.name, node.lineno


def test_every_module_has_a_layer() -> None:
    assert [m for m in MODULES if _layer(m) < 0 and m not in FOLDERS] == []


def test_imports_go_downward_only() -> None:
    upward = []
    for module, path in MODULES.items():
        if module in FOLDERS:
            continue
        for target, _, line in _imports(module, path):
            if target in FOLDERS:
                continue  # a package's __init__ (the blocks' registry)
            if _layer(target) > _layer(module):
                upward.append(f"{path.relative_to(ROOT)}:{line} ({LAYERS[_layer(module)][0]}) imports "
                              f"{target} ({LAYERS[_layer(target)][0]})")
    assert upward == []


def test_no_private_name_crosses_modules() -> None:
    crossing = []
    for module, path in MODULES.items():
        for target, name, line in _imports(module, path):
            private = [part for part in (*target.split("."), name or "") if part.startswith("_") and part != "__init__"]
            if private and target != module:
                crossing.append(f"{path.relative_to(ROOT)}:{line} imports {target}.{name or ''}")
    assert crossing == []


def test_libraries_are_used_through_their_public_names() -> None:
    """A library's private module or name (typer's vendored `typer._click`, say) changes in any release."""
    private = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module != "__future__":
                names = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                if not name.startswith(PACKAGE) and any(part.startswith("_") for part in name.split(".")):
                    private.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert private == []


def _private_definitions() -> set[str]:
    """Names of the package's private functions, methods and classes."""
    return {node.name for path in MODULES.values() for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.name.startswith("_") and not node.name.startswith("__")}


@pytest.mark.parametrize("folder", ["tests", "benchmarks", "docs"])
def test_tests_and_benchmarks_use_public_names(folder: str) -> None:
    """What tests and benchmarks use is what a user could: no `module._private`, no `from x import _y`,
    no private method of ours called on an object."""
    private = _private_definitions()
    crossing = []
    for path in (ROOT / folder).rglob("*.py"):
        tree = ast.parse(path.read_text())
        ours: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
                for alias in node.names:
                    if alias.name.startswith("_"):
                        crossing.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {alias.name}")
                    ours.add(alias.asname or alias.name)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
                continue
            on_ours = isinstance(node.value, ast.Name) and node.value.id in ours
            if on_ours or (node.attr in private and not (isinstance(node.value, ast.Name) and node.value.id == "self")):
                crossing.append(f"{path.relative_to(ROOT)}:{node.lineno} uses .{node.attr}")
    assert crossing == []


def test_core_and_engine_import_no_prefect() -> None:
    offending = []
    for module, path in MODULES.items():
        layer = _layer(module)
        if LAYERS[layer][0] not in PREFECT_FREE and not module.startswith(ALSO_PREFECT_FREE):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            offending += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                          if n.split(".")[0] in ("prefect", "fastapi", "typer")]
    assert offending == []


def test_no_import_cycles() -> None:
    graph = {m: {t for t, _, _ in _imports(m, p) if t in MODULES and t != m} for m, p in MODULES.items()
             if m not in FOLDERS}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_every_error_of_ours_has_the_one_root() -> None:
    """A caller catches `ClusterTriggersError` and has them all: no exception class of ours stands apart."""
    import importlib
    import inspect

    from prefect_cluster_triggers.core.errors import ClusterTriggersError

    apart = []
    for module in MODULES:
        loaded = importlib.import_module(f"{PACKAGE}.{module}")
        apart += [f"{module}.{name}" for name, value in vars(loaded).items()
                  if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == loaded.__name__
                  and not issubclass(value, ClusterTriggersError)]
    assert apart == []
