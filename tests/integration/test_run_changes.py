"""What changed between two runs of a trigger, through the real flow on a real worker: known moves, a split and
a new cluster named exactly by the REST API and the CLI, and found in the Prefect UI from the Deployments list.

The data: well-separated blobs A, B and C (C is two tight halves C1, C2), clustered with k-means, k = 3. Between
the runs, 10 documents of A move into B (same ids, new vectors), a new blob D is added, and the trigger's
cluster definition asks for k = 5: C splits into its halves, D is born.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import numpy as np
import pytest

from prefect_cluster_triggers.blocks.collections import open_collection
from prefect_cluster_triggers.core.contract import validate_request
from prefect_cluster_triggers.core.names import namespace_id_of
from prefect_cluster_triggers.deployments.service import commands, queries

pytestmark = pytest.mark.usefixtures("prefect_worker")

A, B = "team-a", "team-b"  # the `keys` fixture's namespaces
TRIGGER, DEFINITION, COLLECTION = "trg_moves", "cluster_moves", "col_moves"
_CENTRES = {"A": 10 * np.eye(8)[0], "B": 10 * np.eye(8)[1], "C1": 10 * np.eye(8)[2] + 3 * np.eye(8)[3],
            "C2": 10 * np.eye(8)[2] - 3 * np.eye(8)[3], "D": 10 * np.eye(8)[4]}
_SIZES = {"A": 100, "B": 100, "C1": 60, "C2": 60, "D": 80}
_MOVED = [f"A-{i}" for i in range(10)]


def _blob(name: str, rng: np.random.Generator, *, at: str | None = None) -> tuple[list[str], np.ndarray]:
    ids = [f"{name}-{i}" for i in range(_SIZES[name])]
    return ids, (_CENTRES[at or name] + rng.normal(scale=0.3, size=(len(ids), 8))).astype(np.float32)


def _define(cli, tmp_path: Path, n_clusters: int) -> None:
    (tmp_path / "definition.json").write_text(json.dumps({
        "cluster_id": DEFINITION, "collection_ids": [COLLECTION],
        "config": {"algorithm": "kmeans", "n_clusters": n_clusters, "normalize": False}}))
    done = cli("clusters", "create", str(tmp_path / "definition.json"), "--namespace", A)
    assert done.returncode == 0, done.stderr


def _execute(cli) -> str:
    ran = cli("execute", TRIGGER, "--wait", "--namespace", A)
    assert ran.returncode == 0, ran.stderr
    execution = json.loads(ran.stdout)
    assert execution["status"] == "completed", execution
    return execution["job_id"]


def _members(cli, run_id: str) -> dict[str, int]:
    shown = cli("results", run_id, "--members", "--namespace", A)
    assert shown.returncode == 0, shown.stderr
    return {m["id"]: m["cluster"] for m in json.loads(shown.stdout)["members"]}


def _cluster_of(members: dict[str, int], blob: str) -> int:
    found = {c for i, c in members.items() if i.startswith(f"{blob}-") and i not in _MOVED}
    assert len(found) == 1, (blob, found)
    return found.pop()


@pytest.fixture(scope="module")
def runs(cli, api: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The trigger's two runs: ids, and the cluster id of each blob in each run."""
    tmp_path = tmp_path_factory.mktemp("moves")
    rng = np.random.default_rng(7)
    collection = open_collection(COLLECTION, A)
    first = [_blob(name, rng) for name in ("A", "B", "C1", "C2")]
    collection.add_documents(np.concatenate([v for _, v in first]), ids=[i for ids, _ in first for i in ids])
    _define(cli, tmp_path, 3)
    queries.run_sync(commands.create_trigger(validate_request({
        "trigger_type": "cron", "schedule_config": {"cron_expression": "0 3 * * *"}, "cluster_id": DEFINITION,
        "description": "known moves"}), trigger_id=TRIGGER, namespace_id=namespace_id_of(A)))
    run_1 = _execute(cli)
    members_1 = _members(cli, run_1)

    ids, vectors = _blob("A", rng, at="B")  # the first 10 documents of A now sit in B
    collection.add_documents(vectors[:10], ids=_MOVED)
    ids, vectors = _blob("D", rng)
    collection.add_documents(vectors, ids=ids)
    _define(cli, tmp_path, 5)
    run_2 = _execute(cli)
    members_2 = _members(cli, run_2)
    _wait_for_state_line(executions=2)
    return {"run_1": run_1, "run_2": run_2,
            "first": {b: _cluster_of(members_1, b) for b in ("A", "B", "C1", "C2")},
            "second": {b: _cluster_of(members_2, b) for b in ("A", "B", "C1", "C2", "D")}}


