"""`make run` on a port other than 4200, seen the way a new user sees it (issue 22, items 1 and 3).

One stack for the module, started as `make run` starts it, with a fresh home and free ports:
its Prefect UI must talk to its own server (`/ui-settings`, then the Deployments page in
headless Chromium), and the README's `prefect deploy` commands, run from a folder outside
the repository in a shell that knows nothing but the line `make run` printed, must deploy
into it rather than into a throw-away ephemeral server.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, NamedTuple

import httpx
import pytest

from prefect_cluster_triggers.deployments.cli.render import EXAMPLE_TRIGGERS, trigger_files
from prefect_cluster_triggers.deployments.prefect_objects.translate import user_description
from prefect_cluster_triggers.deployments.stack.processes import free_port
from tests.integration._users import fresh_env

REPOSITORY = Path(__file__).parents[2]
READY_TIMEOUT = 600  # a first start on a busy 2-core machine


class Stack(NamedTuple):
    prefect_port: int
    api_url: str
    output: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`make run`'s stack on free ports (never 4200), from the repository as `make run` runs it; up to `ready:`."""
    tmp = tmp_path_factory.mktemp("stack")
    prefect_port = free_port()
    env = fresh_env(tmp / "home", CLUSTER_TRIGGERS_PREFECT_PORT=str(prefect_port),
                    CLUSTER_TRIGGERS_API_PORT=str(free_port()))
    output = tmp / "stack.log"
    with open(output, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "prefect_cluster_triggers.deployments.stack"], env=env,
                                   cwd=REPOSITORY, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while "\nready: " not in output.read_text():
            assert process.poll() is None, f"the stack exited:\n{output.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no ready line after {READY_TIMEOUT} s:\n{output.read_text()[-3000:]}"
            time.sleep(1)
        yield Stack(prefect_port, f"http://127.0.0.1:{prefect_port}/api", output)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)


def test_the_ui_of_a_stack_on_another_port_shows_its_own_deployments(stack: Stack, browser) -> None:
    assert stack.prefect_port != 4200
    settings = httpx.get(f"http://127.0.0.1:{stack.prefect_port}/ui-settings", timeout=30).json()
    assert settings["api_url"] == stack.api_url

    names = [path.name.rsplit(".", 1)[0] for path in trigger_files()]
    api_hosts: set[str] = set()
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    try:
        page.on("request", lambda request: api_hosts.add(request.url.split("/api/")[0])
                if "/api/" in request.url else None)
        page.goto(f"http://127.0.0.1:{stack.prefect_port}/deployments", wait_until="networkidle", timeout=120_000)
        for name in names:  # the list renders after its data arrives
            page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
    finally:
        page.close()
    assert api_hosts == {f"http://127.0.0.1:{stack.prefect_port}"}  # no request to another server's API


def test_the_readme_prefect_deploy_commands_deploy_from_a_users_own_folder(stack: Stack, tmp_path: Path) -> None:
    commands = _readme_deploy_commands()
    printed = re.search(r"export PREFECT_API_URL=\S+", stack.output.read_text())
    assert printed, "make run prints no `export PREFECT_API_URL=` line"
    readme_export = next(line for line in commands if line.startswith("export PREFECT_API_URL="))
    # The README shows the line for the default port; the user pastes the one their `make run` printed.
    assert readme_export.split("#")[0].strip() == printed.group(0).replace(str(stack.prefect_port), "4200")
    script = "\n".join(printed.group(0) if line == readme_export else line for line in commands)

    triggers = tmp_path / "my-project" / "triggers"
    triggers.mkdir(parents=True)
    body = json.loads((EXAMPLE_TRIGGERS / "daily-kmeans-cron.json").read_text())
    (triggers / "team-nightly.json").write_text(json.dumps({**body, "description": "the team's own trigger"}))
    # A fresh shell where the package is installed (the README: `source .venv/bin/activate`), nothing else.
    env = {**fresh_env(tmp_path / "home"), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "ephemeral" not in done.stdout + done.stderr

    header = (tmp_path / "my-project" / "prefect.yaml").read_text().split("\nname:")[0]
    assert "(triggers/)" in header
    found = httpx.post(f"{stack.api_url}/deployments/filter", timeout=30,
                       json={"deployments": {"name": {"any_": ["team-nightly"]}}}).json()
    # Below the state line the sweep may have written above it already.
    assert [user_description(d["description"]) for d in found] == ["the team's own trigger"]


def _readme_deploy_commands() -> list[str]:
    """The shell lines of the README's `prefect deploy` section, in order, comments kept."""
    section = (REPOSITORY / "README.md").read_text().split("### `prefect deploy`", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]
