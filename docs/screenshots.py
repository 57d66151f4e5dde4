"""Screenshots of the Prefect UI of a running `make run` stack: what a data team sees of its triggers there.

Needs the stack up (`make run` in another shell), Chromium (`apt-get install chromium`) and
Playwright's Python package (`.venv/bin/pip install -e '.[docs]'`); Playwright drives the
system's Chromium, nothing is downloaded.

Tells the example event trigger (`hundred-documents-event`) that 40 documents were added to
its collection, waits until its page shows them, then saves into `--output`:

* `deployments.png`: the triggers as Prefect deployments, with their tags;
* `event-trigger-page.png`: the event trigger's page (status, counter 40 / 100, cooldown);
* `conditional-trigger-page.png`: the conditional trigger's page (its last measurement);
* `artifacts.png`: every trigger's page among Prefect's artifacts.

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
_EVENT, _CONDITIONAL = "hundred-documents-event", "drift-conditional"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "screenshots")
    args = parser.parse_args()
    from prefect_cluster_triggers.deployments.stack import running_stack

    stack = running_stack()
    if not stack or stack.get("state") != "ready":
        print("no ready `make run` stack for this data directory: start one in another shell", file=sys.stderr)
        return 1
    os.environ["PREFECT_API_URL"] = stack["api_url"]
    from prefect_cluster_triggers.blocks.collection_events import notify_collection

    notify_collection("col_abc123", "documents_added", count=40, flush=True)
    event_page = _wait_for_page(_EVENT, "| event counter | 40 / 100 |")
    conditional_page = _wait_for_page(_CONDITIONAL, "| last measurement |")
    args.output.mkdir(parents=True, exist_ok=True)
    _shoot(stack["ui_url"], args.output, event_page, conditional_page)
    return 0


def _wait_for_page(trigger_id: str, wanted: str, timeout: float = 120) -> str:
    """The id of the trigger's latest page once it shows `wanted`."""
    from prefect.client.orchestration import get_client

    from prefect_cluster_triggers.deployments.dashboard import artifact_key

    async def latest() -> tuple[str, str]:
        async with get_client() as client:
            response = await client.request("POST", "/artifacts/latest/filter",
                                            json={"artifacts": {"key": {"any_": [artifact_key(trigger_id)]}}})
            found = response.json()
            return (found[0]["latest_id"], found[0]["data"]) if found else ("", "")

    deadline = time.monotonic() + timeout
    while wanted not in (page := asyncio.run(latest()))[1]:
        if time.monotonic() > deadline:
            raise SystemExit(f"the page of {trigger_id} does not show {wanted!r} after {timeout:.0f} s")
        time.sleep(1)
    return page[0]


def _shoot(ui: str, output: Path, event_page: str, conditional_page: str) -> None:
    from playwright.sync_api import sync_playwright

    pages = {
        "deployments.png": f"{ui}/deployments",
        "event-trigger-page.png": f"{ui}/artifacts/artifact/{event_page}",
        "conditional-trigger-page.png": f"{ui}/artifacts/artifact/{conditional_page}",
        "artifacts.png": f"{ui}/artifacts",
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_CHROMIUM, args=_FLAGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        for name, url in pages.items():
            page.goto(url, wait_until="networkidle")
            page.wait_for_timeout(1500)  # the UI renders after its data arrives
            page.screenshot(path=str(output / name), full_page=True)
            print(f"{output / name}  ({url})")
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
