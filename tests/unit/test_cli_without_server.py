"""Every command with no stack and no Prefect server configured: it works, or says in one line what to start.

Prefect's ephemeral server must never start from our CLI: on a busy machine it timed out in
a traceback, and what it stored was gone when the command exited.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer.main

from prefect_cluster_triggers.deployments.cli.app import app
from prefect_cluster_triggers.deployments.cli.common import NO_SERVER
from tests.seed_examples import ALL

_SCRIPT = Path(sys.executable).with_name("cluster-triggers")


def _commands(group: object, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    found = set()
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        found |= _commands(command, (*prefix, name)) if hasattr(command, "commands") else {(*prefix, name)}
    return found


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("inputs")
    paths = {"trigger": folder / "trigger.json", "changes": folder / "changes.json", "cluster": folder / "cluster.json",
             "vectors": folder / "vectors.npy"}
    paths["trigger"].write_text(ALL["cron"])
    paths["changes"].write_text(json.dumps({"description": "x"}))
    paths["cluster"].write_text(json.dumps({"cluster_id": "cluster_x", "collection_ids": ["col_x"],
                                            "config": {"algorithm": "kmeans", "n_clusters": 2}}))
    np.save(paths["vectors"], np.ones((4, 3), dtype=np.float32))
    return {name: str(path) for name, path in paths.items()}


def _needs_server(files: dict[str, str]) -> dict[tuple[str, ...], list[str]]:
    """Each command that needs a server, with arguments that would otherwise succeed."""
    return {
        ("collections", "add"): ["col_x", "--vectors", files["vectors"]],
        ("collections", "ls"): [],
        ("collections", "delete"): ["col_x", "--id", "a"],
        ("collections", "notify"): ["col_x", "documents_added"],
        ("clusters", "create"): [files["cluster"]],
        ("cluster",): [files["trigger"]],
        ("results",): ["cluster_x"],
        ("create",): [files["trigger"]],
        ("ls",): [],
        ("get",): ["trg_x"],
        ("update",): ["trg_x", files["changes"]],
        ("pause",): ["trg_x"],
        ("resume",): ["trg_x"],
        ("delete",): ["trg_x"],
        ("execute",): ["trg_x"],
        ("history",): ["trg_x"],
        ("api",): [],
        ("migrate",): [],
    }


def _serverless(files: dict[str, str], tmp_path: Path) -> dict[tuple[str, ...], list[str]]:
    return {
        ("validate",): [files["trigger"]],
        ("preview",): [files["trigger"]],
        ("render",): ["--output", str(tmp_path / "prefect.yaml")],
        ("keys", "create"): ["--namespace", "team-a"],
    }


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The console script with nothing for Prefect to find: no PREFECT_* or CLUSTER_TRIGGERS_* variable,
    an empty home, Prefect home and data directory (no stack.json, no profile)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PREFECT_", "CLUSTER_TRIGGERS_"))}
    env.update(HOME=str(home), PREFECT_HOME=str(home / ".prefect"), CLUSTER_TRIGGERS_DATA_DIR=str(home / "data"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return subprocess.run([str(_SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)


def test_every_command_is_covered(files: dict[str, str], tmp_path: Path) -> None:
    assert _commands(typer.main.get_command(app)) == set(_needs_server(files)) | set(_serverless(files, tmp_path))


@pytest.mark.parametrize("command", list(_needs_server({name: name for name in ("trigger", "changes", "cluster",
                                                                                  "vectors")})), ids=" ".join)
def test_a_command_needing_a_server_says_what_to_start(command: tuple[str, ...], files: dict[str, str],
                                                        tmp_path: Path) -> None:
    result = _run([*command, *_needs_server(files)[command]], tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", NO_SERVER + "\n")


@pytest.mark.parametrize("command", [("validate",), ("preview",), ("render",), ("keys", "create")], ids=" ".join)
def test_a_command_needing_no_server_works(command: tuple[str, ...], files: dict[str, str], tmp_path: Path) -> None:
    result = _run([*command, *_serverless(files, tmp_path)[command]], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and result.stdout
