"""The Prefect client of a lifecycle call: the API process's shared one, else one for the call.

A `PrefectClient` opens its connections and asks the server for a CSRF token (and its
version) when it starts; made per request, that was most of a `GET`'s cost and, under a
burst, a new connection per call. `cluster-triggers api` therefore holds one client for its
whole life (`shared_client`); the CLI, which makes one call per process, makes its own.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

import httpx
from prefect.client.orchestration import PrefectClient, get_client

_CONNECTIONS = 8  # Prefect's default pool is 16: a burst of requests would queue for connections

_shared: PrefectClient | None = None


@asynccontextmanager
async def prefect_client() -> AsyncIterator[PrefectClient]:
    """The shared client while one is open in this process, else a client of its own."""
    if _shared is not None:
        yield _shared
        return
    async with get_client() as client:
        yield client


@asynccontextmanager
async def shared_client() -> AsyncIterator[PrefectClient]:
    """Open the process's shared client for the duration of the block."""
    global _shared
    limits = httpx.Limits(max_connections=_CONNECTIONS, max_keepalive_connections=_CONNECTIONS)
    async with get_client(httpx_settings={"limits": limits}) as client:
        _shared = client
        try:
            yield client
        finally:
            _shared = None
