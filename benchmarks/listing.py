"""Listing N triggers: the snapshot path of `ls` against reading every trigger from Prefect.

Starts its own Prefect server (SQLite, temporary data directory, free port), creates N
triggers (cron, interval and event, in turn) and one completed run, then, alternating
rounds in the same process:

* listing: `queries.list_triggers` (deployments, trigger records, missed runs,
  cluster definitions);
* baseline: every trigger read as `get` reads one (its deployment, its snapshots, the runs
  they missed, its event state read live).

HTTP calls include the client's CSRF-token requests.

Prints the HTTP calls and the best wall time of each, and their ratios.

    .venv/bin/python benchmarks/listing.py [--triggers 50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import httpx
from _private_stack import private_prefect


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triggers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with private_prefect("listing-", CLUSTER_TRIGGERS_MAX_ACTIVE_TRIGGERS=str(args.triggers + 1)):
        asyncio.run(_compare(args.triggers, args.rounds))
    return 0


async def _compare(count: int, rounds: int) -> None:
    from prefect.client.orchestration import get_client

    from prefect_cluster_triggers.core.contract import validate_request
    from prefect_cluster_triggers.deployments.service import commands, queries

    execution = {"collection_ids": ["bench"], "config": {"algorithm": "kmeans", "n_clusters": 3}}
    bodies = [
        {"trigger_type": "cron", "schedule_config": {"cron_expression": "*/5 * * * *"}, "execution_config": execution},
        {"trigger_type": "interval", "schedule_config": {"interval_seconds": 3600}, "execution_config": execution},
        {"trigger_type": "event", "schedule_config": {"event_type": "documents_added", "event_threshold": 100,
                                                      "collection_id": "bench"}, "execution_config": execution},
    ]
    for i in range(count):
        await commands.create_trigger(validate_request(bodies[i % 3]), trigger_id=f"trg-{i:03d}")

    async def listing() -> int:
        triggers, _ = await queries.list_triggers(limit=count)
        return len(triggers)

    async def baseline() -> int:  # each trigger as `get` reads it
        async with get_client() as client:
            namespace = queries.namespace(None)
            return len(await asyncio.gather(*(queries.read_trigger(client, f"trg-{i:03d}", namespace) for i in range(count))))

    results = {name: (await _calls(run), []) for name, run in (("listing", listing), ("baseline", baseline))}
    for _ in range(rounds):
        for name, run in (("listing", listing), ("baseline", baseline)):
            started = time.perf_counter()
            assert await run() == count
            results[name][1].append(time.perf_counter() - started)
    (calls_l, times_l), (calls_b, times_b) = results["listing"], results["baseline"]
    print(f"{count} triggers, best of {rounds} rounds, alternating, one process")
    print(f"listing : {calls_l:4d} HTTP calls  {min(times_l) * 1000:8.1f} ms")
    print(f"baseline: {calls_b:4d} HTTP calls  {min(times_b) * 1000:8.1f} ms   (every trigger read as `get` reads it)")
    print(f"ratio listing / baseline: calls {calls_l / calls_b:.3f}x, time {min(times_l) / min(times_b):.3f}x")


async def _calls(run) -> int:
    """HTTP requests one call of `run` makes."""
    requests = []
    send = httpx.AsyncClient.send

    async def counted(self, request, *args, **kwargs):
        requests.append(request.url.path)
        return await send(self, request, *args, **kwargs)

    httpx.AsyncClient.send = counted
    try:
        await run()
    finally:
        httpx.AsyncClient.send = send
    return len(requests)


if __name__ == "__main__":
    sys.exit(main())
