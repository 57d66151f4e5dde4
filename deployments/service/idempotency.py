"""Safe retries: with an `Idempotency-Key`, a create or an execute happens once, however often it is sent.

The first request with a key records, in a record (`records`) named after its namespace and
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
from pydantic import BaseModel

from prefect_cluster_triggers.core.errors import ClusterTriggersError, Conflict, ContractError, Problem
from prefect_cluster_triggers.deployments.prefect_objects import records
from prefect_cluster_triggers.deployments.prefect_objects.client import prefect_client

KEY_LIFETIME = timedelta(hours=24)
MAX_KEY_LENGTH = 255
_PREFIX = "cluster-trigger-key-"
_WAIT_FOR_FIRST = 30.0
_POLL = 0.25

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
    name = key_record_name(namespace_id, key)
    async with prefect_client() as client:
        token, record_id = await _record(client, name, asked)
        if record_id is None:  # not the first request with this key
            stored = await _answer_of_first(client, name)
            if stored is not None:
                return answer_type.model_validate(stored)
        try:
            answer = await work(token)
        except ClusterTriggersError:
            if record_id is not None:
                await records.delete(client, record_id)  # nothing was made: the same request may be sent again
            raise
        except Exception:  # Prefect failed us half-way: a retry finishes the work at once, without waiting
            with suppress(httpx.HTTPError):  # Prefect may be what failed; the original error is what to report
                await records.save_value(client, name, {"fingerprint": asked, "token": token, "answer": None})
            raise
        await records.save_value(client, name, {"fingerprint": asked, "token": token,
                                                "answer": answer.model_dump(mode="json")})
        return answer


async def expire(client: PrefectClient, *, now: datetime | None = None) -> int:
    """Delete the keys older than KEY_LIFETIME; how many."""
    cutoff = (now or datetime.now(timezone.utc)) - KEY_LIFETIME
    old = [r.id for r in await records.starting_with(client, _PREFIX) if r.created < cutoff]
    for record_id in old:
        await records.delete(client, record_id)
    return len(old)


async def _record(client: PrefectClient, name: str, asked: str) -> tuple[str, UUID | None]:
    """The key's token, and the record's id when this request made it (is the first)."""
    while True:
        token = secrets.token_hex(8)
        made = await records.create(client, name, {"fingerprint": asked, "token": token})
        if made is not None:
            return token, made.id
        found = await _read(client, name)
        if found is None:
            continue  # deleted meanwhile (expired, or its first request was refused)
        if datetime.now(timezone.utc) - found.created >= KEY_LIFETIME:
            await records.delete(client, found.id)
            continue
        if found.value["fingerprint"] != asked:
            raise Conflict("Idempotency-Key was already used with a different request; use a new key for a new request")
        return found.value["token"], None


async def _answer_of_first(client: PrefectClient, name: str) -> dict[str, Any] | None:
    """The first request's answer, waiting for it while that request may still be working."""
    deadline = asyncio.get_running_loop().time() + _WAIT_FOR_FIRST
    while True:
        found = await _read(client, name)
        if found is None or "answer" in found.value:
            return found.value["answer"] if found else None
        if asyncio.get_running_loop().time() >= deadline:
            return None
        await asyncio.sleep(_POLL)


async def _read(client: PrefectClient, name: str) -> records.Record | None:
    found = await records.named(client, [name])
    return found[0] if found else None


def key_record_name(namespace_id: str, key: str) -> str:
    """The record of a namespace's key (the key hashed: any printable text makes a valid name)."""
    return _PREFIX + hashlib.sha256(f"{namespace_id}\n{key}".encode()).hexdigest()[:40]
