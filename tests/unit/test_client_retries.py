"""`without_client_retries`: Prefect's client retries off inside the block only, without rebuilding settings each time."""

from __future__ import annotations

import asyncio

import prefect.context
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

from prefect_cluster_triggers.deployments.prefect_objects.client import without_client_retries


def test_retries_are_off_inside_and_back_after() -> None:
    before = PREFECT_CLIENT_MAX_RETRIES.value()
    assert before > 0
    with without_client_retries():
        assert PREFECT_CLIENT_MAX_RETRIES.value() == 0
    assert PREFECT_CLIENT_MAX_RETRIES.value() == before


def test_the_derived_settings_are_reused_and_follow_a_change_of_the_base() -> None:
    with without_client_retries():
        first = prefect.context.get_settings_context().settings
    with without_client_retries():
        assert prefect.context.get_settings_context().settings is first
    with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 7}):
        with without_client_retries():
            assert PREFECT_CLIENT_MAX_RETRIES.value() == 0
        assert PREFECT_CLIENT_MAX_RETRIES.value() == 7


def test_nested_and_interleaved_blocks_keep_reusing_the_derived_settings() -> None:
    """A write retried inside a block that already has no retries (tidy, then a save), and tasks inside
    and outside blocks taking turns, all reuse one derived settings: none rebuilds Prefect's settings."""
    with without_client_retries():
        derived = prefect.context.get_settings_context().settings

    async def turns() -> set[int]:
        async def one(nested: bool) -> int:
            with without_client_retries():
                await asyncio.sleep(0)
                if nested:
                    with without_client_retries():
                        await asyncio.sleep(0)
                        return id(prefect.context.get_settings_context().settings)
                return id(prefect.context.get_settings_context().settings)
        return set(await asyncio.gather(*(one(i % 2 == 0) for i in range(20))))

    assert asyncio.run(turns()) == {id(derived)}
    assert PREFECT_CLIENT_MAX_RETRIES.value() > 0
