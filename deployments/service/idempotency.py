"""Safe retries: with an `Idempotency-Key`, a create or an execute happens once, however often it is sent.

The first request with a key records, in a Prefect variable named after its namespace and
the key, a fingerprint of what it asked (method, path, body as the contract reads it) and
a token; its answer is added once it has one. A later request with the same key and the
same fingerprint gets that answer; with another fingerprint, 409.

The token makes the work itself idempotent, so a retry after the first attempt timed out
or died half-way finishes the same work rather than doing it twice: a create makes the
trigger `trg_<token>` (a second attempt finds it made), an execute passes the token to
Prefect as the flow run's idempotency key (Prefect answers with the same run). A retry
that arrives while the first attempt is still working waits for its answer for up to
`_WAIT_FOR_FIRST` (not at all after the first attempt failed), then finishes the work
itself. A refusal (422, 409) is not kept: the same request may succeed later, when the
reason is gone.

Keys live `KEY_LIFETIME` after their first use; later, the same key starts afresh. The
evaluator's sweep deletes expired keys (`expire`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from contextlib import suppress
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, TypeVar
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.exceptions import ObjectAlreadyExists
from pydantic import BaseModel

from prefect_cluster_triggers.core.errors import ClusterTriggersError, Conflict, ContractError, Problem
from prefect_cluster_triggers.deployments.prefect_objects.client import prefect_client
from prefect_cluster_triggers.deployments.prefect_objects.translate import TRIGGER_TAG
from prefect_cluster_triggers.deployments.prefect_objects.variables import (
    delete_variable,
    variables_named,
    variables_where,
)

KEY_LIFETIME = timedelta(hours=24)
KEY_TAG = "cluster-trigger-idempotency-key"
MAX_KEY_LENGTH = 255
_WAIT_FOR_FIRST = 30.0
_POLL = 0.25
_MAX_VALUE = 5000  # Prefect's limit on a variable's value, in characters of JSON

Answer = TypeVar("Answer", bound=BaseModel)


def fingerprint(method: str, path: str, body: Any) -> str:
    """What a request asks, independent of JSON spacing and key order."""
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str) -> None:
    """Refuse a key no client would mean (HTTP 422 naming the header)."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ContractError([Problem("Idempotency-Key", f"1 to {MAX_KEY_LENGTH} printable characters (got {key[:80]!r})")])


async def once(namespace_id: str, key: str, asked: str, work: Callable[[str], Awaitable[Answer]],
               answer_type: type[Answer]) -> Answer:
    """The answer of `work(token)` for the first request with `key`; the same answer for its retries.

    Raises:
        Conflict: the key was used for another request in the last KEY_LIFETIME.
    """
    check_key(key)
    name = _name(namespace_id, key)
    async with prefect_client() as client:
        token, variable_id = await _record(client, name, asked)
        if variable_id is None:  # not the first request with this key
            stored = await _answer_of_first(client, name)
            if stored is not None:
                return answer_type.model_validate(stored)
        try:
            answer = await work(token)
        except ClusterTriggersError:
            if variable_id is not None:
                await delete_variable(client, variable_id)  # nothing was made: the same request may be sent again
            raise
        except Exception:  # Prefect failed us half-way: a retry finishes the work at once, without waiting
            with suppress(httpx.HTTPError):  # Prefect may be what failed; the original error is what to report
                await client.update_variable(VariableUpdate(name=name, value={"fingerprint": asked, "token": token,
                                                                              "answer": None}))
            raise
        value = {"fingerprint": asked, "token": token, "answer": answer.model_dump(mode="json")}
        if len(json.dumps(value)) <= _MAX_VALUE:  # else a retry redoes the (idempotent) work to answer
            await client.update_variable(VariableUpdate(name=name, value=value))
        return answer


async def expire(client: PrefectClient, *, now: datetime | None = None) -> int:
    """Delete the keys older than KEY_LIFETIME; how many."""
    cutoff = (now or datetime.now(timezone.utc)) - KEY_LIFETIME
    old = [v["id"] for v in await variables_where(client, {"tags": {"all_": [KEY_TAG]}})
           if datetime.fromisoformat(v["created"]) < cutoff]
    for variable_id in old:
        await delete_variable(client, UUID(variable_id))
    return len(old)


async def _record(client: PrefectClient, name: str, asked: str) -> tuple[str, UUID | None]:
    """The key's token, and the record's id when this request made it (is the first)."""
    while True:
        token = secrets.token_hex(8)
        try:
            variable = await client.create_variable(VariableCreate(
                name=name, value={"fingerprint": asked, "token": token}, tags=[TRIGGER_TAG, KEY_TAG]))
            return token, variable.id
        except ObjectAlreadyExists:
            pass
        found = await _read(client, name)
        if found is None:
            continue  # deleted meanwhile (expired, or its first request was refused)
        if datetime.now(timezone.utc) - datetime.fromisoformat(found["created"]) >= KEY_LIFETIME:
            await delete_variable(client, UUID(found["id"]))
            continue
        if found["value"]["fingerprint"] != asked:
            raise Conflict("Idempotency-Key was already used with a different request; use a new key for a new request")
        return found["value"]["token"], None


async def _answer_of_first(client: PrefectClient, name: str) -> dict[str, Any] | None:
    """The first request's answer, waiting for it while that request may still be working."""
    deadline = asyncio.get_running_loop().time() + _WAIT_FOR_FIRST
    while True:
        found = await _read(client, name)
        if found is None or "answer" in found["value"]:
            return found["value"]["answer"] if found else None
        if asyncio.get_running_loop().time() >= deadline:
            return None
        await asyncio.sleep(_POLL)


async def _read(client: PrefectClient, name: str) -> dict[str, Any] | None:
    found = await variables_named(client, [name])
    return found[0] if found else None


def _name(namespace_id: str, key: str) -> str:
    return "cluster-trigger-key-" + hashlib.sha256(f"{namespace_id}\n{key}".encode()).hexdigest()[:40]
