"""Every public definition of the core and the service layers says in its docstring why it exists."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED = ["core", "deployments/prefect_objects", "deployments/service", "deployments/evaluator", "deployments/cli"]


def _undocumented(folder: str) -> list[str]:
    missing = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        tree = ast.parse(path.read_text())
        where = path.relative_to(ROOT)
        if not ast.get_docstring(tree):
            missing.append(f"{where}: module")

        def visit(nodes: list[ast.stmt], prefix: str = "") -> None:
            for node in nodes:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                    if not ast.get_docstring(node):
                        missing.append(f"{where}:{node.lineno} {prefix}{node.name}")
                    if isinstance(node, ast.ClassDef):
                        visit(node.body, f"{prefix}{node.name}.")

        visit(tree.body)
    return missing


@pytest.mark.parametrize("folder", DOCUMENTED)
def test_public_definitions_have_docstrings(folder: str) -> None:
    assert _undocumented(folder) == []
