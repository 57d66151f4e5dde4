"""Every block meets the standards of PrefectHQ's integrations (their BlockStandardTestSuite, in brief)."""

from __future__ import annotations

import pytest
from prefect.blocks.core import Block

import prefect_cluster_triggers.blocks as blocks
from prefect_cluster_triggers.deployments.cursors import EventTriggerCursor

# The blocks users make, and the one the evaluator writes (registered on its first save).
BLOCKS = [v for v in map(blocks.__dict__.get, blocks.__all__) if isinstance(v, type) and issubclass(v, Block)]
BLOCKS.append(EventTriggerCursor)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.__name__)
def test_block_is_documented_for_the_prefect_ui(block: type[Block]) -> None:
    assert block.get_description(), "a description the UI shows"
    assert block._documentation_url and block._documentation_url.startswith("https://")
    assert f"{block.__name__}.load(" in (block.__doc__ or ""), "a `.load(\"name\")` example"
    for name, field in block.model_fields.items():
        assert field.description, f"{block.__name__}.{name} has no description"


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.__name__)
def test_secrets_are_secret_str(block: type[Block]) -> None:
    for name, field in block.model_fields.items():
        if any(word in name for word in ("token", "secret", "password")):
            assert "SecretStr" in str(field.annotation), f"{block.__name__}.{name} should be a SecretStr"


def test_the_blocks_are_found_through_prefects_collections_entry_point() -> None:
    from importlib.metadata import entry_points

    found = {e.name: e.value for e in entry_points(group="prefect.collections")}
    assert found.get("prefect_cluster_triggers") == "prefect_cluster_triggers.blocks"
