"""CLI commands that touch Prefect: collections, cluster definitions, runs and results.

Kept apart from `deployments.cli` so that validating a trigger file never imports Prefect.
"""

from __future__ import annotations

import secrets
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pyarrow as pa

from prefect_cluster_triggers.blocks._naming import prefect_name
from prefect_cluster_triggers.blocks.cluster_definition import ClusterDefinition
from prefect_cluster_triggers.blocks.collection_events import notify_collection
from prefect_cluster_triggers.blocks.collections import LanceCollection, load_collection, open_collection
from prefect_cluster_triggers.blocks.document_input import open_input
from prefect_cluster_triggers.blocks.result_store import default_result_store
from prefect_cluster_triggers.deployments.cli import load_document, print_json, read_text
from prefect_cluster_triggers.deployments.contract import validate_cluster_definition, validate_request
from prefect_cluster_triggers.deployments.errors import ContractError, Problem
from prefect_cluster_triggers.flows.errors import ClusterTriggersError

_RUN_FAILED = 1


def collections_add(collection_id: str, vectors: str, ids: str | None, payloads: str | None) -> int:
    collection = open_collection(collection_id)
    try:
        first_id = 0 if ids or not vectors.lower().endswith(".npy") else collection.count()
        source = open_input(vectors, ids=ids, payloads=payloads, first_id=first_id)
        with _progress(source.rows, f"adding to {collection_id}") as advance:
            counts = collection.upsert_batches(_advancing(source.batches, advance))
    except ClusterTriggersError as exc:
        raise ContractError([_problem(str(exc), vectors)]) from None
    print_json({"collection_id": collection_id, "added": counts.inserted, "updated": counts.updated,
                "total": collection.count()})
    return 0


def collections_delete(collection_id: str, document_ids: list[str], ids_file: str | None) -> int:
    ids = list(document_ids) + (read_text(ids_file).splitlines() if ids_file else [])
    if not ids:
        raise ContractError([Problem("--id", "give the ids to delete with --id ID (repeatable) or --ids FILE")])
    collection = load_collection(collection_id)
    if not isinstance(collection, LanceCollection):
        raise ContractError([Problem(collection_id, "documents of an HTTP collection are deleted at their source")])
    deleted = collection.delete_documents([i for i in ids if i])
    print_json({"collection_id": collection_id, "deleted": deleted, "total": collection.count()})
    return 0


def collections_notify(collection_id: str, event_type: str, count: int | None) -> int:
    notify_collection(collection_id, event_type, count=count, flush=True)
    print_json({"collection_id": collection_id, "event": event_type, "count": count or 1})
    return 0


def clusters_create(file: str) -> int:
    spec = validate_cluster_definition(load_document(file))
    cluster_id = spec.cluster_id or f"cluster_{secrets.token_hex(6)}"
    definition = ClusterDefinition(
        cluster_id=cluster_id,
        collection_ids=list(spec.collection_ids),
        config=spec.config.model_dump(mode="json"),
        description=spec.description,
    )
    definition.save(prefect_name(cluster_id), overwrite=True)
    print_json({"cluster_id": cluster_id, "collection_ids": definition.collection_ids, "config": definition.config,
            "description": definition.description})
    return 0


def cluster_once(file: str) -> int:
    from prefect_cluster_triggers.flows.clustering_flow import cluster_collection

    request = validate_request(load_document(file))
    execution_config = request.execution_config.model_dump(mode="json") if request.execution_config else None
    state = cluster_collection(execution_config=execution_config, cluster_id=request.cluster_id, return_state=True)
    if not state.is_completed():
        print(f"run {state.state_details.flow_run_id} {state.name.lower()}: {state.message}", file=sys.stderr)
        return _RUN_FAILED
    print_json(state.result())
    return 0


def results(results_id: str, members: bool, output: str | None) -> int:
    run = default_result_store().latest(results_id)
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


def _problem(message: str, where: str) -> Problem:
    """`<file[:line]>: <what>` as one problem line; a message without a location gets `where`."""
    location, _, what = message.partition(": ")
    return Problem(location, what) if what and ("/" in location or "." in location) else Problem(where, message)


@contextmanager
def _progress(total: int | None, description: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal (stderr), nothing in a pipe or a test."""
    if not sys.stderr.isatty():
        yield lambda rows: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True)) as progress:
        task = progress.add_task(description, total=total)
        yield lambda rows: progress.advance(task, rows)


def _advancing(batches: Iterable[pa.RecordBatch], advance: Callable[[int], None]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        yield batch
        advance(batch.num_rows)
