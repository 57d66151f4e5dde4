"""The plugin's small JSON records in Prefect block documents: create once, save, read many by name, find by prefix, delete.

Quota slots, run figures, evaluator state, cursor hints, Idempotency-Keys and the sweep lease
are records of the one block type `cluster-trigger-record`, each a block document named for
what it holds. Not Prefect Variables: Prefect reads every Variable of the server each time it
creates a run from a deployment (to render `prefect.variables` in parameters), so records of
thousands of triggers kept there slow every firing of every trigger. Block documents are read
by name only, and Prefect keeps their names unique per block type: of two callers creating
the same name at once exactly one succeeds, the lock quotas and keys rely on. They are
anonymous documents (see `create_block`): no Prefect event per write, not on the Blocks page.

Records saved as Variables by an earlier version are moved here by `move_from_variables`.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

import httpx
from prefect.blocks.core import Block
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import BlockDocumentCreate, BlockDocumentUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from pydantic import BaseModel, Field

from prefect_cluster_triggers.blocks.saving import DOCS_URL
from prefect_cluster_triggers.deployments.prefect_objects.client import PAGE, loop_lock, retry_lost_races

PREFIX = "cluster-trigger"  # every record's name starts so (and every Variable an earlier version kept)
_MOVING = 8  # Variables moved at once
_BLOCK_NAME = re.compile(r"[a-z0-9-]+")  # Prefect's rule for block document names


class RecordBlock(Block):
    """A small record the plugin keeps about its triggers (a quota slot, run figures, evaluator state, a key).

    Written by the plugin only; a record deleted by hand is made again from the triggers'
    flow runs and checkpoints (run figures, state) or is given up (a quota slot, a key).

    Example:
        ```python
        from prefect_cluster_triggers.deployments.prefect_objects.records import RecordBlock

        record = RecordBlock.load("BLOCK_NAME")  # BLOCK_NAME: e.g. "cluster-trigger-runs-trg-abc123"
        print(record.value)
        ```
    """

    _block_type_name: ClassVar[str] = "Cluster Trigger Record"
    _block_type_slug: ClassVar[str] = "cluster-trigger-record"
    _documentation_url: ClassVar[str] = DOCS_URL
    _description: ClassVar[str] = "A small record the plugin keeps about a trigger (written by the plugin)."

    value: Any = Field(None, description="The record, as JSON.")


@dataclass(frozen=True)
class Record:
    """One record as Prefect stores it."""

    id: UUID
    name: str
    value: Any
    created: datetime


_types: dict[tuple[str, type[Block]], tuple[UUID, UUID]] = {}  # (API URL, block class) -> (schema id, type id)
_ids: dict[tuple[str, str], UUID] = {}  # (API URL, record name) -> the id it was last seen with


async def registered(client: PrefectClient, block: type[Block]) -> tuple[UUID, UUID]:
    """The block class's schema and type ids on this server, registered the first time (once per process:
    a burst's first writes wait for one registration, where each made its own four calls)."""
    key = (str(client.api_url), block)
    async with loop_lock(f"register {block.get_block_type_slug()}"):
        if key not in _types:
            try:
                await block.aregister_type_and_schema(client=client)
            except (ObjectAlreadyExists, httpx.HTTPStatusError):  # registered by a rival meanwhile (409)
                await block.aregister_type_and_schema(client=client)
            _types[key] = (block._block_schema_id, block._block_type_id)  # what registering set
    return _types[key]


async def create_block(client: PrefectClient, block: type[Block], name: str, data: dict[str, Any], *,
                       retry: bool = True) -> Any | None:
    """Create a block document of `block`'s type holding `data`; None when one of that name exists.

    The document is anonymous, though named: Prefect emits no event for an anonymous document's
    create, update or delete, and leaves it off the UI's Blocks page. A named one had every
    condition check and every event trigger's evaluation add one to three events to Prefect's
    event feed, each stored and matched against every automation. Names stay unique per block
    type either way, so creating one is still the lock of quotas and keys.

    A lost SQLite race (503) wrote nothing and is tried again at once, not after Prefect's pauses
    (with `retry`; without, it is the answer)."""
    schema_id, type_id = await registered(client, block)

    async def write() -> Any:
        return await client.create_block_document(BlockDocumentCreate(
            name=name, block_schema_id=schema_id, block_type_id=type_id, data=data, is_anonymous=True))

    try:
        return await (retry_lost_races(write) if retry else write())
    except ObjectAlreadyExists:
        return None
    except Exception:  # the ids may be another server's (a new database behind the same URL): taken again next time
        _types.pop((str(client.api_url), block), None)
        raise


async def create(client: PrefectClient, name: str, value: Any, *, retry: bool = True) -> Record | None:
    """Create the record `name` holding `value` (JSON); None when it exists (the lock of quotas and keys)."""
    document = await create_block(client, RecordBlock, name, {"value": value}, retry=retry)
    if document is None:
        return None
    _ids[(str(client.api_url), name)] = document.id
    return Record(document.id, name, value, document.created)


async def save(client: PrefectClient, name: str, value: BaseModel) -> None:
    """Create or replace the record `name` holding a model."""
    await save_value(client, name, value.model_dump(mode="json"))


