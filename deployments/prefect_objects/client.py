"""The Prefect client of a lifecycle call: the API process's shared one, else one for the call.

A `PrefectClient` opens its connections and asks the server for a CSRF token (and its
version) when it starts; made per request, that was most of a `GET`'s cost and, under a
burst, a new connection per call. `cluster-triggers api` therefore holds one client for its
whole life (`shared_client`); the CLI, which makes one call per process, makes its own.

On SQLite, Prefect's server answers a write that lost a race with another with 503 at once,
and Prefect's client waits 2, 4, 8, 16 and 32 s before trying again: in a burst of 60
creates the last one waited over a minute for a database that was idle most of that time.
`retry_lost_races` tries such a write again after a short random pause instead, and queues
the process's writes once the server has shown it refuses concurrent ones (a write refused
twice in a row).
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from contextlib import asynccontextmanager, contextmanager
from typing import AsyncIterator, Awaitable, Callable, Iterator, TypeVar

import httpx
import prefect.context
from prefect.client.orchestration import PrefectClient, get_client
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, Settings

PAGE = 200  # Prefect's largest page of deployments, flow runs, variables and block documents
CONNECTIONS = 8  # the shared client's connections (Prefect's pool of 16 would queue a burst), and a fan-out's width
_LOST_RACE = 503  # Prefect's answer to a lost race: SQLite's "database is locked", PostgreSQL's unique violation
_FIRST_PAUSE = 0.05  # seconds: full-jitter backoff, doubling from this ...
_PAUSE_CAP = 1.0  # ... up to this
_RACE_DEADLINE = 50.0  # seconds of lost races before the 503 is the answer
_QUEUE_SECONDS = 60.0  # writes queue for this long after the last lost race
_TRIES_SIDE_BY_SIDE = 2  # a write refused this many times in a row starts the queue

T = TypeVar("T")

_shared: PrefectClient | None = None


@asynccontextmanager
async def prefect_client() -> AsyncIterator[PrefectClient]:
    """The shared client while one is open in this process (in the API: every request, wake-up and state
    write), else a client of its own, which costs a TLS context and new connections."""
    if _shared is not None:
        yield _shared
        return
    async with get_client() as client:
        yield client


@asynccontextmanager
async def shared_client() -> AsyncIterator[PrefectClient]:
    """Open the process's shared client for the duration of the block."""
    global _shared
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with get_client(httpx_settings={"limits": limits}) as client:
        _shared = client
        try:
            yield client
        finally:
            _shared = None


@contextmanager
def without_client_retries() -> Iterator[None]:
    """Prefect's client retries switched off inside the block (task-local), for calls that retry themselves.

    Prefect's `temporary_settings` rebuilds its settings from every source at each entry (milliseconds of
    CPU; it was a third of a sweep's); the derived settings are made once per base settings. Inside the
    block (nested, or in a task started there) the settings already have no retries and are kept as they are.
    """
    context = prefect.context.get_settings_context()
    base = context.settings
    if base.client.max_retries == 0:
        yield
        return
    if id(base) not in _no_retries:
        if len(_no_retries) >= _KEPT_SETTINGS:  # settings made and dropped (tests' temporary settings)
            _no_retries.clear()
        _no_retries[id(base)] = (base, base.copy_with_update(updates={PREFECT_CLIENT_MAX_RETRIES: 0}))
    with prefect.context.SettingsContext(profile=context.profile, settings=_no_retries[id(base)][1]):
        yield


_KEPT_SETTINGS = 8
_no_retries: dict[int, tuple[Settings, Settings]] = {}  # id(base) -> (base, kept alive so its id stays its own; derived)


async def retry_lost_races(write: Callable[[], Awaitable[T]]) -> T:
    """`write()` (one Prefect write), tried again after a pause of up to `_PAUSE_CAP` while it loses races.

    A write refused twice in a row queues this process's writes, one at a time, for
    `_QUEUE_SECONDS`. Prefect writes a block document or a deployment in a transaction that
    reads before it writes, and SQLite refuses such a transaction at once, without waiting, when
    another write landed after its read. Sent all at once, the writes of a burst of creates kept
    refusing each other past `_RACE_DEADLINE`; queued, they go through one after another.
    One refusal alone queues nothing: PostgreSQL answers 503 to a create that lost its name to
    another between Prefect's check and its insert (the unique violation is not caught), and the
    second try is answered 409; such a race says nothing about concurrent writes, and a burst of
    creates in one namespace loses many.

    Prefect's own retries are switched off for these calls only (the setting is task-local),
    so its exponential pauses do not stack on ours; a dropped connection, which Prefect's
    client retries, is retried here the same way (Prefect's deployment create is an upsert).
    """
    loop = asyncio.get_running_loop()
    with without_client_retries():
        if time.monotonic() >= _queued_until.get(loop, 0.0):
            refused = 0
            for attempt in range(_TRIES_SIDE_BY_SIDE):
                if attempt:
                    await asyncio.sleep(random.uniform(0, _FIRST_PAUSE))
                try:
                    return await write()
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code != _LOST_RACE:
                        raise
                    refused += 1
                except httpx.TransportError:  # a dropped connection, which Prefect's client would retry too
                    pass
            if refused == _TRIES_SIDE_BY_SIDE:
                _queued_until[loop] = time.monotonic() + _QUEUE_SECONDS
        async with loop_lock("writes"):
            deadline = time.monotonic() + _RACE_DEADLINE
            attempt = 0
            while True:
                try:
                    return await write()
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code != _LOST_RACE or time.monotonic() > deadline:
                        raise
                    _queued_until[loop] = time.monotonic() + _QUEUE_SECONDS
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                await asyncio.sleep(random.uniform(0, min(_PAUSE_CAP, _FIRST_PAUSE * 2**attempt)))
                attempt += 1


def loop_lock(name: str) -> asyncio.Lock:
    """The running event loop's lock called `name` (an asyncio lock belongs to the loop it was first used in).

    A lock nobody holds or waits for is dropped (a fresh one is the same), so locks named after
    data (a namespace's quota) do not pile up in a long-lived process."""
    locks = _locks.setdefault(asyncio.get_running_loop(), weakref.WeakValueDictionary())
    lock = locks.get(name)
    if lock is None:
        lock = locks[name] = asyncio.Lock()
    return lock


_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.WeakValueDictionary[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary())
_queued_until: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, float] = weakref.WeakKeyDictionary()  # monotonic
