"""Prefect Variables as a small key-value store: save, read many by name, find by filter, delete by id.

Listing, quotas, idempotency keys and the evaluator keep small JSON records in Variables
(Prefect's database, visible in its UI). Reads take a page of 200 names per call; writes
retry a lost SQLite race at once (see `client.retry_lost_races`).
"""

from __future__ import annotations

from typing import Any

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.exceptions import ObjectAlreadyExists
from pydantic import BaseModel

from prefect_cluster_triggers.deployments.prefect_objects.client import PAGE, retry_lost_races


async def save(client: PrefectClient, name: str, value: BaseModel) -> None:
    """Create or replace one variable holding a record."""
    await save_value(client, name, value.model_dump(mode="json"))


async def save_value(client: PrefectClient, name: str, data: Any) -> None:
    """Create or replace one variable holding `data` (JSON); under a burst of writes on SQLite, without
    Prefect's long pauses (see `retry_lost_races`)."""
    await retry_lost_races(lambda: _save_value(client, name, data))


async def save_value_once(client: PrefectClient, name: str, data: Any) -> None:
    """Create or replace one variable holding `data` (JSON), without retrying a lost race (a hint a later write renews)."""
    await _save_value(client, name, data)


async def _save_value(client: PrefectClient, name: str, data: Any) -> None:
    try:
        await client.update_variable(VariableUpdate(name=name, value=data))
        return
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code != 404:
            raise
    try:
        await client.create_variable(VariableCreate(name=name, value=data, tags=["cluster-trigger"]))
    except ObjectAlreadyExists:  # created meanwhile by a concurrent writer
        await client.update_variable(VariableUpdate(name=name, value=data))


async def read(client: PrefectClient, names: list[str]) -> dict[str, Any]:
    """The values of the variables among `names`, by name, in one call per 200 names."""
    return {v["name"]: v["value"] for v in await variables_named(client, names)}


async def variables_named(client: PrefectClient, names: list[str]) -> list[dict[str, Any]]:
    """The variables among `names` as Prefect stores them (id, name, value, created), in one call per 200 names."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(names), PAGE):
        response = await client.request(
            "POST", "/variables/filter",
            json={"variables": {"name": {"any_": names[start : start + PAGE]}}, "limit": PAGE},
        )
        found += response.json()
    return found


async def variables_where(client: PrefectClient, variables: dict[str, Any]) -> list[dict[str, Any]]:
    """Every variable matching a `/variables/filter` filter, as Prefect stores them, page by page."""
    found: list[dict[str, Any]] = []
    while True:
        response = await client.request("POST", "/variables/filter",
                                        json={"variables": variables, "offset": len(found), "limit": PAGE})
        page = response.json()
        found += page
        if len(page) < PAGE:
            return found


async def delete_variable(client: PrefectClient, variable_id: Any) -> bool:
    """Delete a variable by id, which a re-created variable of the same name does not share;
    False when it was gone already (deleted by another caller)."""
    try:
        await client.request("DELETE", f"/variables/{variable_id}")
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:
            return False
        raise
    return True