def _wait_for_state_line(executions: int, timeout: float = 60) -> None:
    """Until the deployment's state line links the latest version of the trigger's page, which counts `executions`."""
    import time

    from prefect.client.orchestration import get_client

    from prefect_cluster_triggers.deployments.prefect_objects.translate import FLOW_NAME, state_line_of
    from prefect_cluster_triggers.deployments.service.dashboard import artifact_key

    async def linked() -> bool:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(f"{FLOW_NAME}/{TRIGGER}")
            found = (await client.request("POST", "/artifacts/latest/filter", json={
                "artifacts": {"key": {"any_": [artifact_key(TRIGGER)]}}})).json()
        line = state_line_of(deployment.description) or ""
        return bool(found) and f"/artifacts/artifact/{found[0]['latest_id']})" in line and \
            f"| executions | {executions}, " in found[0]["data"]

    deadline = time.monotonic() + timeout
    while not queries.run_sync(linked()):
        assert time.monotonic() < deadline, "the state line does not link the latest page"
        time.sleep(1)


def _get(api: str, key: str, namespace: str, path: str) -> httpx.Response:
    return httpx.get(f"{api}/v1/clusters/triggers{path}", timeout=60,
                     headers={"Authorization": f"Bearer {key}", "X-Namespace": namespace})


def test_the_change_report_names_the_moves_the_split_and_the_new_cluster(cli, api: str, keys: dict[str, str],
                                                                         runs: dict) -> None:
    first, second = runs["first"], runs["second"]
    c = first["C1"]
    assert first["C2"] == c and len(set(first.values())) == 3  # C was one cluster
    halves = (second["C1"], second["C2"])
    assert c in halves and len(set(second.values())) == 5  # one half keeps C's id, the other is new
    new_half = next(h for h in halves if h != c)
    moved_half = "C1" if second["C1"] == new_half else "C2"

    answer = _get(api, keys[A], A, f"/{TRIGGER}/executions/{runs['run_2']}/changes")
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["run_id"] == runs["run_2"] and report["previous_run_id"] == runs["run_1"]
    assert report["documents"] == {"previous": 320, "current": 400, "common": 320, "added": 80, "removed": 0,
                                   "moved": 70, "duplicates_ignored": 0}
    assert report["move_counts"] == [{"from": c, "to": new_half, "documents": 60},
                                     {"from": first["A"], "to": second["B"], "documents": 10}]
    assert {m["id"] for m in report["moved"] if m["from"] == first["A"]} == set(_MOVED)
    assert {m["id"] for m in report["moved"] if m["from"] == c} == {f"{moved_half}-{i}" for i in range(60)}
    assert report["split"] == [{"cluster": c, "into": sorted(halves), "shares": [0.5, 0.5]}]
    assert report["born"] == [second["D"]]
    assert report["merged"] == [] and report["vanished"] == []
    assert {(p["previous"], p["current"]) for p in report["continued"]} == {(first["A"], second["A"]),
                                                                            (first["B"], second["B"])}

    shown = cli("results", runs["run_2"], "--changes", "--namespace", A)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == report

    # A first run has a defined answer: nothing before it, every cluster born, every document added.
    opening = _get(api, keys[A], A, f"/{TRIGGER}/executions/{runs['run_1']}/changes").json()
    assert opening["previous_run_id"] is None and sorted(opening["born"]) == sorted(set(first.values()))
    assert opening["documents"]["added"] == 320 and opening["moved_total"] == 0


def test_another_namespace_gets_the_answer_of_a_missing_run(cli, api: str, keys: dict[str, str], runs: dict) -> None:
    path = f"/{TRIGGER}/executions/{runs['run_2']}/changes"
    theirs = _get(api, keys[B], B, path)
    missing = _get(api, keys[B], B, f"/{TRIGGER}/executions/00000000-0000-4000-8000-000000000000/changes")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()
    assert _get(api, keys[A], A, f"/{TRIGGER}/executions/..%2F..%2Fetc/changes").status_code == 404
    cli_theirs = cli("results", runs["run_2"], "--changes", "--namespace", B)
    cli_missing = cli("results", "00000000-0000-4000-8000-000000000000", "--changes", "--namespace", B)
    assert cli_theirs.returncode == cli_missing.returncode != 0
    assert cli_theirs.stderr.replace(runs["run_2"], "X") == cli_missing.stderr.replace(
        "00000000-0000-4000-8000-000000000000", "X")


