"""What the process-level tests share: a user's environment, data files, and the CLI as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

# Settings a developer's shell (or the test session) may carry that a fresh user has not.
_INHERITED = ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING",
              "PYTHONPATH", "VIRTUAL_ENV")


def fresh_env(home: Path, **settings: str) -> dict[str, str]:
    """A new user's environment: their own home (so the default data directory), nothing else of ours."""
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED and not k.startswith("CLUSTER_TRIGGERS_")}
    home.mkdir(parents=True, exist_ok=True)
    return {**env, "HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **settings}


def write_blobs(directory: Path, n: int = 600, dim: int = 16, seed: int = 0) -> tuple[Path, Path]:
    """`X.npy` with three separated blobs and `ids.txt`, as a user brings them to `collections add`."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=6.0, size=(3, dim))
    vectors = (centers[np.arange(n) % 3] + rng.normal(size=(n, dim))).astype(np.float32)
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "X.npy", vectors)
    (directory / "ids.txt").write_text("".join(f"doc-{seed}-{i}\n" for i in range(n)))
    return directory / "X.npy", directory / "ids.txt"


def interval_trigger(collection_id: str) -> str:
    return json.dumps({"trigger_type": "interval", "schedule_config": {"interval_seconds": 3600, "start_immediately": True},
                       "execution_config": {"collection_ids": [collection_id],
                                            "config": {"algorithm": "kmeans", "n_clusters": 3}}})


def run_cli(script: Path, env: dict[str, str], *args: str, input: str | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(script), *args], env=env, input=input, capture_output=True, text=True, timeout=600,
                          cwd=cwd)


def wait_listed(script: Path, env: dict[str, str], done: Any, timeout: float, *, cwd: Path | None = None) -> list[dict]:
    """`cluster-triggers ls --json` until `done(triggers)`; the last listing either way."""
    deadline = time.monotonic() + timeout
    while True:
        listed = run_cli(script, env, "ls", "--json", "--limit", "1000", cwd=cwd)
        assert listed.returncode == 0, listed.stderr
        triggers = json.loads(listed.stdout)["results"]
        if done(triggers) or time.monotonic() > deadline:
            return triggers
        time.sleep(2)
