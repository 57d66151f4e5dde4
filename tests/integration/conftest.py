"""A real Prefect server for the integration tests, started once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """The API URL of a temporary Prefect server (SQLite) that this session's tests share."""
    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture
def cli(prefect_api: str):
    """Run the `cluster-triggers` console script against the test server, as a user would."""
    script = Path(sys.executable).with_name("cluster-triggers")

    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PREFECT_API_URL": prefect_api}
        return subprocess.run([str(script), *args], input=input, capture_output=True, text=True, env=env, timeout=300)

    return run
