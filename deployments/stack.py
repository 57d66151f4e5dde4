"""The main job (`make run`): a local Prefect stack with the example triggers deployed.

Starts a Prefect server on SQLite (or uses `PREFECT_API_URL`), the REST API, a process work
pool and its worker, registers the blocks, makes demo collections when there are none,
deploys `prefect.yaml` (the current directory's, else the package's example triggers
rendered into the data directory), runs the new `start_immediately` examples once, prints
one `ready` line, and stays up until Ctrl-C, which stops everything it started.

`stack.json` in the data directory is written first, with `"state": "starting"`, and says
`"ready"` only after every setup step has finished. The CLI waits for `ready` before it
talks to Prefect, and the REST API holds requests until then, so nothing a user does while
the stack starts can race its setup (or, before this file existed, reach a throw-away
ephemeral Prefect server instead of this one).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

import httpx

from prefect_cluster_triggers.deployments.settings import get_settings

_BIN = Path(sys.executable).parent
_STARTING, _READY = "starting", "ready"
_PR_SET_PDEATHSIG = 1


def main() -> int:
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    running = running_stack()
    if running:
        print(f"a cluster-triggers stack is already {running['state']} (pid {running['pid']}): Prefect UI at "
              f"{running.get('ui_url', '(not up yet)')}; stop it with Ctrl-C in its terminal or `kill {running['pid']}`",
              file=sys.stderr)
        return 1
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    with ExitStack() as stack:
        _stop_on_signals()
        stack_file = stack.enter_context(_stack_file())
        api_url = os.environ.get("PREFECT_API_URL")
        ports = [("CLUSTER_TRIGGERS_API_PORT", settings.api_port)]
        if not api_url:
            ports.append(("CLUSTER_TRIGGERS_PREFECT_PORT", settings.prefect_port))
        for setting, port in ports:
            if _port_busy(port):
                leftover = _leftover_on(port, settings.data_dir)
                print(f"port {port} is held by pid {leftover}, left over from an earlier `make run` of this data "
                      f"directory that was stopped before it could stop it; stop it with `kill {leftover}`"
                      if leftover else f"port {port} is in use by another program; set {setting} to a free port",
                      file=sys.stderr)
                return 1
        if not api_url:
            env["PREFECT_HOME"] = str(settings.data_dir / "prefect")
            env["PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL"] = "0.5"  # `get` sees events at once
            api_url = stack.enter_context(prefect_server(settings.prefect_port, env))
        env["PREFECT_API_URL"] = api_url
        ui_url = api_url.removesuffix("/api")
        stack_file.update(api_url=api_url, ui_url=ui_url)
        api = stack.enter_context(api_server(settings.api_port, {**env, "CLUSTER_TRIGGERS_HOLD_UNTIL_READY": "true"},
                                             log=settings.data_dir / "api.log"))
        create_work_pool(settings.work_pool, env)
        _step("blocks", [_BIN / "prefect", "block", "register", "-m", "prefect_cluster_triggers.blocks"], env)
        _step("demo data", [sys.executable, "-m", "prefect_cluster_triggers.deployments.demo"], env)
        project = _project_dir(settings.data_dir)
        _step("deployments", [_BIN / "prefect", "--no-prompt", "deploy", "--all"], env, cwd=project)
        stack.enter_context(worker(settings.work_pool, env))
        _step("first runs of start_immediately triggers",
              [sys.executable, "-m", "prefect_cluster_triggers.deployments.demo", "first-runs", project / "prefect.yaml"],
              env)
        stack_file.update(state=_READY)
        print(f"\nPrefect UI:  {ui_url}  (runs, schedules, automations, artifacts)\n"
              f"Triggers:    cluster-triggers ls   (in another shell; it finds this stack by itself)\n"
              f"REST API:    {api}/v1/clusters/triggers   docs {api}/docs\n"
              f"             key: cluster-triggers keys create --namespace default\n"
              f"Stop:        Ctrl-C\n\n"
              f"ready: every setup step has finished (pid {os.getpid()})", flush=True)
        while True:
            time.sleep(3600)
    return 0


def worker(pool: str, env: dict[str, str], *, log: Path | None = None, command: Path | None = None,
           cwd: Path | None = None) -> ContextManager[subprocess.Popen]:
    """A process worker for `pool`; it polls every second, so a run starts within seconds of being due.

    It takes runs only once they are due (no prefetch), so a firing held back by a cooldown
    also shows as started after the cooldown. `command` is another environment's `prefect`
    (a worker on "another machine"); `cwd` its working directory.
    """
    arguments = [command or _BIN / "prefect", "worker", "start", "--pool", pool]
    return child_process(arguments, {**env, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "0"},
                         log=log, cwd=cwd)


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def create_work_pool(pool: str, env: dict[str, str]) -> None:
    _step("work pool", [_BIN / "prefect", "work-pool", "create", pool, "--type", "process", "--overwrite"], env)


def running_stack() -> dict | None:
    """The stack recorded in the data directory, when its process is still alive (ready or starting)."""
    path = get_settings().data_dir / "stack.json"
    try:
        info = json.loads(path.read_text())
        os.kill(info["pid"], 0)
    except (OSError, ValueError, KeyError):
        return None
    return info


def ready_stack(timeout: float = 600, *, announce: Callable[[dict], None] | None = None) -> dict | None:
    """The running stack once its setup has finished; None when no stack runs.

    A stack still starting is waited for (`announce(info)` is called once, first), so a
    command issued while `make run` sets up runs after the setup, against the right server.

    Raises:
        TimeoutError: the stack is still starting after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    info = running_stack()
    if info and info.get("state") == _STARTING and announce:
        announce(info)
    while info and info.get("state") == _STARTING:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the cluster-triggers stack (pid {info['pid']}) is still setting up after {timeout:.0f} s")
        time.sleep(0.2)
        info = running_stack()
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
def child_process(command: list, env: dict[str, str], *, log: Path | None = None,
                  cwd: Path | None = None) -> Iterator[subprocess.Popen]:
    """A child in its own process group, so stopping it also stops whatever it started (flow runs).

    It also gets SIGTERM if this process dies without stopping it (a SIGKILL, an OOM kill):
    no server, worker or API outlives the stack that started it. Its output goes to `log`
    when given, else to this terminal.
    """
    with open(log, "ab") if log else _no_file() as output:
        process = subprocess.Popen([str(c) for c in command], env=env, start_new_session=True, cwd=cwd,
                                   stdout=output, stderr=subprocess.STDOUT if output else None,
                                   preexec_fn=_terminate_with_parent)
        try:
            yield process
        finally:
            _stop(process)


