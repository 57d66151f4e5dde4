"""Cost of an event trigger's `get` and of one evaluation, with 10 vs 5,000 events since its last firing.

Starts its own Prefect server (SQLite) in a temporary directory. Two event triggers that
never reach their threshold watch two collections: `small` gets 10 events, `large` 5,000
(sent, then waited for until Prefect's events API shows them all). Then, side by side in
this process:

* first evaluation: the evaluator folds the whole backlog into the trigger's checkpoint
  (once per trigger, ever);
* evaluation: one evaluation of the trigger as every sweep makes it (median of --repeat);
* get: `queries.get_trigger` as `cluster-triggers get` and the REST API call it (median).

Prints each time and the ratios large / small (target <= 1.3 for both).

    .venv/bin/python benchmarks/event_backlog.py [--events 5000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from _private_stack import private_prefect


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with private_prefect("event-backlog-"):
        times = asyncio.run(_measure(args.events, args.repeat))
    print(f"event trigger with 10 vs {args.events} events since its last firing; medians of {args.repeat}")
    for name in ("first evaluation", "evaluation", "get"):
        small, large = times[name]["small"], times[name]["large"]
        target = "" if name == "first evaluation" else "   (target <= 1.3)"
        print(f"{name:17s} 10: {small * 1000:8.1f} ms   {args.events}: {large * 1000:8.1f} ms   "
              f"ratio {large / small:5.2f}{target}")
    return 0


async def _measure(events: int, repeat: int) -> dict[str, dict[str, float]]:
    from prefect.client.orchestration import get_client
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    from prefect_cluster_triggers.core.contract import validate_request
    from prefect_cluster_triggers.core.firing import collection_resource
    from prefect_cluster_triggers.core.names import namespace_id_of
    from prefect_cluster_triggers.deployments.evaluator.service import Evaluator
    from prefect_cluster_triggers.deployments.prefect_objects.translate import FLOW_NAME, TriggerRecord
    from prefect_cluster_triggers.deployments.service import commands, queries

    sizes = {"small": 10, "large": events}
    for name in sizes:
        await commands.create_trigger(validate_request({
            "trigger_type": "event",
            "schedule_config": {"event_type": "documents_added", "event_threshold": 10_000_000,
                                "collection_id": f"col_{name}", "cooldown_seconds": 0},
            "execution_config": {"collection_ids": [f"col_{name}"], "config": {"algorithm": "kmeans", "n_clusters": 3}},
        }), trigger_id=f"trg_{name}")
    for name, count in sizes.items():
        for _ in range(count):
            emit_event(event="cluster.documents_added", resource={"prefect.resource.id": collection_resource(namespace_id_of(None), f"col_{name}")},
                       payload={"count": 1})
    await asyncio.to_thread(EventsWorker.drain_all)
    await _until_readable(sizes)
    evaluator = Evaluator("http://127.0.0.1:1")  # never started: no webhook, evaluations called directly
    times: dict[str, dict[str, float]] = {"first evaluation": {}, "evaluation": {}, "get": {}}
    async with get_client() as client:
        for name in sizes:
            deployment = await client.read_deployment_by_name(f"{FLOW_NAME}/trg_{name}")
            record = TriggerRecord.model_validate(deployment.parameters["trigger"])

            async def evaluate() -> None:
                await evaluator.events.evaluate(client, deployment, record)

            times["first evaluation"][name] = await _timed(evaluate)
            times["evaluation"][name] = statistics.median([await _timed(evaluate) for _ in range(repeat)])
            times["get"][name] = statistics.median(
                [await _timed(lambda: queries.get_trigger(f"trg_{name}")) for _ in range(repeat)])
            counted = (await queries.get_trigger(f"trg_{name}")).event_counter
            assert counted == sizes[name], f"trg_{name} shows {counted}, expected {sizes[name]}"
    return times


async def _until_readable(sizes: dict[str, int]) -> None:
    """Prefect persists events in batches: wait until the events API shows every one."""
    from datetime import datetime, timedelta, timezone

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventOccurredFilter, EventResourceFilter

    from prefect_cluster_triggers.core.firing import collection_resource
    from prefect_cluster_triggers.core.names import namespace_id_of

    async with get_client() as client:
        for name, count in sizes.items():
            while True:
                now = datetime.now(timezone.utc)
                query = EventFilter(occurred=EventOccurredFilter(since=now - timedelta(hours=1), until=now),
                                    resource=EventResourceFilter(id=[collection_resource(namespace_id_of(None), f"col_{name}")]))
                if (await client.read_events(filter=query, limit=1)).total >= count:
                    break
                await asyncio.sleep(1)


async def _timed(call) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
