"""`results RUN_ID`, `collections ls`, and the trigger commands answered by a running stack's REST API.

Another namespace's runs and collections answer exactly like missing ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from prefect_cluster_triggers.blocks.collections import HttpCollection
from prefect_cluster_triggers.core.names import namespace_id_of, owned_name
from prefect_cluster_triggers.core.settings import get_settings
from tests.seed_examples import CRON

OURS, THEIRS = "cli-reads-a", "cli-reads-b"


@pytest.fixture(scope="module")
def two_runs(cli, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Namespace OURS: a collection of 200 x 8, a cluster definition on it, and two ad-hoc runs; their run ids."""
    folder = tmp_path_factory.mktemp("cli-reads")
    rng = np.random.default_rng(7)
    np.save(folder / "v.npy", (rng.normal(size=(200, 8)) + rng.integers(0, 3, (200, 1)) * 5).astype(np.float32))
    added = cli("collections", "add", "col_reads", "--vectors", str(folder / "v.npy"), "--namespace", OURS)
    assert added.returncode == 0, added.stderr
    (folder / "cluster.json").write_text(json.dumps({"cluster_id": "cluster_reads", "collection_ids": ["col_reads"],
                                                     "config": {"algorithm": "kmeans", "n_clusters": 3}}))
    assert cli("clusters", "create", str(folder / "cluster.json"), "--namespace", OURS).returncode == 0
    (folder / "request.json").write_text(json.dumps({"trigger_type": "interval", "cluster_id": "cluster_reads",
                                                     "schedule_config": {"interval_seconds": 3600}}))
    runs = []
    for _ in range(2):
        ran = cli("cluster", str(folder / "request.json"), "--namespace", OURS)
        assert ran.returncode == 0, ran.stderr
        runs.append(json.loads(ran.stdout)["run_id"])
    return runs[0], runs[1]


def test_results_of_an_earlier_run_by_its_id(cli, two_runs: tuple[str, str]) -> None:
    first, second = two_runs
    latest = json.loads(cli("results", "cluster_reads", "--namespace", OURS).stdout)
    assert latest["run_id"] == second
    earlier = cli("results", first, "--namespace", OURS, "--members")
    assert earlier.returncode == 0, earlier.stderr
    record = json.loads(earlier.stdout)
    assert record["run_id"] == first and record["results_id"] == "cluster_reads"
    assert len(record["members"]) == 200 and all(len(c["centroid"]) == 8 for c in record["clusters"])


def test_another_namespaces_run_id_answers_like_a_missing_one(cli, two_runs: tuple[str, str]) -> None:
    first, _ = two_runs
    missing = str(uuid.uuid4())
    theirs = cli("results", first, "--namespace", THEIRS)
    nothing = cli("results", missing, "--namespace", THEIRS)
    assert theirs.returncode == nothing.returncode == 2
    assert theirs.stdout == nothing.stdout == ""
    assert theirs.stderr.replace(first, "ID") == nothing.stderr.replace(missing, "ID")
    assert theirs.stderr.count("\n") == 1 and "Traceback" not in theirs.stderr


def test_collections_ls_shows_the_namespaces_collections_only(cli, two_runs: tuple[str, str]) -> None:
    HttpCollection(collection_id="col_remote", url="http://127.0.0.1:9/docs").save(
        owned_name(namespace_id_of(OURS), "col_remote"), overwrite=True)
    listed = cli("collections", "ls", "--json", "--namespace", OURS)
    assert listed.returncode == 0, listed.stderr
    found = {c["collection_id"]: c for c in json.loads(listed.stdout)["collections"]}
    assert set(found) == {"col_reads", "col_remote"}
    lance = found["col_reads"]
    assert (lance["kind"], lance["documents"], lance["dimension"]) == ("lance", 200, 8)
    assert lance["version"] >= 1 and lance["changed_at"].endswith("Z")
    assert found["col_remote"] == {"collection_id": "col_remote", "kind": "http", "documents": None,
                                   "dimension": None, "version": None, "changed_at": None}
    table = cli("collections", "ls", "--namespace", OURS).stdout.splitlines()
    assert table[0].split() == ["COLLECTION", "KIND", "DOCUMENTS", "DIMENSION", "VERSION", "CHANGED"]
    assert [line.split()[:4] for line in table[1:]] == [["col_reads", "lance", "200", "8"],
                                                        ["col_remote", "http", "-", "-"]]
    theirs = json.loads(cli("collections", "ls", "--json", "--namespace", THEIRS).stdout)
    assert theirs == {"namespace_id": namespace_id_of(THEIRS), "collections": []}


