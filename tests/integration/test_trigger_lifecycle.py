"""Cron and interval triggers end to end: a real Prefect server, a real process worker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentUpdate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags, LogFilter, LogFilterFlowRunId

from prefect_cluster_triggers.blocks.collections import open_collection
from prefect_cluster_triggers.blocks.result_store import default_result_store
from prefect_cluster_triggers.core.contract import validate_request
from prefect_cluster_triggers.deployments.cli.render import EXAMPLE_TRIGGERS, render_prefect_yaml, trigger_files
from prefect_cluster_triggers.deployments.prefect_objects.translate import (
    FLOW_DESCRIPTION,
    FLOW_NAME,
    TRIGGER_TAG,
    user_description,
)
from prefect_cluster_triggers.deployments.service import commands, queries
from tests.integration.triggers import create as _create
from tests.integration.triggers import feed
from tests.integration.triggers import get as _get
from tests.integration.triggers import wait_for as _wait_for
from tests.seed_examples import CRON

REPOSITORY = Path(__file__).parents[2]

pytestmark = pytest.mark.usefixtures("prefect_worker")


@pytest.fixture(scope="module")
def collection() -> str:
    rng = np.random.default_rng(4)
    block = open_collection("col_lifecycle")
    block.add_documents((rng.normal(size=(3, 16)) * 5)[rng.integers(0, 3, 300)] + rng.normal(size=(300, 16)))
    return "col_lifecycle"


def _interval(collection_id: str, *, start_immediately: bool, seconds: int = 3600) -> dict:
    return {
        "trigger_type": "interval",
        "schedule_config": {"interval_seconds": seconds, "start_immediately": start_immediately},
        "execution_config": {"collection_ids": [collection_id], "config": {"algorithm": "kmeans", "n_clusters": 3}},
        "description": "lifecycle test",
    }


def test_start_immediately_runs_at_once_and_status_comes_from_the_run(cli, collection: str, tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text(json.dumps(_interval(collection, start_immediately=True)))
    asked_at = datetime.now(timezone.utc)
    created = cli("create", str(tmp_path / "t.json"), "--id", "trg_now")
    assert created.returncode == 0, created.stderr
    created_at = datetime.fromisoformat(json.loads(created.stdout)["created_at"])

    trigger = _wait_for("trg_now", lambda t: t.last_execution_status == "completed", timeout=60)
    assert trigger.execution_count == 1 and trigger.consecutive_failures == 0 and trigger.status == "active"
    assert default_result_store().latest("trg_now").record["run_id"] == trigger.last_execution_job_id
    assert trigger.last_triggered_at - created_at < timedelta(seconds=60)
    trigger = _wait_for("trg_now", lambda t: t.next_scheduled_at is not None, timeout=30)
    assert asked_at <= trigger.next_scheduled_at - timedelta(hours=1) <= created_at  # one interval after creation

    history = json.loads(cli("history", "trg_now", "--json").stdout)
    assert history["total"] == 1
    assert history["executions"][0]["job_id"] == trigger.last_execution_job_id
    assert (history["executions"][0]["status"], history["executions"][0]["num_clusters"]) == ("completed", 3)
    assert history["executions"][0]["num_documents"] == 300

    # The run's end is announced once the trigger's counters include it: the sweep that reads it shows them.
    finished = [e for e in feed("trg_now", lambda names: "cluster.trigger.finished" in names)
                if e.event == "cluster.trigger.finished"]
    assert [e.payload for e in finished] == [{"run_id": trigger.last_execution_job_id, "status": "completed",
                                              "execution_count": 1, "consecutive_failures": 0}]


def test_five_failures_in_a_row_make_it_failed_and_resume_recovers(cli, tmp_path: Path) -> None:
    _create(_interval("col_does_not_exist", start_immediately=False), "trg_failing")
    runs = []
    for attempt in range(5):
        assert _get("trg_failing").status == "active", attempt
        execution = queries.run_sync(commands.execute_trigger("trg_failing", wait=True, timeout_seconds=60))
        assert execution.status == "failed"
        runs.append(execution.job_id)
    trigger = _wait_for("trg_failing", lambda t: t.status == "failed", timeout=30)
    assert (trigger.consecutive_failures, trigger.execution_count) == (5, 5)
    assert "collection 'col_does_not_exist' not found" in trigger.last_execution_error
    failed = feed("trg_failing", lambda names: "cluster.trigger.failed" in names)
    told = next(e for e in failed if e.event == "cluster.trigger.failed")
    assert told.payload["consecutive_failures"] == 5
    assert "collection 'col_does_not_exist' not found" in told.payload["last_execution_error"]
    assert [e.payload["reason"] for e in failed if e.event == "cluster.trigger.fired"] == ["manual"] * 5
    finished = feed("trg_failing", lambda names: names.count("cluster.trigger.finished") == 5)
    assert sorted((e.payload["execution_count"], e.payload["consecutive_failures"], e.payload["status"])
                  for e in finished if e.event == "cluster.trigger.finished") == [(n, n, "failed") for n in range(1, 6)]
    assert trigger.next_scheduled_at is None

    resumed = json.loads(cli("resume", "trg_failing").stdout)
    assert resumed["status"] == "active"
    trigger = _wait_for("trg_failing", lambda t: t.next_scheduled_at is not None, timeout=30)
    assert trigger.next_scheduled_at > datetime.now(timezone.utc) + timedelta(minutes=55)

    # What the Prefect UI shows for a worker's refused run: the reason in one line, no traceback.
    with get_client(sync_client=True) as client:
        logs = [log.message for log in client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[runs[0]])))]
    assert any(m.startswith("Finished in state Failed(") and "not found" in m for m in logs), logs
    assert not any("Traceback" in m or "unexpected exception" in m for m in logs), logs


def test_pause_stops_runs_and_resume_brings_them_back(collection: str) -> None:
    _create(_interval(collection, start_immediately=False, seconds=60), "trg_pause")
    _wait_for("trg_pause", lambda t: t.next_scheduled_at is not None, timeout=30)
    paused = queries.run_sync(commands.pause_trigger("trg_pause"))
    assert paused.status == "paused" and paused.next_scheduled_at is None

    # A scheduled run that slipped in (a scheduler loop racing the pause) is due now: it must not execute.
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(f"{FLOW_NAME}/trg_pause")
        slipped = client.create_flow_run_from_deployment(deployment.id)
        deadline = time.monotonic() + 60
        while not (slipped.state and slipped.state.is_final()) and time.monotonic() < deadline:
            time.sleep(1)
            slipped = client.read_flow_run(slipped.id)
    assert slipped.state.is_cancelled() and "trigger trg_pause is paused" in slipped.state.message
    assert _get("trg_pause").execution_count == 0

    assert queries.run_sync(commands.resume_trigger("trg_pause")).status == "active"
    _wait_for("trg_pause", lambda t: t.next_scheduled_at is not None, timeout=30)


def test_delete_keeps_history_and_refuses_further_runs(cli, collection: str) -> None:
    _create(_interval(collection, start_immediately=True), "trg_delete")
    _wait_for("trg_delete", lambda t: t.execution_count == 1 and t.last_execution_status == "completed", timeout=60)
    deleted = json.loads(cli("delete", "trg_delete").stdout)
    assert deleted["status"] == "disabled" and deleted["execution_count"] == 1
    assert json.loads(cli("history", "trg_delete", "--json").stdout)["total"] == 1
    assert deleted["next_scheduled_at"] is None
    refused = cli("execute", "trg_delete")
    assert refused.returncode == 2 and refused.stderr == "trg_delete: trigger 'trg_delete' is deleted (disabled); create a new one\n"


def test_cluster_id_trigger_reads_its_definition_when_it_runs(cli, collection: str, tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text(json.dumps({"cluster_id": "cluster_live", "collection_ids": [collection],
                                                 "config": {"algorithm": "kmeans", "n_clusters": 3}}))
    assert cli("clusters", "create", str(tmp_path / "d.json")).returncode == 0
    _create({"trigger_type": "cron", "schedule_config": {"cron_expression": "0 3 * * *"}, "cluster_id": "cluster_live"},
            "trg_definition")
    (tmp_path / "d.json").write_text(json.dumps({"cluster_id": "cluster_live", "collection_ids": [collection],
                                                 "config": {"algorithm": "kmeans", "n_clusters": 4}}))
    assert cli("clusters", "create", str(tmp_path / "d.json")).returncode == 0
    assert _get("trg_definition").execution_config.config.n_clusters == 4
    execution = json.loads(cli("execute", "trg_definition", "--wait").stdout)
    assert execution["status"] == "completed" and execution["num_clusters"] == 4


def test_ls_lists_triggers_with_their_next_run(cli) -> None:
    _create({"trigger_type": "cron", "schedule_config": {"cron_expression": "0 2 * * *", "timezone": "America/New_York"},
             "cluster_id": "cluster_live"}, "trg_listed")
    trigger = _wait_for("trg_listed", lambda t: t.next_scheduled_at is not None, timeout=30)
    listing = json.loads(cli("ls", "--json").stdout)
    listed = {t["trigger_id"]: t for t in listing["results"]}
    exact = trigger.model_dump(mode="json")
    assert listed["trg_listed"]["next_scheduled_at"] == exact["next_scheduled_at"]
    assert listed["trg_listed"]["execution_config"] == exact["execution_config"]  # read from its cluster definition
    table = cli("ls").stdout.splitlines()
    assert table[0].split()[:4] == ["TRIGGER", "TYPE", "STATUS", "NEXT"]
    assert any(line.startswith("trg_listed ") and "cron" in line for line in table)


def test_listing_costs_the_same_few_calls_for_3_or_12_triggers_and_agrees_with_get(
    collection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies = [
        _interval(collection, start_immediately=False),
        {"trigger_type": "cron", "schedule_config": {"cron_expression": "17 3 * * *", "timezone": "Europe/Berlin"},
         "execution_config": _interval(collection, start_immediately=False)["execution_config"]},
        {"trigger_type": "event", "schedule_config": {"event_type": "documents_added", "event_threshold": 10**6,
                                                      "collection_id": "col_quiet", "cooldown_seconds": 0},
         "execution_config": _interval(collection, start_immediately=False)["execution_config"]},
    ]
    for namespace, count in (("list-small", 3), ("list-big", 12)):
        for i in range(count):
            queries.run_sync(commands.create_trigger(validate_request(bodies[i % 3]), namespace_id=namespace,
                                                        trigger_id=f"trg-{namespace}-{i}"))
    open_collection(collection, "list-big").add_documents(np.random.default_rng(5).normal(size=(60, 16)))  # its own
    ran = queries.run_sync(commands.execute_trigger("trg-list-big-0", "list-big", wait=True, timeout_seconds=90))
    assert ran.status == "completed"
    _wait_for("trg-list-big-0", lambda t: t.execution_count == 1, namespace="list-big")  # its end hook's record
    time.sleep(4)  # the scheduler has made the scheduled runs `get` reads

    requests: list[str] = []
    send = httpx.AsyncClient.send

    async def counted(self: httpx.AsyncClient, request: httpx.Request, *args: object, **kwargs: object) -> httpx.Response:
        requests.append(f"{request.method} {request.url.path}")
        return await send(self, request, *args, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", counted)
    listed, calls = {}, {}
    for namespace in ("list-small", "list-big"):
        requests.clear()
        listed[namespace], _ = queries.run_sync(queries.list_triggers(namespace, limit=100))
        calls[namespace] = list(requests)
    monkeypatch.undo()
    assert len(listed["list-small"]) == 3 and len(listed["list-big"]) == 12
    assert len(calls["list-small"]) == len(calls["list-big"]) <= 4, calls
    for trigger in listed["list-big"]:
        exact = queries.run_sync(queries.get_trigger(trigger.trigger_id, "list-big"))
        differ = {k: (v, getattr(exact, k)) for k, v in trigger if v != getattr(exact, k)}
        assert not differ, (trigger.trigger_id, differ)
    by_id = {t.trigger_id: t for t in listed["list-big"]}
    assert by_id["trg-list-big-0"].execution_count == 1 and by_id["trg-list-big-0"].last_execution_status == "completed"


def _deploy(env: dict[str, str], *extra: str) -> None:
    result = subprocess.run([str(Path(sys.executable).with_name("prefect")), "--no-prompt", "deploy", "--all", *extra],
                            cwd=REPOSITORY, env={**env, "PWD": str(REPOSITORY)}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_prefect_deploy_twice_creates_each_trigger_once_with_the_same_ids(server_env: dict[str, str]) -> None:
    names = {path.name.rsplit(".", 1)[0] for path in trigger_files()}
    _deploy(server_env)
    first = {d.name: d for d in _deployments() if d.name in names}
    _deploy(server_env)
    second = {d.name: d for d in _deployments() if d.name in names}
    assert set(first) == names
    assert {n: d.id for n, d in second.items()} == {n: d.id for n, d in first.items()}
    assert sorted(d.name for d in _deployments() if d.name in names) == sorted(names)  # no duplicates
    assert {n: d.parameters for n, d in second.items()} == {n: d.parameters for n, d in first.items()}


def test_a_paused_trigger_file_stays_paused_across_deploys(server_env: dict[str, str], tmp_path: Path) -> None:
    triggers = tmp_path / "triggers"
    triggers.mkdir()
    for name, status in (("deploy-paused", "paused"), ("deploy-active", "active")):
        body = json.loads((EXAMPLE_TRIGGERS / "daily-kmeans-cron.json").read_text())
        (triggers / f"{name}.json").write_text(json.dumps({**body, "status": status}))
    (tmp_path / "prefect.yaml").write_text(render_prefect_yaml(triggers))
    for _ in range(2):
        _deploy(server_env, "--prefect-file", str(tmp_path / "prefect.yaml"))
        assert _get("deploy-paused").status == "paused" and _get("deploy-active").status == "active"


def test_a_trigger_without_a_description_reads_back_without_one_created_or_deployed(server_env: dict[str, str],
                                                                                    tmp_path: Path) -> None:
    """Prefect's client stores a deployment's missing description as the text "None", and `prefect deploy`
    gives it the flow's: both show the shared flow's description in the UI and read back as none."""
    body = json.loads((EXAMPLE_TRIGGERS / "daily-kmeans-cron.json").read_text())
    del body["description"]
    triggers = tmp_path / "triggers"
    triggers.mkdir()
    (triggers / "deploy-undescribed.json").write_text(json.dumps(body))
    (tmp_path / "prefect.yaml").write_text(render_prefect_yaml(triggers))
    _deploy(server_env, "--prefect-file", str(tmp_path / "prefect.yaml"))
    created = queries.run_sync(commands.create_trigger(validate_request(body), trigger_id="create-undescribed"))
    assert created.description is None
    for name in ("deploy-undescribed", "create-undescribed"):
        assert _get(name).description is None, name
        deployment = next(d for d in _deployments() if d.name == name)
        assert FLOW_DESCRIPTION in deployment.description and "None" not in deployment.description, name
    # A deployment whose missing description Prefect's client stored as "None" reads back without one too.
    with get_client(sync_client=True) as client:
        client.update_deployment(deployment.id, DeploymentUpdate(description="None"))
    assert _get("create-undescribed").description is None


def test_prefect_deploy_makes_the_deployment_create_makes(server_env: dict[str, str]) -> None:
    _deploy(server_env)
    request = validate_request(json.loads((EXAMPLE_TRIGGERS / "daily-kmeans-cron.json").read_text()))
    queries.run_sync(commands.create_trigger(request, trigger_id="daily-kmeans-cron-copy"))
    deployed, created = (next(d for d in _deployments() if d.name == name)
                         for name in ("daily-kmeans-cron", "daily-kmeans-cron-copy"))
    assert deployed.path is None and not deployed.pull_steps  # nothing of the deploying machine
    for field in ("entrypoint", "pull_steps", "path", "job_variables", "work_pool_name", "tags", "concurrency_options", "paused",
                  "enforce_parameter_schema", "parameter_openapi_schema"):
        assert getattr(created, field) == getattr(deployed, field), field
    # The user's description; a state line above it is the evaluator's (service.dashboard), written when it sweeps.
    assert user_description(created.description) == user_description(deployed.description)
    assert created.global_concurrency_limit.limit == deployed.global_concurrency_limit.limit == 1
    assert [s.schedule for s in created.schedules] == [s.schedule for s in deployed.schedules]
    # A command stamps the time of its change; `prefect deploy` does not (the deployment's update time shows).
    assert {**created.parameters["trigger"], "trigger_id": "daily-kmeans-cron", "updated_at": None} == \
        {**deployed.parameters["trigger"], "updated_at": None}


def _deployments() -> list:
    with get_client(sync_client=True) as client:
        return client.read_deployments(deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[TRIGGER_TAG])))


def test_a_work_pool_deleted_in_the_ui_is_made_again_by_the_next_create(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool a process looked up once is gone: the next create still makes its trigger, in a pool of that name."""
    monkeypatch.setenv("CLUSTER_TRIGGERS_WORK_POOL", "pool-deleted-meanwhile")

    async def scenario() -> tuple[str, str]:
        first = await commands.create_trigger(validate_request(json.loads(CRON)), namespace_id="team-pool")
        async with get_client() as client:
            await client.delete_work_pool("pool-deleted-meanwhile")
        second = await commands.create_trigger(validate_request(json.loads(CRON)), namespace_id="team-pool")
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(f"{FLOW_NAME}/{second.trigger_id}")
            pool = await client.read_work_pool("pool-deleted-meanwhile")
        assert deployment.work_pool_name == pool.name
        return first.trigger_id, second.trigger_id

    first, second = asyncio.run(scenario())
    assert first != second
