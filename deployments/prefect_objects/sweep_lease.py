"""Which `cluster-triggers api` replica sweeps: a lease in one record, kept alive by a beat.

Any number of replicas serve the REST API and take wake-ups; one of them sweeps. It holds this
lease: the record `cluster-triggers-sweeper` (`records`) names it and carries a beat it advances every
`beat_seconds`. The other replicas read the record as often; one that sees the same beat for
`MISSED_BEATS` beats of its own clock (no two machines' clocks are ever compared) writes itself
in, waits `settle` seconds for any rival's write to land, and holds the lease if it reads itself
back. A holder whose beats fail (a busy server) sweeps on until it reads another holder: two
sweepers are harmless, a gap in sweeping is not.

Prefect's global concurrency limits were the other candidate: their leases last at least 60 s
(a lost one is repossessed up to 15 s later), and a limit's slot decay restarts at every refused
attempt, so a replica that keeps asking never sees the slot free. Two holders at once (a
process that was stopped and wakes up) are harmless, only wasteful: every firing is decided by
compare-and-set on the trigger's checkpoint (`cursors`) and keyed by its data.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prefect.client.orchestration import PrefectClient

from prefect_cluster_triggers.deployments.prefect_objects import records
from prefect_cluster_triggers.deployments.prefect_objects.client import without_client_retries

LEASE_RECORD = "cluster-triggers-sweeper"
MISSED_BEATS = 3  # beats without a change after which a lease is taken over


class SweepLease:
    """One replica's view of the sweep lease; `step` once per beat."""

    def __init__(self, holder: str, address: str, *, beat_seconds: float, settle: float | None = None) -> None:
        self.holder = holder
        self.address = address
        self.beat_seconds = beat_seconds
        self.settle = settle if settle is not None else min(1.0, beat_seconds / 2)
        self._beat = 0
        self._seen: tuple[Any, Any] | None = None  # (holder, beat) last read from another replica
        self._seen_at = 0.0  # when, on this process's clock, that changed last
        self._held = False  # the last read named this replica (or it took the lease)
        self.report: dict[str, Any] = {}  # what the holder says of its last sweep, written with each beat

    @property
    def silence(self) -> float:
        """Seconds without a beat after which the lease is anybody's."""
        return MISSED_BEATS * self.beat_seconds

    @property
    def held(self) -> bool:
        """This replica holds the lease: the last read named it, whether or not its beats since landed."""
        return self._held

    async def step(self, client: PrefectClient) -> bool:
        """Renew the lease when held; else watch it and take it over once it went silent. Whether held after."""
        current = await self._read(client)
        now = time.monotonic()
        if current.get("holder") == self.holder:
            self._held = True
            await self._write(client)  # a TimeoutError here is a missed beat; still held
            return True
        self._held = False
        key = (current.get("holder"), current.get("beat"))
        if key != self._seen:
            self._seen, self._seen_at = key, now
        if current.get("holder") is not None and now - self._seen_at < self.silence:
            return False
        await self._write(client)  # free, released, or silent: take it, then see whose write landed last
        await asyncio.sleep(self.settle)
        self._held = (await self._read(client)).get("holder") == self.holder
        return self._held

    async def release(self, client: PrefectClient) -> None:
        """Give the lease up (a stopping replica), so another takes it at its next beat."""
        if not self._held:
            return
        self._held = False
        if (await self._read(client)).get("holder") == self.holder:
            await records.save_value(client, LEASE_RECORD, {"holder": None, "beat": -1, "address": None})

    async def _read(self, client: PrefectClient) -> dict[str, Any]:
        value = (await records.read(client, [LEASE_RECORD])).get(LEASE_RECORD)
        return value if isinstance(value, dict) else {}

    async def _write(self, client: PrefectClient) -> None:
        """One attempt, within a beat: a beat lost to a busy server is a missed beat, not a 50 s retry
        (`records.save_value` retries lost SQLite races that long)."""
        self._beat += 1
        value = {"holder": self.holder, "beat": self._beat, "address": self.address, **self.report}
        with without_client_retries():
            await asyncio.wait_for(records.save_value(client, LEASE_RECORD, value), self.beat_seconds)


async def sweeper(client: PrefectClient) -> dict[str, Any] | None:
    """Who holds the sweep lease (holder, beat, address, and its last sweep's figures); None when nobody has or it was released."""
    value = (await records.read(client, [LEASE_RECORD])).get(LEASE_RECORD)
    return value if isinstance(value, dict) and value.get("holder") else None