@pytest.fixture
def stack(api_process, prefect_api: str) -> Iterator[dict[str, str]]:
    """A stack of `make run` as the CLI discovers it (stack.json of a live process, ready) with the session's
    server and REST API; yields the environment of a shell that has no PREFECT_API_URL."""
    record = get_settings().storage.data_dir / "stack.json"
    record.write_text(json.dumps({"pid": os.getpid(), "state": "ready", "api_url": prefect_api}))
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    try:
        yield {**env, "CLUSTER_TRIGGERS_API_PORT": str(api_process.port)}
    finally:
        record.unlink()


def _through(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process; its last stdout line says whether it imported Prefect."""
    code = ("import sys; from prefect_cluster_triggers.deployments.cli.app import main; code = main(sys.argv[1:]); "
            "print('prefect imported:', 'prefect' in sys.modules); sys.exit(code)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)


def _stable(lines: list[str]) -> list[str]:
    """Printed lines without `updated_at`: the second of two pauses (or resumes) is a change of its own."""
    return [line for line in lines if '"updated_at"' not in line]


def test_the_stacks_rest_api_answers_trigger_commands_as_the_lifecycle_here_does(
        cli, stack: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text(CRON)
    made = _through(stack, "create", str(tmp_path / "t.json"), "--namespace", OURS)
    assert made.returncode == 0, made.stderr
    *printed, imported = made.stdout.splitlines()
    assert imported == "prefect imported: False"
    trigger = json.loads("\n".join(printed))
    trigger_id = trigger["trigger_id"]

    for args in (["get", trigger_id], ["ls", "--json"], ["ls"], ["pause", trigger_id], ["get", "trg_nowhere"],
                 ["get", "a/b"], ["resume", trigger_id]):
        remote = _through(stack, *args, "--namespace", OURS)
        here = cli(*args, "--namespace", OURS)
        *remote_out, imported = remote.stdout.splitlines()
        assert (remote.returncode, _stable(remote_out), remote.stderr) == (
            here.returncode, _stable(here.stdout.splitlines()), here.stderr)
        assert imported == f"prefect imported: {args == ['get', 'a/b']}"  # an id that is no URL segment: done here
    assert json.loads(cli("get", trigger_id, "--namespace", OURS).stdout)["status"] == "active"
    theirs = _through(stack, "get", trigger_id, "--namespace", THEIRS)
    nowhere = _through(stack, "get", "trg_nowhere", "--namespace", THEIRS)
    assert theirs.stderr.replace(trigger_id, "ID") == nowhere.stderr.replace("trg_nowhere", "ID")
    deleted = _through(stack, "delete", trigger_id, "--namespace", OURS)
    assert deleted.returncode == 0 and json.loads(deleted.stdout.rsplit("\n", 2)[0])["status"] == "disabled"


def test_a_shell_that_exported_the_stacks_api_url_uses_its_rest_api_too(stack: dict[str, str], prefect_api: str,
                                                                       tmp_path: Path) -> None:
    """The README's `prefect deploy` steps export PREFECT_API_URL; the trigger commands stay fast in that shell.
    An API URL of another server is that server's: the stack's REST API is not used."""
    (tmp_path / "t.json").write_text(CRON)
    exported = {**stack, "PREFECT_API_URL": prefect_api}
    made = _through(exported, "create", str(tmp_path / "t.json"), "--namespace", OURS)
    *printed, imported = made.stdout.splitlines()
    assert made.returncode == 0 and imported == "prefect imported: False", made.stderr
    trigger_id = json.loads("\n".join(printed))["trigger_id"]
    for args in (["get", trigger_id], ["ls"]):
        read = _through(exported, *args, "--namespace", OURS)
        assert read.returncode == 0 and read.stdout.splitlines()[-1] == "prefect imported: False", read.stderr
    elsewhere = _through({**stack, "PREFECT_API_URL": "http://127.0.0.1:9/api"}, "get", trigger_id, "--namespace", OURS)
    assert elsewhere.returncode != 0 and elsewhere.stdout.splitlines()[-1] == "prefect imported: True"
