"""The processes of a local stack: a Prefect server, the REST API, a worker; each stopped with its parent.

Used by `make run` and by the tests and benchmarks that start a stack of their own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import ContextManager, Iterator

import httpx

from prefect_cluster_triggers.deployments.stack import guard

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def create_work_pool(pool: str, env: dict[str, str]) -> None:
    step("work pool", [BIN / "prefect", "work-pool", "create", pool, "--type", "process", "--overwrite"], env)


def worker(pool: str, env: dict[str, str], *, log: Path | None = None, command: Path | None = None,
           cwd: Path | None = None) -> ContextManager[subprocess.Popen]:
    """A process worker for `pool`; it polls every second, so a run starts within seconds of being due.

    It takes runs only once they are due (no prefetch), so a firing held back by a cooldown
    also shows as started after the cooldown. `command` is another environment's `prefect`
    (a worker on "another machine"); `cwd` its working directory.
    """
    arguments = [command or BIN / "prefect", "worker", "start", "--pool", pool]
    return child_process(arguments, {**env, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "0"},
                         log=log, cwd=cwd)


@contextmanager
def prefect_server(port: int, env: dict[str, str], *, timeout: float = 120, log: Path | None = None) -> Iterator[str]:
    """A `prefect server start` on 127.0.0.1:`port`, healthy; stopped on exit."""
    api_url = f"http://127.0.0.1:{port}/api"
    command = [BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    # `--port` alone moves the API, not the UI: its /ui-settings keeps naming :4200 (the default of
    # these two settings), so the UI would show another server's data or "Can't connect".
    env = {**env, "PREFECT_SERVER_API_PORT": str(port), "PREFECT_UI_API_URL": api_url}
    with child_process(command, env, log=log) as process:
        _wait_answering(f"{api_url}/health", process, "prefect server", timeout)
        yield api_url


@contextmanager
def api_server(port: int, env: dict[str, str], *, timeout: float = 60, log: Path | None = None) -> Iterator[str]:
    """`cluster-triggers api` (REST API and evaluator) on 127.0.0.1:`port`, answering; stopped on exit."""
    url = f"http://127.0.0.1:{port}"
    with child_process([BIN / "cluster-triggers", "api", "--port", str(port)], env, log=log) as process:
        _wait_answering(f"{url}/openapi.json", process, "cluster-triggers api", timeout)
        yield url


def _wait_answering(url: str, process: subprocess.Popen, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}; see its output above")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} not answering after {timeout:.0f} s")
        time.sleep(0.25)


@contextmanager
def child_process(command: list, env: dict[str, str], *, log: Path | None = None,
                  cwd: Path | None = None) -> Iterator[subprocess.Popen]:
    """A child under a `guard`, which stops it and whatever it started (flow runs) when this process
    stops it or dies without stopping it (a SIGKILL, an OOM kill): no server, worker or API outlives
    the stack that started it. Its output goes to `log` when given, else to this terminal.
    """
    guarded = [sys.executable, "-m", guard.__name__, str(os.getpid()), *(str(c) for c in command)]
    with open(log, "ab") if log else _no_file() as output:
        process = subprocess.Popen(guarded, env=env, start_new_session=True, cwd=cwd,
                                   stdout=output, stderr=subprocess.STDOUT if output else None)
        try:
            yield process
        finally:
            _stop(process)


@contextmanager
def _no_file() -> Iterator[None]:
    yield None


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the guard, SIGKILL after 15 s (its command has `guard.GRACE` to stop)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(15)
            return
        except subprocess.TimeoutExpired:
            continue


def step(name: str, command: list, env: dict[str, str], *, cwd: Path | None = None) -> None:
    print(f"== {name}", flush=True)
    result = subprocess.run([str(c) for c in command], env=env, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")


def port_busy(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def leftover_on(port: int, data_dir: Path) -> int | None:
    """The pid of a process an earlier stack of `data_dir` started (its PREFECT_HOME says so) that listens
    on `port`; None when there is none, or where /proc cannot tell (not Linux)."""
    sockets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    marker = f"PREFECT_HOME={data_dir / 'prefect'}".encode()
    for process in Path("/proc").glob("[0-9]*"):
        try:
            if marker not in (process / "environ").read_bytes().split(b"\0"):
                continue
            if sockets & {os.readlink(fd) for fd in (process / "fd").iterdir()}:
                return int(process.name)
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return None


def _listening_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on `port` (Linux's /proc/net tables; state 0A is LISTEN)."""
    found = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        found |= {row.split()[9] for row in rows
                  if row.split()[3] == "0A" and int(row.split()[1].rsplit(":", 1)[1], 16) == port}
    return found