def test_the_run_logs_one_line_of_what_it_did(runs: dict) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async def lines() -> list[str]:
        async with get_client() as client:
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[runs["run_2"]])))
            return [log.message for log in logs]

    assert f"400 documents → 5 clusters, 70 moved since run {runs['run_1']}" in " ".join(queries.run_sync(lines()))



def _follow(link) -> object:
    """Click a link the Prefect UI opens in a new tab (its markdown links do); the new tab, loaded."""
    with link.page.context.expect_page(timeout=60_000) as opened:
        link.click()
    page = opened.value
    page.wait_for_load_state("networkidle", timeout=120_000)
    return page


def _drawn_charts(page) -> int:
    return page.evaluate("() => [...document.querySelectorAll('img')].filter(i => i.src.startsWith("
                         "'data:image/svg+xml') && i.complete && i.naturalWidth > 0).length")


def test_from_the_deployments_list_the_state_trends_and_changes_are_clicks_away(prefect_api: str, runs: dict, browser,
                                                                               tmp_path: Path) -> None:
    """Deployments list -> the trigger's deployment -> (its Description tab) -> one click on `state` -> the page;
    from there the trends chart and the change report of its last run."""
    root = prefect_api.removesuffix("/api")
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    shots = tmp_path / "shots"
    shots.mkdir()
    try:
        page.goto(f"{root}/deployments", wait_until="networkidle", timeout=120_000)
        # The list shows 10 deployments a page; with the session's other triggers, find it as a user would.
        page.get_by_placeholder("Search deployments").fill(TRIGGER)
        page.get_by_role("link", name=TRIGGER, exact=True).first.click(timeout=60_000)
        page.wait_for_url(re.compile(r".*/deployments/deployment/.*"), timeout=60_000)
        page.get_by_text("Description", exact=True).first.click(timeout=60_000)  # Prefect 3.9 shows it in a tab
        state = page.get_by_role("link", name="state", exact=True)
        state.wait_for(timeout=120_000)  # the sweep writes the line within a few seconds
        page.screenshot(path=str(shots / "deployment.png"), full_page=True)
        page = _follow(state)  # the UI opens a description's links in a new tab
        assert "/artifacts/artifact/" in page.url
        page.get_by_text(f"Cluster trigger {TRIGGER}").first.wait_for(timeout=60_000)
        page.get_by_text("executions").first.wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "state.png"), full_page=True)
        state_text = page.inner_text("body")
        assert "2, 0 failed in a row" in state_text and runs["run_2"][:8] in state_text
        state_page = page

        page = _follow(state_page.get_by_role("link", name="trends", exact=True).first)
        assert "/artifacts/key/cluster-trends-" in page.url
        page.get_by_role("link", name=re.compile(r"^[0-9a-f]{8}$")).first.click()  # the latest version
        page.wait_for_function("() => [...document.querySelectorAll('img')].filter(i => i.src.startsWith("
                               "'data:image/svg+xml') && i.complete && i.naturalWidth > 0).length >= 3",
                               timeout=60_000)
        page.screenshot(path=str(shots / "trends.png"), full_page=True)
        assert "Trends of cluster trigger" in page.inner_text("body") and _drawn_charts(page) >= 3

        page = _follow(state_page.get_by_role("link", name="changes in each run", exact=True).first)
        assert "/artifacts/key/cluster-changes-" in page.url
        page.get_by_text("70 moved, 80 added, 0 removed, 1 born").first.wait_for(timeout=60_000)  # the latest's line
        page.get_by_role("link", name=re.compile(r"^[0-9a-f]{8}$")).first.click()
        page.get_by_text("Changes since the previous run").first.wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "changes.png"), full_page=True)
        assert "1 split" in page.inner_text("body")
    finally:
        for opened in page.context.pages:
            opened.close()


def test_each_run_publishes_a_picture_of_its_clusters(runs: dict) -> None:
    """The run's fit sample on its two main axes: one version of `cluster-picture-<id>` per run, an SVG image."""
    import asyncio

    from prefect.client.orchestration import get_client

    from prefect_cluster_triggers.deployments.service.run_pages import picture_key

    async def pictures() -> list[dict]:
        async with get_client() as client:
            return (await client.request("POST", "/artifacts/filter", json={
                "artifacts": {"key": {"any_": [picture_key(TRIGGER)]}}})).json()

    found = asyncio.run(pictures())
    assert sorted(a["flow_run_id"] for a in found) == sorted([runs["run_1"], runs["run_2"]])
    assert all(a["type"] == "markdown" and "](data:image/svg+xml;base64," in a["data"] for a in found)
