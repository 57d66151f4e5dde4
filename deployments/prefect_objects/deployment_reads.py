"""Every trigger deployment of the server, read as plain JSON with a fingerprint; parsed only when wanted.

A sweep must see each trigger's deployment (a pause in the Prefect UI, a `prefect deploy`,
an edit leave no event to follow), but parsing ten thousand deployments into Prefect's models
costs more than reading them. So the sweep reads the JSON, compares fingerprints of what a
sweep acts on, and parses the few it visits.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.responses import DeploymentResponse

from prefect_cluster_triggers.deployments.prefect_objects.client import PAGE
from prefect_cluster_triggers.deployments.prefect_objects.translate import TRIGGER_TAG


async def raw_trigger_deployments(client: PrefectClient) -> list[dict[str, Any]]:
    """Every trigger deployment as Prefect's API returns it, one call per page."""
    found: list[dict[str, Any]] = []
    while True:
        response = await client.request("POST", "/deployments/filter", json={
            "deployments": {"tags": {"all_": [TRIGGER_TAG]}}, "offset": len(found), "limit": PAGE})
        page = response.json()
        found += page
        if len(page) < PAGE:
            return found


def fingerprint(raw: dict[str, Any]) -> str:
    """What a sweep acts on of a deployment: its pause, tags, parameters (the record) and description."""
    facts = [raw.get("paused"), sorted(raw.get("tags") or []), raw.get("parameters"), raw.get("description")]
    return hashlib.blake2b(json.dumps(facts, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


def parsed(raw: dict[str, Any]) -> DeploymentResponse:
    """The deployment as the Prefect client's model, as `read_deployments` returns it."""
    return DeploymentResponse.model_validate(raw)