async def save_value(client: PrefectClient, name: str, value: Any, *, retry: bool = True) -> None:
    """Create or replace the record `name` holding `value` (JSON); the last write wins.

    Usually one call: the record's id is remembered from its last read or write. Without `retry`,
    a lost SQLite race is the answer (for a hint that a later write renews)."""
    key = (str(client.api_url), name)
    while True:
        known = _ids.get(key)
        if known is not None and await update(client, known, value, retry=retry):
            return
        _ids.pop(key, None)
        if await create(client, name, value, retry=retry) is not None:
            return
        found = await named(client, [name])  # created meanwhile by another writer: replace it
        if found and await update(client, found[0].id, value, retry=retry):
            return


async def update(client: PrefectClient, record_id: UUID, value: Any, *, retry: bool = True) -> bool:
    """Replace the value of the record `record_id`; False when it is gone. `retry`: as for `create_block`."""
    async def write() -> None:
        await client.update_block_document(record_id, BlockDocumentUpdate(data={"value": value},
                                                                          merge_existing_data=False))

    try:
        await (retry_lost_races(write) if retry else write())
    except ObjectNotFound:
        return False
    return True


async def read(client: PrefectClient, names: list[str]) -> dict[str, Any]:
    """The values of the records among `names`, by name."""
    return {record.name: record.value for record in await named(client, names)}


async def named(client: PrefectClient, names: list[str]) -> list[Record]:
    """The records among `names`, in one call per 200 names."""
    found: list[Record] = []
    for start in range(0, len(names), PAGE):
        found += await _filter(client, {"name": {"any_": names[start : start + PAGE]}}, 0)
    return found


async def starting_with(client: PrefectClient, prefix: str) -> list[Record]:
    """Every record whose name starts with `prefix`, page by page."""
    found: list[Record] = []
    while True:
        page = await _filter(client, {"name": {"like_": f"{prefix}%"}}, len(found))
        found += page
        if len(page) < PAGE:
            return [r for r in found if r.name.startswith(prefix)]  # LIKE's `_` matches any character


async def delete(client: PrefectClient, record_id: UUID) -> bool:
    """Delete a record by id, which a record made again under the same name does not share;
    False when it was gone already (deleted by another caller)."""
    try:
        await client.delete_block_document(record_id)
    except ObjectNotFound:
        return False
    return True


async def move_from_variables(client: PrefectClient) -> int:
    """Move the records an earlier version kept in Prefect Variables here; how many were moved.

    Each is created here unless a record of its name exists (written since, so newer), then its
    Variable is deleted; replicas moving at once move each once, and a move cut short is
    finished by the next. A moved key counts its age from the move. A Variable whose name is no
    block name is deleted only: those are the quota slots, and the namespace's next claim gives
    every active trigger without a slot one again (`service.quota`)."""
    parallel = asyncio.Semaphore(_MOVING)

    async def one(variable: dict[str, Any]) -> bool:
        async with parallel:
            made = (_BLOCK_NAME.fullmatch(variable["name"]) is not None
                    and await create(client, variable["name"], variable["value"]) is not None)
            try:
                await client.request("DELETE", f"/variables/{variable['id']}")
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 404:  # 404: moved by another replica meanwhile
                    raise
            return made

    moved = 0
    while True:
        response = await client.request("POST", "/variables/filter",
                                        json={"variables": {"name": {"like_": f"{PREFIX}%"}}, "limit": PAGE})
        page = [v for v in response.json() if v["name"].startswith(PREFIX)]
        if not page:
            return moved
        moved += sum(await asyncio.gather(*(one(v) for v in page)))


async def make_anonymous(client: PrefectClient, prefixes: list[str]) -> int:
    """Make the records under `prefixes` that an earlier version wrote as named documents anonymous; how many.

    Only for records whose value is renewed by their next write (run figures, evaluator state,
    cursor hints): each is deleted and made again with its value, and a write landing between
    the two is lost until the next one (a trigger without a runs record is recounted by the next
    sweep). Quota slots, keys and the lease are locks and keep their named documents: made
    again, they would be free for a moment. Replicas doing this at once make each record once."""
    parallel = asyncio.Semaphore(_MOVING)

    async def one(record: Record) -> bool:
        async with parallel:
            return await delete(client, record.id) and await create(client, record.name, record.value) is not None

    made = 0
    for prefix in prefixes:
        while page := [r for r in await _filter(client, {"name": {"like_": f"{prefix}%"}, "is_anonymous": {"eq_": False}}, 0)
                       if r.name.startswith(prefix)]:
            made += sum(await asyncio.gather(*(one(r) for r in page)))
    return made


async def _filter(client: PrefectClient, documents: dict[str, Any], offset: int) -> list[Record]:
    response = await client.request("POST", "/block_documents/filter", json={
        "block_documents": {"is_anonymous": None, **documents},  # None: anonymous, and named by an earlier version
        "block_types": {"slug": {"any_": [RecordBlock.get_block_type_slug()]}},
        "include_secrets": True, "offset": offset, "limit": PAGE})
    found = [Record(UUID(d["id"]), d["name"], d["data"].get("value"), datetime.fromisoformat(d["created"]))
             for d in response.json()]
    for record in found:
        _ids[(str(client.api_url), record.name)] = record.id
    return found
