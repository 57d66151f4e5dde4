"""The sweep's view of the trigger deployments (`prefect_objects.deployment_reads`): kept up to date by
reading only the deployments changed since a moment, it is the view a full read gives."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from prefect.client.orchestration import get_client

from prefect_cluster_triggers.core.contract import validate_request
from prefect_cluster_triggers.deployments.prefect_objects.deployment_reads import (
    TriggerDeployments,
    raw_trigger_deployments,
)
from prefect_cluster_triggers.deployments.service import commands
from tests.integration.triggers import create

pytestmark = pytest.mark.usefixtures("prefect_worker")

IDS = [f"trg_reads_{i}" for i in range(5)]


def _interval(description: str) -> dict:
    return {"trigger_type": "interval", "schedule_config": {"interval_seconds": 3600},
            "execution_config": {"collection_ids": ["col_reads"], "config": {"algorithm": "kmeans", "n_clusters": 3}},
            "description": description}


def _ours(known: TriggerDeployments) -> dict[str, str]:
    return {name: f for name, f in known.fingerprints.items() if name.startswith("trg_reads_")}


def _updated(raw: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(raw["updated"])


def test_reading_only_what_changed_keeps_the_view_a_full_read_gives() -> None:
    for trigger_id in IDS[:4]:
        create(_interval("before"), trigger_id)

    async def scenario() -> None:
        async with get_client() as client:
            full_reads: list[Any] = []
            request = client.request

            async def counted(method: str, path: str, **kwargs: Any) -> Any:
                full_reads.extend([path] if (kwargs.get("json") or {}).get("sort") == "NAME_ASC" else [])
                return await request(method, path, **kwargs)

            client.request = counted  # type: ignore[method-assign]
            known = TriggerDeployments()
            await known.refresh(client, None)
            assert set(_ours(known)) == set(IDS[:4]) and len(full_reads) == 1

            since = datetime.now(timezone.utc) - timedelta(seconds=2)  # the `updated` column's clock and ours
            await commands.pause_trigger(IDS[0])
            await commands.update_trigger(IDS[1], {"description": "edited"})
            await commands.create_trigger(validate_request(_interval("new")), trigger_id=IDS[4])
            changed = {raw["name"] for raw in await raw_trigger_deployments(client, updated_since=since)}
            assert {IDS[0], IDS[1], IDS[4]} <= changed
            await known.refresh(client, since)
            assert len(full_reads) == 1, "nothing was deleted: only what changed is read"
            whole = TriggerDeployments()
            await whole.refresh(client, None)
            assert set(_ours(known)) == set(_ours(whole)) == set(IDS)
            for name in IDS:  # the same, unless the session's evaluator wrote a state line in between
                mine, theirs = known.raws[name], whole.raws[name]
                assert (_updated(mine), known.fingerprints[name]) == (_updated(theirs), whole.fingerprints[name]) \
                    or _updated(theirs) > _updated(mine), name
            assert known.raws[IDS[0]]["paused"] is True and "edited" in known.raws[IDS[1]]["description"]

            since = datetime.now(timezone.utc) - timedelta(seconds=2)
            await client.delete_deployment(known.raws[IDS[2]]["id"])  # as in the Prefect UI: no event, no update
            await known.refresh(client, since)
            assert len(full_reads) == 3, "the count of trigger deployments dropped: everything is read again"
            assert IDS[2] not in known.raws and set(_ours(known)) == set(IDS) - {IDS[2]}

    asyncio.run(scenario())
