"""Counting outlives Prefect's event retention and an evaluator restart.

A Prefect server of its own that deletes events older than 45 s (vacuumed every 10 s),
its own evaluator, and the CLI in a fresh user's environment: 60 documents, a gap until
Prefect has deleted their events, a restart of the evaluator, 60 more documents. A trigger
with threshold 100 must fire once, for all 120 (the second add is one event of 60).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from prefect_cluster_triggers.deployments.stack.processes import free_port, prefect_server
from tests.integration._users import fresh_env, run_cli, write_blobs
from tests.integration.conftest import ApiProcess
from tests.integration.triggers import PATIENCE

_CLI = Path(sys.executable).with_name("cluster-triggers")
_TRIGGER = {"trigger_type": "event",
            "schedule_config": {"event_type": "documents_added", "event_threshold": 100,
                                "collection_id": "col_kept", "cooldown_seconds": 0},
            "execution_config": {"collection_ids": ["col_kept"], "config": {"algorithm": "kmeans", "n_clusters": 3}}}


def _until(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(2)
    return value


def _collection_events(api_url: str) -> int:
    now = datetime.now(timezone.utc)
    query = {"filter": {"occurred": {"since": (now - timedelta(days=1)).isoformat(), "until": now.isoformat()},
                        "resource": {"id": ["collection.col_kept"]}}, "limit": 1}
    return httpx.post(f"{api_url}/events/filter", json=query, timeout=30).json()["total"]


def _firings(api_url: str) -> list[dict]:
    query = {"flow_runs": {"tags": {"all_": ["trigger-run:event"]}}}
    return [run["parameters"]["firing"] for run in httpx.post(f"{api_url}/flow_runs/filter", json=query, timeout=30).json()]


def test_a_count_survives_prefect_deleting_its_events_and_an_evaluator_restart(tmp_path: Path) -> None:
    env = fresh_env(tmp_path / "home", PREFECT_HOME=str(tmp_path / "prefect"),
                    PREFECT_SERVER_EVENTS_RETENTION_PERIOD="PT45S", PREFECT_SERVER_SERVICES_DB_VACUUM_LOOP_SECONDS="10",
                    PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL="0.5",
                    CLUSTER_TRIGGERS_EVALUATOR_SWEEP_SECONDS="2", CLUSTER_TRIGGERS_WORK_POOL="nobody-polls-this")
    first, _ = write_blobs(tmp_path / "first", n=60, seed=1)
    second, _ = write_blobs(tmp_path / "second", n=60, seed=2)
    (tmp_path / "trigger.json").write_text(json.dumps(_TRIGGER))
    with prefect_server(free_port(), env, log=tmp_path / "server.log") as api_url:
        env["PREFECT_API_URL"] = api_url
        evaluator = ApiProcess(env, tmp_path / "api.log")
        evaluator.start()
        try:
            created = run_cli(_CLI, env, "create", str(tmp_path / "trigger.json"), "--id", "trg_kept")
            assert created.returncode == 0, created.stderr
            assert run_cli(_CLI, env, "collections", "add", "col_kept", "--vectors", str(first)).returncode == 0

            def counter() -> int:
                shown = run_cli(_CLI, env, "get", "trg_kept")
                assert shown.returncode == 0, shown.stderr
                return json.loads(shown.stdout)["event_counter"]

            _until("the first 60 documents counted", lambda: counter() == 60, timeout=PATIENCE)
            _until("Prefect deleting their events", lambda: _collection_events(api_url) == 0, timeout=240)
            assert counter() == 60, "the checkpoint keeps what Prefect no longer has"
            evaluator.stop()
            evaluator.start()
            assert run_cli(_CLI, env, "collections", "add", "col_kept", "--vectors", str(second)).returncode == 0
            _until("a firing", lambda: _firings(api_url), timeout=PATIENCE)
            time.sleep(8)  # four sweeps, in which no second firing may appear
            # The add that crosses 100 is one event of 60: the firing takes all of it.
            assert [f["documents"] for f in _firings(api_url)] == [120]
            assert counter() == 0
        finally:
            evaluator.stop()
    shutil.rmtree(tmp_path / "prefect", ignore_errors=True)
