"""A real Prefect server (and, for the lifecycle tests, a real worker), started once per session.

The server is `prefect server start` on SQLite; with CLUSTER_TRIGGERS_TEST_DATABASE_URL set
(CI sets a PostgreSQL URL) it runs on that database instead (under pytest-xdist, each process
on `<url>_<worker id>`). Its scheduler loops every 2 s, so scheduled runs appear within
seconds. A failed test's report ends with the last lines of the session's server, API and
worker logs: a CI failure shows what those processes saw.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from contextlib import ExitStack
from pathlib import Path
from typing import Iterator

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from prefect_cluster_triggers.core.settings import get_settings
from prefect_cluster_triggers.deployments.api.keys import KeyStore
from prefect_cluster_triggers.deployments.stack.processes import (
    api_server,
    child_process,
    create_work_pool,
    free_port,
    prefect_server,
    worker,
)

_LOG_TAIL = 40  # lines of each session log shown under a failed test
_session_logs: list[Path] = []


def _session_log(factory: pytest.TempPathFactory, name: str) -> Path:
    """A log file for a session-wide process, listed for failed tests' reports."""
    path = factory.mktemp("logs") / name
    _session_logs.append(path)
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Add the tails of the session's logs to a failed test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for log in (path for path in _session_logs if path.exists()):
        with log.open(errors="replace") as lines:
            tail = deque(lines, maxlen=_LOG_TAIL)
        report.sections.append((f"last {_LOG_TAIL} lines of {log.name}", "".join(tail)))


@pytest.fixture(scope="session")
def server_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home")),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.5",
        "PREFECT_SERVER_LOG_RETRYABLE_ERRORS": "true",  # a 503 (lost race, timed-out statement) shows its cause
    }
    database = os.environ.get("CLUSTER_TRIGGERS_TEST_DATABASE_URL")
    if database:  # one database per pytest-xdist process (`<url>_gw0`, ...), each for its own server
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = f"{database}_{worker}" if worker else database
    return env


@pytest.fixture(scope="session")
def prefect_api(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API URL of the session's Prefect server; in-process clients and child processes use it."""
    log = _session_log(tmp_path_factory, "prefect-server.log")
    with prefect_server(free_port(), server_env, log=log) as url:
        os.environ["PREFECT_API_URL"] = url
        server_env["PREFECT_API_URL"] = url
        with temporary_settings({PREFECT_API_URL: url}):
            yield url


@pytest.fixture(scope="session")
def prefect_worker(prefect_api: str, server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A process worker on the triggers' work pool (the server is the session's own); yields its log file."""
    pool = get_settings().target.work_pool
    create_work_pool(pool, server_env)
    log = _session_log(tmp_path_factory, "worker.log")
    with worker(pool, server_env, log=log):
        yield log


class ApiProcess:
    """`cluster-triggers api` on a fixed port, which a test may stop and start again."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port, self.env, self.log = free_port(), env, log
        self.url = f"http://127.0.0.1:{self.port}"
        self._running: ExitStack | None = None

    def start(self) -> None:
        self._running = ExitStack()
        self._running.enter_context(api_server(self.port, self.env, log=self.log))

    def stop(self) -> None:
        if self._running is not None:
            self._running.close()
            self._running = None


@pytest.fixture(scope="session")
def api_process(prefect_api: str, server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    """The REST API and the evaluator of event and conditional triggers, one per test session."""
    env = {**server_env, **os.environ, "CLUSTER_TRIGGERS_EVALUATOR_SWEEP_SECONDS": "2"}
    process = ApiProcess(env, _session_log(tmp_path_factory, "api.log"))
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def api(api_process: ApiProcess) -> str:
    """The URL of the session's `cluster-triggers api`."""
    return api_process.url


@pytest.fixture(scope="session")
def keys(api: str) -> dict[str, str]:
    """An API key for each of the namespaces team-a and team-b."""
    store = KeyStore()
    return {name: store.create([name], created_by=f"{name}-owner")[0] for name in ("team-a", "team-b")}


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An S3-compatible server (moto's) on 127.0.0.1 with a bucket; yields the settings that point at it."""
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [Path(sys.executable).with_name("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    credentials = {"AWS_ACCESS_KEY_ID": "cluster-triggers-test", "AWS_SECRET_ACCESS_KEY": "test-secret-key"}
    with child_process(command, {**os.environ, **credentials}, log=_session_log(tmp_path_factory, "s3.log")):
        _wait_for_http(endpoint)
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **{
            "aws_access_key_id": credentials["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": credentials["AWS_SECRET_ACCESS_KEY"]}).create_bucket(Bucket="cluster-data")
        yield {"CLUSTER_TRIGGERS_STORAGE_URI": "s3://cluster-data/team-a", "CLUSTER_TRIGGERS_S3_ENDPOINT_URL": endpoint,
               **credentials}


def _wait_for_http(url: str, timeout: float = 60) -> None:
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not answering after {timeout} s")


@pytest.fixture(scope="session")
def cli(prefect_api: str):
    """Run the `cluster-triggers` console script against the test server, as a user would."""
    script = Path(sys.executable).with_name("cluster-triggers")

    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PREFECT_API_URL": prefect_api}
        return subprocess.run([str(script), *args], input=input, capture_output=True, text=True, env=env, timeout=300)

    return run


CHROMIUM = "/usr/bin/chromium"  # Debian's; .ci/run installs it
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def browser() -> Iterator[object]:
    """Headless Chromium (the system's, driven by Playwright) for what the Prefect UI must show.

    Per test: Playwright's sync API keeps an event loop running in this thread while it is open,
    and every later `asyncio.run` in the session would refuse to start.
    """
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install chromium), as .ci/run does"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()
