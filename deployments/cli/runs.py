"""`cluster-triggers cluster` runs the clustering flow once; `results` reads what runs stored."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from prefect_cluster_triggers.core.contract import validate_request
from prefect_cluster_triggers.core.errors import ContractError, NotFound, Problem
from prefect_cluster_triggers.core.names import namespace_id_of
from prefect_cluster_triggers.deployments.cli.common import EXIT_FAILED, Namespace, needs_prefect, print_json, spinner
from prefect_cluster_triggers.deployments.cli.documents import load_document

if TYPE_CHECKING:
    from prefect_cluster_triggers.blocks.files.result_files import StoredRun

app = typer.Typer()


@app.command(help="Run the clustering flow once on a trigger request and wait.")
@needs_prefect
def cluster(file: Annotated[str, typer.Argument(metavar="FILE", help="Trigger request (its execution_config or "
                                                "cluster_id is used).")],
            namespace: Namespace = None) -> int:
    """Cluster now, without creating a trigger: to try a config, or for a one-off run; exit 1 when the run fails."""
    from prefect_cluster_triggers.flows.clustering_flow import cluster_collection

    request = validate_request(load_document(file))
    execution_config = request.execution_config.model_dump(mode="json") if request.execution_config else None
    with spinner("clustering"):
        state = cluster_collection(execution_config=execution_config, cluster_id=request.cluster_id,
                                   namespace=namespace_id_of(namespace), return_state=True)
    if not state.is_completed():
        print(f"run {state.state_details.flow_run_id} {state.name.lower()}: {state.message}", file=sys.stderr)
        return EXIT_FAILED
    print_json(state.result())
    return 0


@app.command(help="Print the latest result of a trigger or cluster, or the result of one run by its id.")
@needs_prefect
def results(
    id: Annotated[str, typer.Argument(metavar="ID", help="Trigger id, cluster id, the results_id a run printed, or a run id (job_id, run_id) of the namespace.")],
    members: Annotated[bool, typer.Option("--members", help="Add every document's cluster and distance.")] = False,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="FILE", help="With --members: write them "
                                                  "to FILE (.csv, .jsonl or .parquet) instead of printing them.")] = None,
    changes: Annotated[bool, typer.Option("--changes", help="Print what changed in that run since the previous "
                                          "one instead: moves, clusters born, split, merged, vanished.")] = False,
    namespace: Namespace = None,
) -> int:
    """A stored result with its centroids, and with --members each document's cluster (printed or to a file);
    with --changes, the run's change report against the run before it."""
    run = _stored_run(id, namespace)
    if changes:
        found = run.changes()
        if found is None:
            raise NotFound(f"run {run.record['run_id']!r} has no change report: it ran before runs kept one")
        print_json(found)
        return 0
    record = dict(run.record)
    record["clusters"] = [
        {**cluster, "centroid": [round(float(x), 6) for x in centroid]}
        for cluster, centroid in zip(record["clusters"], run.centroids)
    ]
    if output and not members:
        raise ContractError([Problem("--output", "is where --members go: add --members")])
    if output:
        destination = Path(output)
        try:
            record["members_written"] = run.export_members(destination)
        except (ValueError, OSError) as exc:
            raise ContractError([Problem("--output", str(exc))]) from None
        record["members_file"] = str(destination.resolve())
    elif members:
        record["members"] = run.members()
    print_json(record)
    return 0


def _stored_run(results_id: str, namespace: str | None) -> StoredRun:
    """The latest run of the namespace's trigger, cluster or results id `results_id`; else, for a flow
    run id, that run if it is the namespace's (a run of its trigger, or ad-hoc in it).

    Raises:
        NotFound: neither; the same answer for another namespace's run as for no run at all.
    """
    from prefect_cluster_triggers.blocks.result_store import default_result_store, results_owner
    from prefect_cluster_triggers.deployments.service.queries import results_owner_of, run_sync

    store = default_result_store()
    try:
        return store.latest(run_sync(results_owner_of(results_id, namespace)))
    except NotFound as missing:
        try:
            uuid.UUID(results_id)
        except ValueError:
            raise missing from None
        owner = store.files.owner_of_run(results_id)
        if owner is None:
            raise missing from None
        run = store.files.run(owner, results_id)
        trigger_id = run.record.get("trigger_id")
        namespace_id = namespace_id_of(namespace)
        if trigger_id:  # a trigger's run, kept under its id: shown if the trigger is the namespace's
            theirs = owner == trigger_id and run_sync(results_owner_of(trigger_id, namespace_id)) == trigger_id
        else:
            theirs = owner == results_owner(namespace_id, run.record["results_id"])
        if not theirs:
            raise missing from None
        return run
