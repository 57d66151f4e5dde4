"""The main job (`make run`): a local Prefect stack with the example triggers deployed.

Starts a Prefect server on SQLite (or uses `PREFECT_API_URL`), a process work pool and its
worker, registers the blocks, makes demo collections when there are none, deploys
`prefect.yaml`, prints where to look, and stays up until Ctrl-C, which stops everything it
started. `stack.json` in the data directory tells a second `make run` (and the CLI) that a
stack is up.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import ContextManager, Iterator

import httpx

from deployments.settings import get_settings
from deployments.translate import PROJECT_DIR

_BIN = Path(sys.executable).parent


def main() -> int:
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    running = running_stack()
    if running:
        print(f"a cluster-triggers stack is already running (pid {running['pid']}): Prefect UI at "
              f"{running['ui_url']}; stop it with Ctrl-C in its terminal or `kill {running['pid']}`", file=sys.stderr)
        return 1
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    with ExitStack() as stack:
        _stop_on_signals()
        api_url = os.environ.get("PREFECT_API_URL")
        ports = [("CLUSTER_TRIGGERS_API_PORT", settings.api_port)]
        if not api_url:
            ports.append(("CLUSTER_TRIGGERS_PREFECT_PORT", settings.prefect_port))
        for setting, port in ports:
            if _port_busy(port):
                print(f"port {port} is in use by another program; set {setting} to a free port", file=sys.stderr)
                return 1
        if not api_url:
            env["PREFECT_HOME"] = str(settings.data_dir / "prefect")
            env["PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL"] = "0.5"  # `get` sees events at once
            api_url = stack.enter_context(prefect_server(settings.prefect_port, env))
        env["PREFECT_API_URL"] = api_url
        ui_url = api_url.removesuffix("/api")
        create_work_pool(settings.work_pool, env)
        _step("blocks", [_BIN / "prefect", "block", "register", "-m", "blocks"], env)
        _step("demo data", [sys.executable, "-m", "deployments.demo"], env)
        _step("deployments", [_BIN / "prefect", "--no-prompt", "deploy", "--all"], env)
        stack.enter_context(worker(settings.work_pool, env))
        api = stack.enter_context(api_server(settings.api_port, env, log=settings.data_dir / "api.log"))
        _step("first runs of start_immediately triggers", [sys.executable, "-m", "deployments.demo", "first-runs"], env)
        stack.enter_context(_stack_file(api_url, ui_url))
        print(f"\nPrefect UI:  {ui_url}  (runs, schedules, automations, artifacts)\n"
              f"Triggers:    cluster-triggers ls   (in another shell; it finds this stack by itself)\n"
              f"REST API:    {api}/v1/clusters/triggers   docs {api}/docs\n"
              f"             key: cluster-triggers keys create --namespace default\n"
              f"Stop:        Ctrl-C\n", flush=True)
        while True:
            time.sleep(3600)
    return 0


def worker(pool: str, env: dict[str, str], *, log: Path | None = None) -> ContextManager[subprocess.Popen]:
    """A process worker for `pool`; it polls every second, so a run starts within seconds of being due.

    It takes runs only once they are due (no prefetch), so a firing held back by a cooldown
    also shows as started after the cooldown.
    """
    command = [_BIN / "prefect", "worker", "start", "--pool", pool]
    return child_process(command, {**env, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "0"},
                         log=log)


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def create_work_pool(pool: str, env: dict[str, str]) -> None:
    _step("work pool", [_BIN / "prefect", "work-pool", "create", pool, "--type", "process", "--overwrite"], env)


def running_stack() -> dict | None:
    """The stack recorded in the data directory, when its process is still alive."""
    path = get_settings().data_dir / "stack.json"
    try:
        info = json.loads(path.read_text())
        os.kill(info["pid"], 0)
    except (OSError, ValueError, KeyError):
        return None
    return info


@contextmanager
def prefect_server(port: int, env: dict[str, str], *, timeout: float = 120, log: Path | None = None) -> Iterator[str]:
    """A `prefect server start` on 127.0.0.1:`port`, healthy; stopped on exit."""
    api_url = f"http://127.0.0.1:{port}/api"
    command = [_BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with child_process(command, env, log=log) as process:
        _wait_answering(f"{api_url}/health", process, "prefect server", timeout)
        yield api_url


@contextmanager
def api_server(port: int, env: dict[str, str], *, timeout: float = 60, log: Path | None = None) -> Iterator[str]:
    """`cluster-triggers api` (REST API and evaluator) on 127.0.0.1:`port`, answering; stopped on exit."""
    url = f"http://127.0.0.1:{port}"
    with child_process([_BIN / "cluster-triggers", "api", "--port", str(port)], env, log=log) as process:
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
def child_process(command: list, env: dict[str, str], *, log: Path | None = None) -> Iterator[subprocess.Popen]:
    """A child in its own process group, so stopping it also stops whatever it started (flow runs).

    Its output goes to `log` when given, else to this terminal.
    """
    with open(log, "ab") if log else _no_file() as output:
        process = subprocess.Popen([str(c) for c in command], env=env, start_new_session=True, cwd=PROJECT_DIR,
                                   stdout=output, stderr=subprocess.STDOUT if output else None)
        try:
            yield process
        finally:
            _stop(process)


@contextmanager
def _no_file() -> Iterator[None]:
    yield None


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the whole group, SIGKILL what is left after 15 s."""
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


def _step(name: str, command: list, env: dict[str, str]) -> None:
    print(f"== {name}", flush=True)
    result = subprocess.run([str(c) for c in command], env=env, cwd=PROJECT_DIR, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")


@contextmanager
def _stack_file(api_url: str, ui_url: str) -> Iterator[None]:
    path = get_settings().data_dir / "stack.json"
    path.write_text(json.dumps({"pid": os.getpid(), "api_url": api_url, "ui_url": ui_url}))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _stop_on_signals() -> None:
    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a stack started in the background inherits an ignored SIGINT.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def _port_busy(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
