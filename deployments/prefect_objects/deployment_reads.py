"""The trigger deployments of the server as the sweep knows them: read as plain JSON, kept up to date
by reading only those that changed, parsed only when visited.

A sweep must see each trigger's deployment (a pause in the Prefect UI, a `prefect deploy`, an
edit leave no event to follow), but reading and parsing ten thousand deployments every sweep
makes its cost grow with the number of triggers. Every change Prefect makes to a deployment
row (pause, resume, tags, parameters, description) sets its indexed `updated` column, and a
worker's polling keeps it untouched; so after one full read a sweep reads the deployments
updated since the last sweep began (newest first, stopping at the first older one), and counts
the trigger deployments to notice a deletion, which leaves nothing updated.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.responses import DeploymentResponse

from prefect_cluster_triggers.deployments.prefect_objects.client import PAGE
from prefect_cluster_triggers.deployments.prefect_objects.translate import TRIGGER_TAG, without_state_line

_TRIGGERS = {"deployments": {"tags": {"all_": [TRIGGER_TAG]}}}


class TriggerDeployments:
    """Every trigger deployment of the server, by trigger id, with the fingerprint of what a sweep acts on."""

    def __init__(self) -> None:
        self.raws: dict[str, dict[str, Any]] = {}  # trigger id (the deployment's name) -> the deployment's JSON
        self.fingerprints: dict[str, str] = {}

    def forget(self) -> None:
        """The next `refresh` reads every deployment."""
        self.raws, self.fingerprints = {}, {}

    async def refresh(self, client: PrefectClient, since: datetime | None) -> None:
        """Read those updated since `since` into what is known; everything when `since` is None, nothing is
        known yet, or the server holds another number of trigger deployments than known (one was deleted)."""
        if since is not None and self.raws:
            self._keep(await raw_trigger_deployments(client, updated_since=since))
            count = await client.request("POST", "/deployments/count", json=_TRIGGERS)
            if count.json() == len(self.raws):
                return
        self.forget()
        self._keep(await raw_trigger_deployments(client))

    def _keep(self, raws: list[dict[str, Any]]) -> None:
        for raw in raws:
            self.raws[raw["name"]] = raw
            self.fingerprints[raw["name"]] = fingerprint(raw)


async def raw_trigger_deployments(client: PrefectClient, *, updated_since: datetime | None = None
                                  ) -> list[dict[str, Any]]:
    """The trigger deployments as Prefect's API returns them, one call per page: all of them, or those
    updated at or after `updated_since` (read newest first, so the pages stop at the first older one)."""
    order = "NAME_ASC" if updated_since is None else "UPDATED_DESC"
    found: list[dict[str, Any]] = []
    while True:
        response = await client.request("POST", "/deployments/filter", json={
            **_TRIGGERS, "sort": order, "offset": len(found), "limit": PAGE})
        page = response.json()
        found += page
        if updated_since is not None and page and _updated(page[-1]) < updated_since:
            return [raw for raw in found if _updated(raw) >= updated_since]
        if len(page) < PAGE:
            return found


def fingerprint(raw: dict[str, Any]) -> str:
    """What a sweep acts on of a deployment: its pause, tags, parameters (the record) and description. Not the
    state line the sweep itself writes into the description: else each line written would have the next sweep
    visit the trigger again for nothing."""
    facts = [raw.get("paused"), sorted(raw.get("tags") or []), raw.get("parameters"),
             without_state_line(raw.get("description"))]
    return hashlib.blake2b(json.dumps(facts, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


def parsed(raw: dict[str, Any]) -> DeploymentResponse:
    """The deployment as the Prefect client's model, as `read_deployments` returns it."""
    return DeploymentResponse.model_validate(raw)


def _updated(raw: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(raw["updated"])
