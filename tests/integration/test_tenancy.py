"""Trust between namespaces and in what is stored: a live REST API, CLI and worker on 127.0.0.1.

Namespace B, given namespace A's collection, cluster definition or results ids, gets exactly
what it gets for ids that exist nowhere; a trigger whose stored record stops validating
breaks nothing else; a refused create leaves nothing behind; the API keeps Prefect's
answers and oversized bodies to itself.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentUpdate
from prefect.exceptions import ObjectNotFound

from prefect_cluster_triggers.blocks.collections import open_collection
from prefect_cluster_triggers.core.contract import validate_request
from prefect_cluster_triggers.core.names import prefect_name
from prefect_cluster_triggers.deployments.api.keys import KeyStore
from prefect_cluster_triggers.deployments.prefect_objects import records
from prefect_cluster_triggers.deployments.prefect_objects.translate import FLOW_NAME
from prefect_cluster_triggers.deployments.service import commands, queries

pytestmark = pytest.mark.usefixtures("prefect_worker")

A, B = "tenant-a", "tenant-b"
KMEANS = {"algorithm": "kmeans", "n_clusters": 3}


@pytest.fixture(scope="module")
def keys(api: str) -> dict[str, str]:
    store = KeyStore()
    return {name: store.create([name], created_by=f"{name}-owner")[0] for name in (A, B)}


@pytest.fixture(scope="module")
def a_data(cli, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Namespace A's collection, cluster definition and ad-hoc results."""
    rng = np.random.default_rng(21)
    open_collection("col_ten_a1", A).add_documents(rng.normal(size=(300, 8)) + rng.integers(0, 3, (300, 1)) * 6,
                                                   ids=[f"a{i}" for i in range(300)])
    folder = tmp_path_factory.mktemp("tenant-a")
    definition = folder / "cluster.json"
    definition.write_text(json.dumps({"cluster_id": "cluster_ten_a1", "collection_ids": ["col_ten_a1"], "config": KMEANS}))
    assert cli("clusters", "create", str(definition), "--namespace", A).returncode == 0
    request = folder / "request.json"
    request.write_text(json.dumps({"trigger_type": "interval", "schedule_config": {"interval_seconds": 3600},
                                   "cluster_id": "cluster_ten_a1"}))
    ran = cli("cluster", str(request), "--namespace", A)
    assert ran.returncode == 0, ran.stderr
    return {"collection": "col_ten_a1", "cluster": "cluster_ten_a1", "results": "cluster_ten_a1"}


def _client(api: str, key: str, namespace: str) -> httpx.Client:
    return httpx.Client(base_url=f"{api}/v1/clusters", timeout=60,
                        headers={"Authorization": f"Bearer {key}", "X-Namespace": namespace})


def _same(answers: tuple[Any, Any], ids: tuple[str, str]) -> None:
    """Two answers equal once each one's own id (and its block-name form) is replaced by a placeholder."""
    first, second = (json.dumps(a, sort_keys=True).replace(prefect_name(i), "<ID>").replace(i, "<ID>")
                     for a, i in zip(answers, ids))
    assert first == second


def _comparable(trigger: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in trigger.items() if k not in ("trigger_id", "created_at", "updated_at", "next_scheduled_at")}


