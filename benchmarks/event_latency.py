"""Latency of an event trigger: from the event that reaches the threshold to the clustering run.

Starts its own local stack (Prefect server on SQLite, a process worker, `cluster-triggers api`
with the evaluator), in a temporary data directory and on free ports. An event trigger
(threshold 10, cooldown 0) watches a small collection; each firing is 9 events that do not
reach the threshold, then the tipping one. Measured per firing, from the tipping event's
`occurred`:

* created: when the firing run exists in Prefect (automation -> webhook -> evaluator);
* started: when the worker started it (worker poll + flow process start).

Side by side in the same run, the baseline: a run of the same deployment created directly
with the Prefect client at a known instant, to its start: what Prefect itself needs, so
`started / baseline` is what the event path adds. Target: p50 <= 5 s to start.

    .venv/bin/python benchmarks/event_latency.py [--firings 20]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from contextlib import ExitStack
from datetime import datetime, timezone

import numpy as np
from _private_stack import private_prefect

_THRESHOLD = 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firings", type=int, default=20)
    args = parser.parse_args()
    from prefect_cluster_triggers.core.settings import get_settings
    from prefect_cluster_triggers.deployments.stack.processes import api_server, create_work_pool, free_port, worker

    with ExitStack() as stack:
        env, data_dir = stack.enter_context(private_prefect("event-latency-"))
        create_work_pool(get_settings().target.work_pool, env)
        stack.enter_context(worker(get_settings().target.work_pool, env, log=data_dir / "worker.log"))
        stack.enter_context(api_server(free_port(), env, log=data_dir / "api.log"))
        ours, baseline = asyncio.run(_measure(args.firings))
    created = [c for c, _ in ours]
    started = [s for _, s in ours]
    print(f"{args.firings} firings, threshold {_THRESHOLD}, worker polling every second")
    print(f"event -> run created : p50 {_p(created, 50):6.2f} s   p95 {_p(created, 95):6.2f} s")
    print(f"event -> run started : p50 {_p(started, 50):6.2f} s   p95 {_p(started, 95):6.2f} s   (target p50 <= 5 s)")
    print(f"baseline, direct run created -> started : p50 {_p(baseline, 50):6.2f} s   p95 {_p(baseline, 95):6.2f} s")
    print(f"ratio started / baseline (p50): {_p(started, 50) / _p(baseline, 50):.2f}x")
    return 0


async def _measure(firings: int) -> tuple[list[tuple[float, float]], list[float]]:
    from prefect.client.orchestration import get_client

    from prefect_cluster_triggers.blocks.collection_events import notify_collection
    from prefect_cluster_triggers.blocks.collections import open_collection
    from prefect_cluster_triggers.core.contract import validate_request
    from prefect_cluster_triggers.deployments.prefect_objects.translate import EVENT_TAG, FLOW_NAME, MANUAL_TAG
    from prefect_cluster_triggers.deployments.service import commands

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    await asyncio.to_thread(lambda: open_collection("bench").add_documents(vectors))
    await commands.create_trigger(validate_request({
        "trigger_type": "event",
        "schedule_config": {"event_type": "documents_updated", "event_threshold": _THRESHOLD,
                            "collection_id": "bench", "cooldown_seconds": 0},
        "execution_config": {"collection_ids": ["bench"], "config": {"algorithm": "kmeans", "n_clusters": 3}},
    }), trigger_id="latency")
    await asyncio.sleep(3)  # the evaluator has created the trigger's automation
    ours, baseline = [], []
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(f"{FLOW_NAME}/latency")
        for i in range(firings):
            for _ in range(_THRESHOLD - 1):
                await asyncio.to_thread(notify_collection, "bench", "documents_updated")
            await asyncio.sleep(1)
            sent = datetime.now(timezone.utc)
            await asyncio.to_thread(notify_collection, "bench", "documents_updated", flush=True)
            run = await _wait_run(client, deployment.id, EVENT_TAG, i + 1)
            ours.append(((run.created - sent).total_seconds(), (run.start_time - sent).total_seconds()))
            direct = await client.create_flow_run_from_deployment(deployment.id, tags=[MANUAL_TAG])
            started = await _wait_started(client, direct.id)
            baseline.append((started.start_time - direct.created).total_seconds())
            print(f"firing {i + 1:2d}: created {ours[-1][0]:5.2f} s, started {ours[-1][1]:5.2f} s; "
                  f"baseline started {baseline[-1]:5.2f} s", flush=True)
    return ours, baseline


async def _wait_run(client, deployment_id, tag: str, count: int):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.client.schemas.sorting import FlowRunSort

    from prefect_cluster_triggers.deployments.prefect_objects.status import of_deployment

    while True:
        runs = await client.read_flow_runs(deployment_filter=of_deployment(deployment_id),
                                           flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])),
                                           sort=FlowRunSort.EXPECTED_START_TIME_DESC)
        if len(runs) >= count:
            return await _wait_started(client, runs[0].id)
        await asyncio.sleep(0.05)


async def _wait_started(client, run_id):
    while True:
        run = await client.read_flow_run(run_id)
        if run.start_time and run.state and run.state.is_final():
            return run
        await asyncio.sleep(0.1)


def _p(values: list[float], q: int) -> float:
    return float(np.percentile(values, q))


if __name__ == "__main__":
    sys.exit(main())