def _terminate_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent dies (prctl PR_SET_PDEATHSIG)."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


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


def _step(name: str, command: list, env: dict[str, str], *, cwd: Path | None = None) -> None:
    print(f"== {name}", flush=True)
    result = subprocess.run([str(c) for c in command], env=env, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")


def _project_dir(data_dir: Path) -> Path:
    """Where `prefect deploy` runs: the current directory when it is a Prefect project (the
    repository), else the package's example triggers rendered into the data directory."""
    if Path("prefect.yaml").is_file():
        return Path.cwd()
    from prefect_cluster_triggers.deployments.render import render_prefect_yaml

    project = data_dir / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "prefect.yaml").write_text(render_prefect_yaml())
    return project


class _StackFile:
    """`stack.json`, replaced atomically on each update so a reader never sees half of it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.info: dict[str, Any] = {"pid": os.getpid(), "state": _STARTING}

    def update(self, **fields: Any) -> None:
        self.info.update(fields)
        staging = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        staging.write_text(json.dumps(self.info))
        os.replace(staging, self.path)


@contextmanager
def _stack_file() -> Iterator[_StackFile]:
    stack_file = _StackFile(get_settings().data_dir / "stack.json")
    stack_file.update()
    try:
        yield stack_file
    finally:
        stack_file.path.unlink(missing_ok=True)


def _stop_on_signals() -> None:
    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a stack started in the background inherits an ignored SIGINT. SIGHUP: its
    # terminal or SSH session closed.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)


def _port_busy(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _leftover_on(port: int, data_dir: Path) -> int | None:
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


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
