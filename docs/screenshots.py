"""Screenshots of the Prefect UI of a running `make run` stack: what a data team sees of its triggers there.

Needs the stack up (`make run` in another shell), Chromium (`apt-get install chromium`) and
Playwright's Python package (`.venv/bin/pip install -e '.[docs]'`); Playwright drives the
system's Chromium, nothing is downloaded.

Adds 200 documents on a new topic to `col_abc123` with the CLI (as a user would: the event
trigger `hundred-documents-event` fires on them), tells that trigger that 40 more documents were
added, runs the interval trigger `hourly-cluster-definition-interval` once more (a second run
on the changed collection, so its change report shows the documents added since), waits
until the pages show all that, then saves into `--output`:

* `deployments.png`: the triggers as Prefect deployments, with their tags;
* `deployment-state-line.png`: the event trigger's deployment, its Description tab: the state line;
* `event-trigger-page.png`: the event trigger's page (status, counter 40 / 100, cooldown);
* `conditional-trigger-page.png`: the conditional trigger's page (its last measurement);
* `trends.png`, `changes.png`: the interval trigger's trends and what changed in its last run;
* `artifacts.png`: every trigger's pages among Prefect's artifacts.

    .venv/bin/python docs/screenshots.py [--output docs/screenshots]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

_CHROMIUM = "/usr/bin/chromium"
# Chromium's own background connections are refused on a closed network; keep it to the page.
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync"]
_EVENT, _CONDITIONAL, _RAN = "hundred-documents-event", "drift-conditional", "hourly-cluster-definition-interval"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "screenshots")
    args = parser.parse_args()
    from prefect_cluster_triggers.core.stack_file import running_stack

    stack = running_stack()
    if not stack or stack.get("state") != "ready":
        print("no ready `make run` stack for this data directory: start one in another shell", file=sys.stderr)
        return 1
    os.environ["PREFECT_API_URL"] = stack["api_url"]
    import subprocess

    from prefect_cluster_triggers.blocks.collection_events import notify_collection
    from prefect_cluster_triggers.deployments.service.dashboard import artifact_key
    from prefect_cluster_triggers.deployments.service.run_pages import changes_key, trends_key

    cli = str(Path(sys.executable).with_name("cluster-triggers"))
    _add_a_topic(cli, "col_abc123")
    _wait_for_page(artifact_key(_EVENT), "| executions | 1,", retaken="| executions | ")  # it fired on them
    notify_collection("col_abc123", "documents_added", count=40, flush=True)
    ran = subprocess.run([cli, "execute", _RAN, "--wait"], capture_output=True, text=True)
    if ran.returncode:
        raise SystemExit(f"running {_RAN} failed: {ran.stderr}")
    event_page = _wait_for_page(artifact_key(_EVENT), "| event counter | 40 / 100 |", retaken="| event counter | ")
    conditional_page = _wait_for_page(artifact_key(_CONDITIONAL), "| last measurement |")
    trends = _wait_for_page(trends_key(_RAN), "Trends of cluster trigger")
    changes = _wait_for_page(changes_key(_RAN), "compared with the previous run")
    deployment = _deployment_id(_EVENT)
    args.output.mkdir(parents=True, exist_ok=True)
    _shoot(stack["ui_url"], args.output, {
        "deployments.png": "/deployments",
        "deployment-state-line.png": f"/deployments/deployment/{deployment}?tab=Description",
        "event-trigger-page.png": f"/artifacts/artifact/{event_page}",
        "conditional-trigger-page.png": f"/artifacts/artifact/{conditional_page}",
        "trends.png": f"/artifacts/artifact/{trends}",
        "changes.png": f"/artifacts/artifact/{changes}",
        "artifacts.png": "/artifacts",
    })
    return 0


def _add_a_topic(cli: str, collection_id: str, n: int = 200) -> None:
    """`n` documents around a new centre, added through the CLI (ids of their own: a second call replaces them)."""
    import json
    import subprocess
    import tempfile

    import numpy as np

    listed = subprocess.run([cli, "collections", "ls", "--json"], capture_output=True, text=True, check=True)
    dim = next(c["dimension"] for c in json.loads(listed.stdout)["collections"] if c["collection_id"] == collection_id)
    rng = np.random.default_rng(7)
    folder = Path(tempfile.mkdtemp(prefix="screenshots-"))
    np.save(folder / "topic.npy", (rng.normal(scale=8.0, size=dim) + rng.normal(size=(n, dim))).astype(np.float32))
    (folder / "ids.txt").write_text("".join(f"{collection_id}-topic-{i}\n" for i in range(n)))
    subprocess.run([cli, "collections", "add", collection_id, "--vectors", str(folder / "topic.npy"),
                    "--ids", str(folder / "ids.txt")], capture_output=True, text=True, check=True)


def _deployment_id(trigger_id: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return str(client.read_deployment_by_name(f"cluster-collection/{trigger_id}").id)


def _wait_for_page(key: str, wanted: str, timeout: float = 120, *, retaken: str | None = None) -> str:
    """The id of the latest version of artifact `key` once it shows `wanted` (or, when the stack's screenshots
    were taken before and the page moved on, `retaken` once `timeout` has passed)."""
    from prefect.client.orchestration import get_client

    async def latest() -> tuple[str, str]:
        async with get_client() as client:
            response = await client.request("POST", "/artifacts/latest/filter",
                                            json={"artifacts": {"key": {"any_": [key]}}})
            found = response.json()
            return (found[0]["latest_id"], found[0]["data"]) if found else ("", "")

    deadline = time.monotonic() + timeout
    while wanted not in (page := asyncio.run(latest()))[1]:
        if time.monotonic() > deadline:
            if retaken and retaken in page[1]:
                return page[0]
            raise SystemExit(f"artifact {key} does not show {wanted!r} after {timeout:.0f} s")
        time.sleep(1)
    return page[0]


def _shoot(ui: str, output: Path, paths: dict[str, str]) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_CHROMIUM, args=_FLAGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        for name, path in paths.items():
            url = f"{ui}{path}"
            page.goto(url, wait_until="networkidle")
            page.wait_for_timeout(1500)  # the UI renders after its data arrives
            page.screenshot(path=str(output / name), full_page=True)
            print(f"{output / name}  ({url})")
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
