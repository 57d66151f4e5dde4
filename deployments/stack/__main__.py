"""The main job (`make run`): a local Prefect stack with the example triggers deployed.

Starts a Prefect server on SQLite (or uses `PREFECT_API_URL`), the REST API, a process work
pool and its worker, registers the blocks, makes demo collections when there are none,
deploys `prefect.yaml` (the current directory's, else the package's example triggers
rendered into the data directory), runs the new `start_immediately` examples once, prints
one `ready` line, and stays up until Ctrl-C, which stops everything it started. It says
where it is and whether it is ready in `stack.json` (`core.stack_file`).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from prefect_cluster_triggers.core.settings import get_settings
from prefect_cluster_triggers.core.stack_file import READY, running_stack, stack_file
from prefect_cluster_triggers.deployments.stack.processes import (
    BIN,
    api_server,
    create_work_pool,
    leftover_on,
    port_busy,
    prefect_server,
    step,
    worker,
)


def main() -> int:
    settings = get_settings()
    settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    running = running_stack()
    if running:
        print(f"a cluster-triggers stack is already {running['state']} (pid {running['pid']}): Prefect UI at "
              f"{running.get('ui_url', '(not up yet)')}; stop it with Ctrl-C in its terminal or `kill {running['pid']}`",
              file=sys.stderr)
        return 1
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    with ExitStack() as stack:
        _stop_on_signals()
        state = stack.enter_context(stack_file())
        api_url = os.environ.get("PREFECT_API_URL")
        ports = [("CLUSTER_TRIGGERS_API_PORT", settings.stack.api_port)]
        if not api_url:
            ports.append(("CLUSTER_TRIGGERS_PREFECT_PORT", settings.stack.prefect_port))
        for setting, port in ports:
            if port_busy(port):
                leftover = leftover_on(port, settings.storage.data_dir)
                print(f"port {port} is held by pid {leftover}, left over from an earlier `make run` of this data "
                      f"directory that was stopped before it could stop it; stop it with `kill {leftover}`"
                      if leftover else f"port {port} is in use by another program; set {setting} to a free port",
                      file=sys.stderr)
                return 1
        if not api_url:
            env["PREFECT_HOME"] = str(settings.storage.data_dir / "prefect")
            env["PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL"] = "0.5"  # `get` sees events at once
            api_url = stack.enter_context(prefect_server(settings.stack.prefect_port, env))
        env["PREFECT_API_URL"] = api_url
        ui_url = api_url.removesuffix("/api")
        state.update(api_url=api_url, ui_url=ui_url)
        api = stack.enter_context(api_server(settings.stack.api_port, {**env, "CLUSTER_TRIGGERS_HOLD_UNTIL_READY": "true"},
                                             log=settings.storage.data_dir / "api.log"))
        state.update(rest_url=api)  # the CLI's trigger commands go there, whatever port this shell set
        create_work_pool(settings.target.work_pool, env)
        step("blocks", [BIN / "prefect", "block", "register", "-m", "prefect_cluster_triggers.blocks"], env)
        step("demo data", [sys.executable, "-m", "prefect_cluster_triggers.deployments.stack.demo"], env)
        project = _project_dir(settings.storage.data_dir)
        step("deployments", [BIN / "prefect", "--no-prompt", "deploy", "--all"], env, cwd=project)
        stack.enter_context(worker(settings.target.work_pool, env, log=settings.storage.data_dir / "worker.log"))
        step("first runs of start_immediately triggers",
              [sys.executable, "-m", "prefect_cluster_triggers.deployments.stack.demo", "first-runs", project / "prefect.yaml"],
              env)
        state.update(state=READY)
        print(f"\nPrefect UI:  {ui_url}  (runs, schedules, automations, artifacts)\n"
              f"Triggers:    cluster-triggers ls   (in another shell; it finds this stack by itself)\n"
              f"Prefect CLI: {prefect_cli_line(api_url)}   (in another shell, before `prefect deploy`)\n"
              f"REST API:    {api}/v1/clusters/triggers   docs {api}/docs\n"
              f"             key: cluster-triggers keys create --namespace default\n"
              f"Logs:        {settings.storage.data_dir}/api.log, worker.log (flow runs)\n"
              f"Stop:        Ctrl-C\n\n"
              f"ready: every setup step has finished (pid {os.getpid()})", flush=True)
        while True:
            time.sleep(3600)
    return 0


def prefect_cli_line(api_url: str) -> str:
    """The shell line that points Prefect's own CLI at this stack: it never looks for one, and
    without an API URL `prefect deploy` starts a throw-away ephemeral server instead."""
    return f"export PREFECT_API_URL={api_url}"


def _project_dir(data_dir: Path) -> Path:
    """Where `prefect deploy` runs: the current directory when it is a Prefect project (the
    repository), else the package's example triggers rendered into the data directory."""
    if Path("prefect.yaml").is_file():
        return Path.cwd()
    from prefect_cluster_triggers.deployments.cli.render import render_prefect_yaml

    project = data_dir / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "prefect.yaml").write_text(render_prefect_yaml())
    return project


def _stop_on_signals() -> None:
    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a stack started in the background inherits an ignored SIGINT. SIGHUP: its
    # terminal or SSH session closed.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
