"""Two evaluators checking one conditional trigger at the same moment fire it once.

A check's firing run is keyed by its check slot (`core.checks`), which every evaluator
computes alike, so Prefect creates the run once however many evaluators check the slot.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import numpy as np
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

from prefect_cluster_triggers.blocks.collections import open_collection
from prefect_cluster_triggers.blocks.result_store import default_result_store_with
from prefect_cluster_triggers.core import checks
from prefect_cluster_triggers.deployments.evaluator.service import Evaluator
from prefect_cluster_triggers.deployments.prefect_objects.status import of_deployment
from prefect_cluster_triggers.deployments.prefect_objects.translate import CONDITION_TAG, FLOW_NAME, stored_record
from prefect_cluster_triggers.deployments.service import queries
from tests.integration.triggers import create

pytestmark = pytest.mark.usefixtures("api")
_INTERVAL = 3600  # both checks fall in one slot (unless they straddle the top of an hour)


def test_two_evaluators_checking_at_once_fire_a_conditional_trigger_once() -> None:
    open_collection("col_twice").add_documents(np.random.default_rng(3).normal(size=(60, 8)).astype(np.float32))
    # Paused, so the API's own evaluator leaves it alone; these two check it directly.
    create({"trigger_type": "conditional",
            "schedule_config": {"condition_type": "drift", "metric": "cosine_drift", "threshold": 0.05,
                                "check_interval_seconds": _INTERVAL},
            "execution_config": {"collection_ids": ["col_twice"], "config": {"algorithm": "kmeans", "n_clusters": 2}},
            "status": "paused"}, "trg_twice")

    async def check_twice() -> list:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(f"{FLOW_NAME}/trg_twice")
            record = stored_record(deployment)
            config = record.request.schedule_config
            first, second = Evaluator("http://127.0.0.1:9/unused"), Evaluator("http://127.0.0.1:9/unused")
            # No clustering yet: each check finds the first clustering owed, and fires.
            store = await default_result_store_with(client)
            await asyncio.gather(*(e.conditions.check(client, deployment, record, config, store) for e in (first, second)))
            runs = await client.read_flow_runs(deployment_filter=of_deployment(deployment.id),
                                               flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[CONDITION_TAG])))
            return runs

    runs = queries.run_sync(check_twice())
    assert len(runs) == 1
    assert runs[0].idempotency_key == checks.firing_key("trg_twice", checks.check_slot(
        datetime.fromisoformat(runs[0].parameters["firing"]["checked_at"]), _INTERVAL))