def _wait(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while not done(value := read()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out: {value}")
        time.sleep(1)
    return value


def test_another_namespaces_ids_answer_like_missing_ones(api: str, keys: dict[str, str], a_data: dict[str, str],
                                                         cli, tmp_path: Path) -> None:
    missing = {"collection": "col_ten_none", "cluster": "cluster_ten_none", "results": "cluster_ten_none"}
    with _client(api, keys[B], B) as b:
        # A trigger on a collection, and one on a cluster definition: created the same, run the same.
        for kind, body in (("collection", lambda c: {"execution_config": {"collection_ids": [c], "config": KMEANS}}),
                           ("cluster", lambda c: {"cluster_id": c})):
            created = [b.post("/triggers", json={"trigger_type": "interval", "schedule_config": {"interval_seconds": 3600},
                                        **body(ids[kind])}) for ids in (a_data, missing)]
            assert [r.status_code for r in created] == [200, 200]
            _same(tuple(_comparable(r.json()) for r in created), (a_data[kind], missing[kind]))
            runs = [b.post(f"/triggers/{r.json()['trigger_id']}/execute").json()["job_id"] for r in created]
            ended = [_wait(lambda t=r.json()["trigger_id"]: b.post(f"/triggers/{t}/history").json(),
                           lambda h: h["executions"] and h["executions"][0]["status"] == "failed") for r in created]
            assert [h["executions"][0]["job_id"] for h in ended] == runs
            _same(tuple(h["executions"][0]["error"] for h in ended), (a_data[kind], missing[kind]))
            assert all(h["executions"][0]["num_documents"] is None for h in ended)

        # A conditional trigger on A's collection checks and runs as one on a missing collection does
        # (no clustering yet: the first check fires; the run fails, not found).
        volume = {"condition_type": "volume", "metric": "document_growth", "threshold": 0.5, "check_interval_seconds": 60}
        created = [b.post("/triggers", json={"trigger_type": "conditional", "schedule_config": volume,
                                             "execution_config": {"collection_ids": [ids["collection"]], "config": KMEANS}})
                   for ids in (a_data, missing)]
        assert [r.status_code for r in created] == [200, 200]
        checked = [_wait(lambda t=r.json()["trigger_id"]: b.get(f"/triggers/{t}").json(),
                         lambda t: t["last_execution_status"] == "failed", timeout=180) for r in created]
        shown = ("last_execution_error", "last_check_error", "last_measurement")
        _same(tuple({k: t[k] for k in shown} for t in checked), (a_data["collection"], missing["collection"]))
        for r in created:
            assert b.post(f"/triggers/{r.json()['trigger_id']}/pause").status_code == 200

    # The CLI in namespace B: results, deletes and ad-hoc runs of A's ids are those of missing ids.
    for command, kind in ((("results",), "results"), (("collections", "delete"), "collection")):
        extra = ("--id", "a1") if kind == "collection" else ()
        answers = [cli(*command, ids[kind], *extra, "--namespace", B) for ids in (a_data, missing)]
        assert [a.returncode for a in answers] == [2, 2]
        _same(tuple(a.stderr for a in answers), (a_data[kind], missing[kind]))
    ran = []
    for ids in (a_data, missing):
        request = tmp_path / f"{ids['cluster']}.json"
        request.write_text(json.dumps({"trigger_type": "interval", "schedule_config": {"interval_seconds": 3600},
                                       "cluster_id": ids["cluster"]}))
        ran.append(cli("cluster", str(request), "--namespace", B))
    assert [r.returncode for r in ran] == [1, 1]
    said = tuple(re.sub(r"run \S+ ", "run ", r.stderr.strip().splitlines()[-1]) for r in ran)  # the run's logs come first
    _same(said, (a_data["cluster"], missing["cluster"]))

    # A's data is untouched and still A's.
    assert open_collection("col_ten_a1", A).count() == 300
    assert cli("results", "cluster_ten_a1", "--namespace", A).returncode == 0


def test_a_namespaces_collection_events_count_for_its_own_triggers_only(api: str, keys: dict[str, str]) -> None:
    from prefect_cluster_triggers.blocks.collection_events import notify_collection

    event = {"trigger_type": "event", "execution_config": {"collection_ids": ["col_ten_events"], "config": KMEANS},
             "schedule_config": {"event_type": "documents_added", "event_threshold": 1000,
                                 "collection_id": "col_ten_events", "cooldown_seconds": 0}}
    with _client(api, keys[A], A) as a, _client(api, keys[B], B) as b:
        mine, theirs = (client.post("/triggers", json=event).json()["trigger_id"] for client in (a, b))
        time.sleep(3)  # the evaluator's sweep makes both automations
        notify_collection("col_ten_events", "documents_added", count=7, namespace=A, flush=True)
        assert _wait(lambda: a.get(f"/triggers/{mine}").json()["event_counter"], lambda n: n == 7) == 7
        time.sleep(3)
        assert b.get(f"/triggers/{theirs}").json()["event_counter"] == 0


def _break(trigger_id: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Edit the stored record as the Prefect UI (or a Prefect that dropped a NaN) can."""

    async def edit() -> None:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(f"{FLOW_NAME}/{trigger_id}")
            parameters = json.loads(json.dumps(deployment.parameters))
            change(parameters["trigger"])
            await client.update_deployment(deployment.id, DeploymentUpdate(parameters=parameters))

    queries.run_sync(edit())


def test_a_stored_trigger_that_no_longer_validates_breaks_nothing(api: str, keys: dict[str, str], cli) -> None:
    conditional = {"trigger_type": "conditional", "execution_config": {"collection_ids": ["col_x"], "config": KMEANS},
                   "schedule_config": {"condition_type": "drift", "metric": "cosine_drift", "threshold": 0.2,
                                       "check_interval_seconds": 3600}}
    with _client(api, keys[A], A) as a:
        broken, other, doomed = (a.post("/triggers", json=conditional).json()["trigger_id"] for _ in range(3))
        for trigger_id in (broken, doomed):
            _break(trigger_id, lambda t: t["request"]["schedule_config"].update(threshold=None))

        listed = a.post("/triggers/list", json={"limit": 1000})
        assert listed.status_code == 200, listed.text
        shown = {t["trigger_id"]: t for t in listed.json()["results"]}
        assert shown[other]["status"] == "active" and shown[other]["stored_problem"] is None
        assert shown[broken]["status"] == "failed"
        assert "schedule_config.threshold" in shown[broken]["stored_problem"]
        assert shown[broken]["schedule_config"]["threshold"] is None

        assert a.get(f"/triggers/{broken}").json()["stored_problem"] == shown[broken]["stored_problem"]
        assert a.post(f"/triggers/{broken}/execute").status_code == 409
        assert a.post(f"/triggers/{broken}/resume").status_code == 409
        paused = a.post(f"/triggers/{broken}/pause")
        assert paused.status_code == 200 and paused.json()["status"] == "paused", paused.text
        fixed = a.patch(f"/triggers/{broken}", json={"schedule_config": {**conditional["schedule_config"], "threshold": 0.3}})
        assert fixed.status_code == 200, fixed.text
        assert fixed.json()["stored_problem"] is None and fixed.json()["schedule_config"]["threshold"] == 0.3
        assert a.post(f"/triggers/{broken}/resume").json()["status"] == "active"

        deleted = a.delete(f"/triggers/{doomed}")
        assert deleted.status_code == 200 and deleted.json()["status"] == "disabled", deleted.text
    listing = cli("ls", "--namespace", A)
    assert listing.returncode == 0 and "Traceback" not in listing.stderr, listing.stderr


def test_a_refused_create_leaves_no_deployment(prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever fails after the deployment exists, the create takes it back (and its quota slot)."""
    async def lost(*_: Any, **__: Any) -> None:
        raise httpx.ConnectError("the Prefect API went away mid-create")

    monkeypatch.setattr(records, "save", lost)
    request = validate_request({"trigger_type": "event", "execution_config": {"collection_ids": ["c"], "config": KMEANS},
                                "schedule_config": {"event_type": "documents_added", "event_threshold": 5,
                                                    "collection_id": "c"}})
    with pytest.raises(httpx.ConnectError):
        queries.run_sync(commands.create_trigger(request, trigger_id="trg_refused", namespace_id="tenant-refused"))
    monkeypatch.undo()

    async def left() -> tuple[bool, int]:
        async with get_client() as client:
            try:
                await client.read_deployment_by_name(f"{FLOW_NAME}/trg_refused")
            except ObjectNotFound:
                exists = False
            else:
                exists = True
            automations = await client.read_automations_by_name("cluster-trigger-trg_refused")
            return exists, len(automations)

    assert queries.run_sync(left()) == (False, 0)
    created = queries.run_sync(commands.create_trigger(request, trigger_id="trg_refused", namespace_id="tenant-refused"))
    assert created.trigger_id == "trg_refused"


def test_the_api_keeps_prefect_and_big_bodies_to_itself(api: str, keys: dict[str, str]) -> None:
    with _client(api, keys[A], A) as a:
        huge = a.post("/triggers", content=b'{"description": "' + b"x" * 300_000 + b'"}',
                      headers={"Content-Type": "application/json"})
        assert huge.status_code == 413 and "bytes" in huge.json()["detail"]
        chunked = a.post("/triggers", content=iter([b'{"description": "', b"x" * 300_000, b'"}']),
                         headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413
        unknown = a.post("/triggers/list", json={"limit": 5, "colour": "red"})
        assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == "colour"
        deep = a.post("/triggers/list", json={"offset": 2**63})
        assert deep.status_code == 422 and deep.json()["detail"][0]["loc"] == "offset"
        trigger_id = a.post("/triggers", json={"trigger_type": "interval", "schedule_config": {"interval_seconds": 3600},
                                      "execution_config": {"collection_ids": ["c"], "config": KMEANS}}).json()["trigger_id"]
        history = a.post(f"/triggers/{trigger_id}/history", json={"offset": 2**63})
        assert history.status_code == 422 and history.json()["detail"][0]["loc"] == "offset"
        assert "127.0.0.1" not in history.text and "/api/" not in history.text


def test_data_from_before_namespaces_is_given_to_one_namespace(cli, tmp_path: Path) -> None:
    from prefect_cluster_triggers.blocks.cluster_definition import ClusterDefinition, load_cluster_definition
    from prefect_cluster_triggers.blocks.collections import LanceCollection, load_collection
    from prefect_cluster_triggers.blocks.result_store import default_result_store
    from prefect_cluster_triggers.core.settings import get_settings

    legacy = LanceCollection(collection_id="col_ten_legacy", uri=str(tmp_path / "collections"), table="col-ten-legacy")
    legacy.save(prefect_name("col_ten_legacy"))  # the name every namespace used to read
    legacy.add_documents(np.ones((4, 3)), ids=list("abcd"))
    ClusterDefinition(cluster_id="cluster_ten_legacy", collection_ids=["col_ten_legacy"], config=KMEANS).save(
        prefect_name("cluster_ten_legacy"))
    results = default_result_store().files
    with results.new_run("cluster_ten_legacy", "run-before-namespaces") as run:  # where results used to go
        run.write_members(["a", "b"], np.array([0, 0]), np.array([0.1, 0.2]))
        run.commit({"run_id": "run-before-namespaces", "results_id": "cluster_ten_legacy", "trigger_id": None,
                    "clusters": [{"cluster_id": 0, "size": 2}]},
                   np.zeros((1, 3)))
    assert get_settings().rules.namespace == "default"
    with pytest.raises(Exception, match="not found"):
        load_collection("col_ten_legacy")  # belongs to no namespace: no trigger reads it

    moved = cli("migrate", "--namespace", "tenant-old")
    assert moved.returncode == 0, moved.stderr
    told = {(b["kind"], b["id"]): b["moved"] for b in json.loads(moved.stdout)["blocks"]}
    assert told[("lance-collection", "col_ten_legacy")] and told[("cluster-definition", "cluster_ten_legacy")]
    assert load_collection("col_ten_legacy", "tenant-old").count() == 4
    assert load_cluster_definition("cluster_ten_legacy", "tenant-old").collection_ids == ["col_ten_legacy"]
    told = {b["id"]: b["moved"] for b in json.loads(moved.stdout)["results"]}
    assert told["cluster_ten_legacy"] and "cluster_ten_legacy" not in results.owners()
    shown = cli("results", "cluster_ten_legacy", "--namespace", "tenant-old")
    assert shown.returncode == 0 and json.loads(shown.stdout)["run_id"] == "run-before-namespaces", shown.stderr
    assert cli("results", "cluster_ten_legacy").returncode != 0  # the default namespace's: none
    with pytest.raises(ValueError):
        LanceCollection.load(prefect_name("col_ten_legacy"))
    again = json.loads(cli("migrate", "--namespace", "tenant-old").stdout)
    assert not [b for b in again["blocks"] + again["results"] if b["id"].startswith(("col_ten", "cluster_ten"))]
