"""The REST API under a client fleet's bursts, each next to the same burst on Prefect's own endpoints.

Starts its own stack (a Prefect server on SQLite, or on `--database-url`, and
`cluster-triggers api`) and an API key, then, on an httpx async client over 127.0.0.1:

* creates: 60 concurrent `POST /v1/clusters/triggers` in a namespace whose quota is 50,
  next to 60 concurrent `POST /api/deployments/` of the same deployment (one of ours as
  created: parameters, schema, schedule, tags) under new names;
* one GET: sequential `GET /v1/clusters/triggers/{id}` next to `GET /api/deployments/{id}`;
* 100 concurrent GETs of 100 different triggers (those created and paused ones), next to
  100 of their deployments;
* 50 concurrent `POST /v1/clusters/triggers/list`, next to 50 `POST /api/deployments/filter`
  by the namespace's tags.

Prints, per burst, the answers by status code, throughput, p50 and p95 of each side and
our / Prefect ratios, then checks that the namespace holds exactly the quota of active
triggers and that `list` agrees with `get` for each.

With `--busy N`, N processes spin on the CPU throughout (a busy machine: both sides share it).

    .venv/bin/python benchmarks/api_load.py [--database-url postgresql+asyncpg://...] [--busy 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections import Counter
from typing import Awaitable, Callable

import httpx
from _private_stack import private_prefect

_QUOTA, _CREATES, _GETS, _LISTS, _SINGLE = 50, 60, 100, 50, 30
_TIMEOUT = 60.0
_TRIGGERS = "/v1/clusters/triggers"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL for the Prefect server (SQLite when absent)")
    parser.add_argument("--busy", type=int, default=0, help="processes spinning on the CPU meanwhile")
    args = parser.parse_args()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        return _run(args)
    finally:
        for spinner in spinners:
            spinner.kill()


def _run(args: argparse.Namespace) -> int:
    database = {"PREFECT_API_DATABASE_CONNECTION_URL": args.database_url} if args.database_url else {}
    with private_prefect("api-load-", CLUSTER_TRIGGERS_MAX_ACTIVE_TRIGGERS=str(_QUOTA), **database) as (env, data_dir):
        from prefect_cluster_triggers.deployments.api.keys import KeyStore
        from prefect_cluster_triggers.deployments.stack.processes import api_server, free_port

        key, _ = KeyStore().create(["bench"], created_by="api-load")
        with api_server(free_port(), env, log=data_dir / "api.log") as url:
            print(f"database: {'PostgreSQL' if args.database_url else 'SQLite'}; quota {_QUOTA} active triggers; "
                  f"{args.busy} processes spinning on the CPU")
            return asyncio.run(_bursts(url, env["PREFECT_API_URL"], key))


async def _bursts(url: str, prefect: str, key: str) -> int:
    headers = {"Authorization": f"Bearer {key}", "X-Namespace": "bench"}
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=_TIMEOUT, limits=limits) as ours, \
            httpx.AsyncClient(base_url=prefect, timeout=_TIMEOUT, limits=limits) as theirs:
        body = {"trigger_type": "cron", "schedule_config": {"cron_expression": "*/5 * * * *"},
                "execution_config": {"collection_ids": ["bench"], "config": {"algorithm": "kmeans", "n_clusters": 3}}}
        created = await _burst("creates", _CREATES, lambda i: ours.post(_TRIGGERS, json=body),
                               lambda i: theirs.post("/deployments/", json={**same, "name": f"baseline-{i}"}),
                               between=lambda: _deployment_body(theirs))
        triggers = [r.json()["trigger_id"] for r in created if r.status_code == 200]
        paused = await asyncio.gather(*(ours.post(_TRIGGERS, json={**body, "status": "paused"})
                                        for _ in range(_GETS - len(triggers))))
        triggers += [r.json()["trigger_id"] for r in paused if r.status_code == 200]  # each GET a different one
        deployments = (await theirs.post("/deployments/filter", json={"limit": 200})).json()
        deployment_ids = [d["id"] for d in deployments if d["name"] in triggers]

        await _single(ours, theirs, triggers[0], deployment_ids[0])
        await _burst("GETs", _GETS, lambda i: ours.get(f"{_TRIGGERS}/{triggers[i % len(triggers)]}"),
                     lambda i: theirs.get(f"/deployments/{deployment_ids[i % len(deployment_ids)]}"))
        tags = {"deployments": {"tags": {"all_": ["cluster-trigger"]}}, "limit": 50}
        await _burst("lists", _LISTS, lambda i: ours.post(f"{_TRIGGERS}/list", json={"limit": 50}),
                     lambda i: theirs.post("/deployments/filter", json=tags))
        return await _consistent(ours, triggers)


async def _burst(name: str, count: int, ours: Callable[[int], Awaitable[httpx.Response]],
                 theirs: Callable[[int], Awaitable[httpx.Response]],
                 between: Callable[[], Awaitable[None]] | None = None) -> list[httpx.Response]:
    """`count` concurrent calls of each side, ours first; prints the comparison; returns our answers."""
    our_answers, our_times, our_wall = await _concurrently(count, ours)
    if between is not None:
        await between()
    _, their_times, their_wall = await _concurrently(count, theirs)
    codes = Counter(a.status_code if isinstance(a, httpx.Response) else type(a).__name__ for a in our_answers)
    print(f"\n{count} concurrent {name}: ours answered {dict(sorted(codes.items(), key=str))}")
    _line("ours", count, our_wall, our_times)
    _line("prefect", count, their_wall, their_times)
    print(f"  ratio ours/prefect: throughput {their_wall / our_wall:.2f}x, "
          f"p50 {_pct(our_times, 50) / _pct(their_times, 50):.2f}x, p95 {_pct(our_times, 95) / _pct(their_times, 95):.2f}x")
    return [a for a in our_answers if isinstance(a, httpx.Response)]


same: dict = {}


async def _deployment_body(prefect: httpx.AsyncClient) -> None:
    """What Prefect's side of the create burst posts: one of our triggers' deployments as created, under new names."""
    found = (await prefect.post("/deployments/filter", json={"limit": 1})).json()[0]
    schedules = [{"schedule": s["schedule"], "active": s["active"]} for s in found["schedules"]]
    same.update({k: found[k] for k in ("flow_id", "parameters", "parameter_openapi_schema", "enforce_parameter_schema",
                                       "tags", "description", "work_pool_name", "entrypoint", "pull_steps", "paused")},
                schedules=schedules, tags=["api-load-baseline"])


async def _concurrently(count: int, call: Callable[[int], Awaitable[httpx.Response]]):
    async def timed(i: int):
        started = time.perf_counter()
        try:
            answer = await call(i)
        except httpx.HTTPError as exc:
            answer = exc
        return answer, time.perf_counter() - started

    started = time.perf_counter()
    done = await asyncio.gather(*(timed(i) for i in range(count)))
    return [a for a, _ in done], [t for _, t in done], time.perf_counter() - started


async def _single(ours: httpx.AsyncClient, theirs: httpx.AsyncClient, trigger: str, deployment: str) -> None:
    """One call at a time, alternating, median of each."""
    times: dict[str, list[float]] = {"ours": [], "prefect": []}
    for _ in range(_SINGLE):
        for side, call in (("ours", lambda: ours.get(f"{_TRIGGERS}/{trigger}")), ("prefect", lambda: theirs.get(f"/deployments/{deployment}"))):
            started = time.perf_counter()
            (await call()).raise_for_status()
            times[side].append(time.perf_counter() - started)
    ours_ms, theirs_ms = (statistics.median(times[s]) * 1000 for s in ("ours", "prefect"))
    print(f"\none GET at a time ({_SINGLE} each, alternating): ours median {ours_ms:.1f} ms, prefect {theirs_ms:.1f} ms, "
          f"ratio {ours_ms / theirs_ms:.2f}x")


async def _consistent(ours: httpx.AsyncClient, triggers: list[str]) -> int:
    listed = (await ours.post(f"{_TRIGGERS}/list", json={"limit": 1000})).json()["results"]
    active = [t for t in listed if t["status"] == "active"]
    got = {t: (await ours.get(f"{_TRIGGERS}/{t}")).json() for t in triggers}
    same = sum(1 for t in listed if _comparable(t) == _comparable(got.get(t["trigger_id"], {})))
    print(f"\nafterwards: {len(listed)} triggers listed, {len(active)} active (quota {_QUOTA}); "
          f"list equals get for {same} of {len(listed)}")
    return 0 if len(active) == _QUOTA and same == len(listed) == len(triggers) else 1


def _comparable(trigger: dict) -> dict:
    return {k: v for k, v in trigger.items() if k not in ("updated_at",)}


def _line(side: str, count: int, wall: float, times: list[float]) -> None:
    print(f"  {side:8s} {count / wall:7.1f}/s  p50 {_pct(times, 50) * 1000:8.1f} ms  p95 {_pct(times, 95) * 1000:8.1f} ms  "
          f"wall {wall:6.2f} s")


def _pct(times: list[float], percent: int) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(percent / 100 * (len(ordered) - 1)))]


if __name__ == "__main__":
    sys.exit(main())
