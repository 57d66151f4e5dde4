"""The control plane at scale: thousands of triggers on one Prefect server, their sweep, event latency, REST reads.

For each size in --triggers, on a fresh Prefect server (on --database-url, PostgreSQL; SQLite
when absent) with one `cluster-triggers api` (the REST API and the evaluator), creates the
triggers through the REST API, `--per-namespace` to a namespace, mixed: 40 % cron, 30 %
interval, 20 % event (threshold 1, each on its own collection), 10 % conditional (a drift
check every 60 s on a collection that does not exist: a cheap, failing check). No worker:
runs stay as created. Prefect's scheduler keeps 3 runs ahead per schedule (its default, 100 a
deployment, would make about 700,000 runs at 10,000 triggers: a measure of Prefect's scheduler, not
of ours). Then waits until the sweeper has caught up with the new triggers (it visits each new one once:
its automation, first check and page; `catch_up_s`) and measures:

* the sweep: how many triggers it visited, its duration and the evaluator's CPU, as the sweeper
  reports them in the Variable `cluster-triggers-sweeper` (median of the sweeps during the
  stream), and the longest full sweep (one that visits every trigger);
* event -> run created: a steady stream of collection events (`--rate` a second for
  `--seconds`) to random event triggers, each the time from the event (its `occurred`) to
  the creation of the firing run whose cutoff it is (p50, p95; events with no run by the end
  are counted as missing);
* REST `get` of one trigger and `list` of one namespace: p50 of `--reads` sequential calls;
* a run created from a trigger's deployment (Prefect's `create_flow_run_from_deployment`, the
  call every firing makes): p50 of sequential creates after the stream, one for each trigger the
  reads sampled, each run scheduled a day ahead and deleted after.

`--existing NAME` measures the triggers an earlier run left in the database NAME on the
--database-url server (its size in --triggers), creating only those a run stopped early did not
make: the sweep, events and reads again, with `catch_up_s` the first sweep of the new evaluator,
a full one. `--logs DIR` keeps the Prefect server's and the API's logs.

Prints a row per size and, with two sizes, each figure's growth ratio (largest / smallest).

    .venv/bin/python benchmarks/control_plane.py --triggers 1000,10000 --database-url postgresql+asyncpg://...
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import shutil
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
from _private_stack import private_prefect

_EXAMPLES = Path(__file__).resolve().parents[1] / "deployments" / "triggers"
_KINDS = (("cron", 40), ("interval", 30), ("event", 20), ("conditional", 10))  # percent of the triggers
_PARALLEL_CREATES = 16
_PROGRESS = 1000  # creates between progress lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triggers", default="1000,10000", help="sizes, comma-separated")
    parser.add_argument("--per-namespace", type=int, default=50)
    parser.add_argument("--database-url", help="PostgreSQL for the Prefect server (SQLite when absent)")
    parser.add_argument("--rate", type=float, default=2.0, help="collection events a second during the stream")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the event stream")
    parser.add_argument("--reads", type=int, default=50)
    parser.add_argument("--existing", help="a database of an earlier run (on --database-url) whose triggers to measure")
    parser.add_argument("--logs", type=Path, help="a folder to keep the servers' logs in")
    args = parser.parse_args()
    rows = []
    for size in (int(s) for s in args.triggers.split(",")):
        name = args.existing or (args.database_url and _fresh(args.database_url, size))
        database = {"PREFECT_API_DATABASE_CONNECTION_URL": f"{args.database_url.rsplit('/', 1)[0]}/{name}"} \
            if args.database_url else {}
        with private_prefect(f"control-plane-{size}-", CLUSTER_TRIGGERS_MAX_ACTIVE_TRIGGERS=str(args.per_namespace),
                             PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS="3", **database) as (env, data_dir):
            try:
                rows.append(asyncio.run(_measure(size, args, env, data_dir)))
            finally:
                if args.logs:
                    args.logs.mkdir(parents=True, exist_ok=True)
                    for log in data_dir.glob("*.log"):
                        shutil.copy(log, args.logs / f"{size}-{log.name}")
            print(json.dumps(rows[-1]), flush=True)  # a size's figures as soon as they are measured
    print(f"database: {'PostgreSQL' if args.database_url else 'SQLite'}")
    print(f"{'triggers':>9} {'create/s':>9} {'catch-up s':>10} {'visited':>8} {'sweep s':>8} {'full s':>7} "
          f"{'sweep cpu s':>12} {'event->run p50':>15} {'p95':>7} {'missing':>8} {'get p50 ms':>11} "
          f"{'list p50 ms':>12} {'run create p50 ms':>18}")
    for row in rows:
        print(f"{row['triggers']:>9} {row['create_per_s']:>9.1f} {row['catch_up_s']:>10.0f} {row['visited_p50']:>8.0f} "
              f"{row['sweep_s']:>8.2f} {row['full_sweep_s']:>7.2f} {row['sweep_cpu_s']:>12.2f} "
              f"{row['event_p50_s']:>15.2f} {row['event_p95_s']:>7.2f} {row['missing']:>8} "
              f"{row['get_p50_ms']:>11.1f} {row['list_p50_ms']:>12.1f} {row['run_create_p50_ms']:>18.1f}")
    if len(rows) > 1:
        small, large = rows[0], rows[-1]
        figures = ("visited_p50", "sweep_s", "full_sweep_s", "sweep_cpu_s", "event_p95_s", "get_p50_ms", "list_p50_ms",
                   "run_create_p50_ms")
        growth = {k: large[k] / small[k] for k in figures
                  if small[k]}
        print(f"growth {large['triggers']} / {small['triggers']} triggers ({large['triggers'] / small['triggers']:.0f}x): "
              + ", ".join(f"{k} {v:.2f}x" for k, v in growth.items()))
    print(json.dumps(rows))
    return 0


def _fresh(url: str, size: int) -> str:
    """The name of a new database on the same PostgreSQL server, so each size starts empty."""
    import sqlalchemy
    from sqlalchemy.ext.asyncio import create_async_engine

    name = f"control_plane_{size}_{int(time.time())}"

    async def create() -> None:
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
        async with engine.connect() as connection:
            await connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        await engine.dispose()

    asyncio.run(create())
    return name


async def _caught_up(sweeper: Any) -> float:
    """Seconds until the sweeper has visited every trigger made: a sweep begun after the last create (which
    visits each new trigger once: its automation, first check, page) and one begun after that have ended."""
    from prefect.client.orchestration import get_client

    began, mark = time.monotonic(), datetime.now(timezone.utc)
    async with get_client() as client:
        for _ in range(2):
            while True:
                report = await sweeper(client) or {}
                start = report.get("last_sweep_started_at")
                if start and datetime.fromisoformat(start) > mark:
                    mark = datetime.fromisoformat(start) + timedelta(seconds=report["last_sweep_seconds"])
                    break
                await asyncio.sleep(1.0)
    return time.monotonic() - began


async def _existing() -> list[tuple[str, str, dict, str]]:
    """(namespace, kind, body, trigger id) of each trigger on the server, as `_measure` makes them."""
    from prefect.client.orchestration import get_client

    from prefect_cluster_triggers.deployments.prefect_objects.translate import stored_record

    made = []
    async with get_client() as client:
        while page := await client.read_deployments(offset=len(made), limit=200):
            for deployment in page:
                if (record := stored_record(deployment)) is not None:
                    body = record.request.model_dump(mode="json")
                    made.append((record.namespace_id, body["trigger_type"], body, record.trigger_id))
    return made


def _missing(requests: list[tuple[str, str, dict]], made: list[tuple[str, str, dict, str]]) -> list[tuple[str, str, dict]]:
    """The requests an earlier run stopped before making: per namespace and kind, those past the ones made (an
    event trigger by its collection). `made` names namespaces by id, `requests` by name."""
    from prefect_cluster_triggers.core.names import namespace_id_of

    def key(namespace_id: str, kind: str, body: dict) -> tuple[str, str, str | None]:
        return namespace_id, kind, body["schedule_config"].get("collection_id") if kind == "event" else None

    left = collections.Counter(key(namespace, kind, body) for namespace, kind, body, _ in made)
    missing = []
    for namespace, kind, body in requests:
        found = key(namespace_id_of(namespace), kind, body)
        if left[found]:
            left[found] -= 1
        else:
            missing.append((namespace, kind, body))
    return missing


async def _run_creates(made: list[tuple[str, str, dict, str]]) -> list[float]:
    """Seconds of each `create_flow_run_from_deployment` of one run a trigger, scheduled a day ahead (no
    worker takes it) and deleted once all are made."""
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    from prefect_cluster_triggers.deployments.prefect_objects.translate import FLOW_NAME

    seconds, runs = [], []
    async with get_client() as client:
        for _, _, _, trigger_id in made:
            deployment = await client.read_deployment_by_name(f"{FLOW_NAME}/{trigger_id}")
            began = time.perf_counter()
            runs.append(await client.create_flow_run_from_deployment(
                deployment.id, state=Scheduled(scheduled_time=datetime.now(timezone.utc) + timedelta(days=1)),
                tags=["control-plane-probe"]))
            seconds.append(time.perf_counter() - began)
        for run in runs:
            await client.delete_flow_run(run.id)
    return seconds


def _requests(size: int, per_namespace: int) -> list[tuple[str, str, dict]]:
    """(namespace, kind, body) for each trigger."""
    bodies = {kind: json.loads((_EXAMPLES / name).read_text()) for kind, name in (
        ("cron", "daily-kmeans-cron.json"), ("interval", "six-hourly-hdbscan-interval.json"),
        ("event", "hundred-documents-event.json"), ("conditional", "drift-conditional.json"))}
    kinds = [kind for kind, percent in _KINDS for _ in range(percent)]
    made = []
    for i in range(size):
        kind, body = kinds[i % len(kinds)], json.loads(json.dumps(bodies[kinds[i % len(kinds)]]))
        body["schedule_config"].pop("start_immediately", None)
        if kind == "event":
            body["schedule_config"].update(collection_id=f"col_e{i}", event_threshold=1, cooldown_seconds=0)
        if kind == "conditional":
            body["schedule_config"]["check_interval_seconds"] = 60
        made.append((f"ns{i // per_namespace:04d}", kind, body))
    return made


async def _measure(size: int, args: argparse.Namespace, env: dict, data_dir: Path) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    from prefect_cluster_triggers.blocks.collection_events import notify_collection
    from prefect_cluster_triggers.deployments.api.keys import KeyStore
    from prefect_cluster_triggers.deployments.prefect_objects.sweep_lease import sweeper
    from prefect_cluster_triggers.deployments.prefect_objects.translate import EVENT_TAG
    from prefect_cluster_triggers.deployments.stack.processes import api_server, free_port

    requests = _requests(size, args.per_namespace)
    namespaces = sorted({ns for ns, _, _ in requests})
    key, _ = KeyStore().create(namespaces, created_by="control-plane")
    with api_server(free_port(), env, log=data_dir / "api.log") as url:
        async with httpx.AsyncClient(base_url=f"{url}/v1/clusters", timeout=120,
                                     headers={"Authorization": f"Bearer {key}"}) as api:
            parallel, made = asyncio.Semaphore(_PARALLEL_CREATES), []

            async def create(namespace: str, kind: str, body: dict) -> None:
                async with parallel:
                    answer = await api.post("/triggers", json=body, headers={"X-Namespace": namespace})
                    answer.raise_for_status()
                    made.append((namespace, kind, body, answer.json()["trigger_id"]))
                    if len(made) % _PROGRESS == 0:  # the rate as the server fills: a long run stopped early still tells
                        print(f"  {len(made)} created, {time.monotonic() - started:.0f} s", flush=True)

            started = time.monotonic()
            wanted = requests
            if args.existing:
                made = await _existing()
                print(f"{len(made)} triggers found in {args.existing}", flush=True)
                wanted = _missing(requests, made)
            await asyncio.gather(*(create(*r) for r in wanted))
            create_per_s = len(wanted) / (time.monotonic() - started) if wanted else float("nan")
            print(f"{len(wanted)} triggers created in {time.monotonic() - started:.0f} s", flush=True)
            catch_up_s = await _caught_up(sweeper)
            print(f"the sweeper caught up with them {catch_up_s:.0f} s after the last create", flush=True)

            events = [(ns, body["schedule_config"]["collection_id"], tid) for ns, kind, body, tid in made
                      if kind == "event"]
            sweeps: dict[str, dict] = {}

            async def watch_sweeps() -> None:
                async with get_client() as client:
                    while True:
                        report = await sweeper(client) or {}
                        if report.get("last_sweep_started_at"):
                            sweeps[report["last_sweep_started_at"]] = report
                        await asyncio.sleep(1.0)

            watcher = asyncio.create_task(watch_sweeps())
            sent: list[str] = []
            stream_started, stream_began_at = time.monotonic(), datetime.now(timezone.utc)
            while time.monotonic() - stream_started < args.seconds:
                namespace, collection, trigger_id = random.choice(events)
                await asyncio.to_thread(notify_collection, collection, count=1, namespace=namespace)
                sent.append(trigger_id)
                await asyncio.sleep(1 / args.rate)
            await asyncio.sleep(30)  # the last events' firings
            watcher.cancel()

            latencies, runs = [], []
            async with get_client() as client:
                while page := await client.read_flow_runs(
                        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[EVENT_TAG])), offset=len(runs), limit=200):
                    runs.extend(page)
            for run in runs:
                firing = run.parameters.get("firing") or {}
                if firing.get("cutoff_occurred") and datetime.fromisoformat(firing["cutoff_occurred"]) >= stream_began_at:
                    latencies.append((run.created - datetime.fromisoformat(firing["cutoff_occurred"])).total_seconds())
            latencies.sort()

            sample = random.sample(made, min(args.reads, len(made)))
            gets, lists = [], []
            for namespace, _, _, trigger_id in sample:
                began = time.perf_counter()
                (await api.get(f"/triggers/{trigger_id}", headers={"X-Namespace": namespace})).raise_for_status()
                gets.append(time.perf_counter() - began)
                began = time.perf_counter()
                (await api.post("/triggers/list", json={"limit": 1000},
                                headers={"X-Namespace": namespace})).raise_for_status()
                lists.append(time.perf_counter() - began)
            creates = await _run_creates(sample)  # the triggers read above
    durations = [r["last_sweep_seconds"] for r in sweeps.values()]
    cpu = [r["last_sweep_cpu_seconds"] for r in sweeps.values()]
    full = [r["last_sweep_seconds"] for r in sweeps.values() if r.get("last_sweep_visited", size) >= size]
    return {
        "triggers": size, "create_per_s": create_per_s, "catch_up_s": catch_up_s,
        "sweeps_seen": len(durations),
        "sweep_s": statistics.median(durations) if durations else float("nan"),
        "sweep_cpu_s": statistics.median(cpu) if cpu else float("nan"),
        "visited_p50": statistics.median(r.get("last_sweep_visited", size) for r in sweeps.values()) if sweeps else 0,
        "full_sweep_s": max(full) if full else float("nan"),
        "events_sent": len(sent), "missing": max(0, len(sent) - len(latencies)),
        "event_p50_s": latencies[len(latencies) // 2] if latencies else float("nan"),
        "event_p95_s": latencies[int(len(latencies) * 0.95)] if latencies else float("nan"),
        "get_p50_ms": statistics.median(gets) * 1000, "list_p50_ms": statistics.median(lists) * 1000,
        "run_create_p50_ms": statistics.median(creates) * 1000,
    }


if __name__ == "__main__":
    sys.exit(main())
