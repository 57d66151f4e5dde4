"""Runs wherever Prefect runs (issue 10): a server in one environment, the worker in another.

Environment A is this repository's: it runs the Prefect server, the REST API with the
evaluator, and the CLI that creates the triggers. Environment B is a second virtual
environment in a temporary directory, installed from the built wheel, with its own home,
data directory and working directory: it runs the only process worker of the pool. The
collections and the results live on an S3-compatible server (issue 11): B shares nothing
with A but the network and the object store, and is given no storage setting at all (it
finds the endpoint and credentials in the blocks). Every trigger's runs must execute in B
and complete, with no path of A in any deployment.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import zipfile
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from prefect_cluster_triggers.deployments.stack.processes import api_server, free_port, prefect_server, worker
from tests.integration._users import fresh_env, interval_trigger, run_cli, wait_listed, write_blobs

REPOSITORY = Path(__file__).parents[2]
CLI = Path(sys.executable).with_name("cluster-triggers")
POOL = "elsewhere"


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(REPOSITORY), "-w", str(out)],
                   check=True, capture_output=True)
    return next(out.glob("*.whl"))


@pytest.fixture(scope="session")
def environment_b(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second virtual environment, outside the repository, with the package installed from the wheel."""
    venv = tmp_path_factory.mktemp("machine-b") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)], capture_output=True,
                               text=True)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv


def test_the_wheel_installs_one_top_level_package(wheel: Path) -> None:
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"prefect_cluster_triggers", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    assert "prefect_cluster_triggers/deployments/triggers/daily-kmeans-cron.json" in zipfile.ZipFile(wheel).namelist()


def test_triggers_created_in_one_environment_run_on_a_worker_in_another(
        environment_b: Path, object_store: dict[str, str], tmp_path: Path) -> None:
    """On a server that asks for an auth string (every other test's server is open)."""
    auth = "admin:s3cret-pass"
    bucket_prefix = f"{object_store['CLUSTER_TRIGGERS_STORAGE_URI']}/{tmp_path.name}"
    a_settings = {**object_store, "CLUSTER_TRIGGERS_STORAGE_URI": bucket_prefix,"CLUSTER_TRIGGERS_WORK_POOL": POOL, "CLUSTER_TRIGGERS_DATA_DIR": str(tmp_path / "a" / "data"),
                  "PREFECT_HOME": str(tmp_path / "a" / "prefect"), "CLUSTER_TRIGGERS_EVALUATOR_SWEEP_SECONDS": "2",
                  "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2"}
    a_settings |= {"PREFECT_SERVER_API_AUTH_STRING": auth, "PREFECT_API_AUTH_STRING": auth}
    env_a = fresh_env(tmp_path / "a" / "home", **a_settings)
    work_b = tmp_path / "b" / "work"
    work_b.mkdir(parents=True)
    with ExitStack() as running:
        api_url = running.enter_context(prefect_server(free_port(), env_a, log=tmp_path / "server.log"))
        env_a["PREFECT_API_URL"] = api_url
        port = free_port()
        running.enter_context(api_server(port, {**env_a, "CLUSTER_TRIGGERS_API_PORT": str(port)},
                                         log=tmp_path / "api.log"))
        env_b = fresh_env(tmp_path / "b" / "home", PREFECT_API_URL=api_url,
                          CLUSTER_TRIGGERS_DATA_DIR=str(tmp_path / "b" / "data"), PATH=f"{environment_b / 'bin'}:/usr/bin:/bin",
                          PREFECT_API_AUTH_STRING=auth)
        running.enter_context(worker(POOL, env_b, log=tmp_path / "worker-b.log", command=environment_b / "bin" / "prefect",
                                     cwd=work_b))

        vectors, ids = write_blobs(tmp_path / "input")
        for collection in ("col_two", "col_two_events"):
            added = run_cli(CLI, env_a, "collections", "add", collection, "--vectors", str(vectors), "--ids", str(ids))
            assert added.returncode == 0, added.stderr
        cron = {"trigger_type": "cron", "schedule_config": {"cron_expression": "* * * * *", "timezone": "UTC"},
                "execution_config": {"collection_ids": ["col_two"], "config": {"algorithm": "kmeans", "n_clusters": 3}}}
        event = {"trigger_type": "event",
                 "schedule_config": {"event_type": "documents_added", "event_threshold": 5,
                                     "collection_id": "col_two_events", "cooldown_seconds": 0},
                 "execution_config": {"collection_ids": ["col_two_events"],
                                      "config": {"algorithm": "kmeans", "n_clusters": 3}}}
        for name, body in (("two-cron", json.dumps(cron)), ("two-interval", interval_trigger("col_two")),
                           ("two-event", json.dumps(event))):
            created = run_cli(CLI, env_a, "create", "-", "--id", name, input=body)
            assert created.returncode == 0, created.stderr
        more, more_ids = write_blobs(tmp_path / "more", n=5, seed=1)
        added = run_cli(CLI, env_a, "collections", "add", "col_two_events", "--vectors", str(more), "--ids", str(more_ids))
        assert added.returncode == 0, added.stderr

        names = {"two-cron", "two-interval", "two-event"}

        def all_completed(triggers: list[dict]) -> bool:
            return all(t["last_execution_status"] == "completed" for t in triggers if t["trigger_id"] in names)

        listed = {t["trigger_id"]: t for t in wait_listed(CLI, env_a, all_completed, timeout=240)}
        for name in names:
            assert listed[name]["execution_count"] >= 1 and listed[name]["last_execution_status"] == "completed", \
                listed[name]
        assert "Completed()" in (tmp_path / "worker-b.log").read_text()  # B's worker ran them: the pool's only one
        for data_dir in (tmp_path / "a" / "data", tmp_path / "b" / "data"):  # every document and result is on S3
            assert not (data_dir / "collections").exists() and not (data_dir / "results").exists()
        history = run_cli(CLI, env_a, "history", "two-interval", "--json")
        assert '"num_documents": 600' in history.stdout, history.stdout  # B's results, read in A
        members = run_cli(CLI, env_a, "results", "two-interval", "--members")
        assert len(json.loads(members.stdout)["members"]) == 600

        headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
        found = httpx.post(f"{api_url}/deployments/filter", json={"deployments": {"tags": {"all_": ["cluster-trigger"]}}},
                           headers=headers, timeout=30)
        assert found.status_code == 200
        deployments = [d for d in found.json() if d["name"] in names]
        assert len(deployments) == 3
        for deployment in deployments:
            assert deployment["entrypoint"] == "prefect_cluster_triggers.flows.clustering_flow.cluster_collection"
            assert deployment["path"] is None and not deployment["pull_steps"]
            text = json.dumps(deployment)
            for path_of_a in (str(REPOSITORY), sys.prefix, str(tmp_path / "a")):
                assert path_of_a not in text, (path_of_a, deployment["name"])
        refused = httpx.post(f"{api_url}/deployments/filter", json={}, timeout=30)
        assert refused.status_code == 401
        wrong = httpx.post(f"{api_url}/deployments/filter", json={}, timeout=30,
                           headers={"Authorization": "Basic " + base64.b64encode(b"admin:wrong").decode()})
        assert wrong.status_code == 401
