"""CLI commands that touch Prefect: collections, cluster definitions, runs and results.

Kept apart from `deployments.cli` so that validating a trigger file never imports Prefect.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from typing import Any

import numpy as np

from prefect_cluster_triggers.blocks._naming import prefect_name
from prefect_cluster_triggers.blocks.cluster_definition import ClusterDefinition
from prefect_cluster_triggers.blocks.collection_events import notify_collection
from prefect_cluster_triggers.blocks.collections import open_local_collection
from prefect_cluster_triggers.blocks.result_store import default_result_store
from prefect_cluster_triggers.deployments.cli import load_document, print_json, read_text
from prefect_cluster_triggers.deployments.contract import validate_cluster_definition, validate_request
from prefect_cluster_triggers.deployments.errors import ContractError, Problem
from prefect_cluster_triggers.flows.errors import ClusterTriggersError

_RUN_FAILED = 1


def collections_add(args: argparse.Namespace) -> int:
    vectors = _load_vectors(args.vectors)
    ids = read_text(args.ids).splitlines() if args.ids else None
    payloads = [_json_line(args.payloads, n, line) for n, line in enumerate(read_text(args.payloads).splitlines(), 1)] if args.payloads else None
    collection = open_local_collection(args.collection_id)
    try:
        total = collection.add_documents(vectors, ids=ids, payloads=payloads)
    except ClusterTriggersError as exc:
        raise ContractError([Problem(args.vectors, str(exc))]) from None
    print_json({"collection_id": args.collection_id, "added": int(len(vectors)), "total": total})
    return 0


def collections_notify(args: argparse.Namespace) -> int:
    notify_collection(args.collection_id, args.event_type, count=args.count, flush=True)
    print_json({"collection_id": args.collection_id, "event": args.event_type, "count": args.count or 1})
    return 0


def clusters_create(args: argparse.Namespace) -> int:
    spec = validate_cluster_definition(load_document(args.file))
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


def cluster_once(args: argparse.Namespace) -> int:
    from prefect_cluster_triggers.flows.clustering_flow import cluster_collection

    request = validate_request(load_document(args.file))
    execution_config = request.execution_config.model_dump(mode="json") if request.execution_config else None
    state = cluster_collection(execution_config=execution_config, cluster_id=request.cluster_id, return_state=True)
    if not state.is_completed():
        print(f"run {state.state_details.flow_run_id} {state.name.lower()}: {state.message}", file=sys.stderr)
        return _RUN_FAILED
    print_json(state.result())
    return 0


def results(args: argparse.Namespace) -> int:
    run = default_result_store().latest(args.id)
    record = dict(run.record)
    record["clusters"] = [
        {**cluster, "centroid": [round(float(x), 6) for x in centroid]}
        for cluster, centroid in zip(record["clusters"], run.centroids)
    ]
    if args.members:
        record["members"] = run.members()
    print_json(record)
    return 0


def _load_vectors(path: str) -> np.ndarray:
    try:
        vectors = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ContractError([Problem(path, f"cannot read a .npy matrix: {exc}")]) from None
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.number):
        raise ContractError([Problem(path, f"expected a 2-d numeric matrix, got shape {vectors.shape} of {vectors.dtype}")])
    return vectors


def _json_line(path: str, number: int, line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise ContractError([Problem(f"{path}:{number}", f"not JSON: {exc.msg}")]) from None
