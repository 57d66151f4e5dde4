"""`without_client_retries`: Prefect's client retries off inside the block only, without rebuilding settings each time."""

from __future__ import annotations

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
