"""The shared clustering flow: every execution of every trigger is one run of this flow.

load documents -> preprocess -> cluster -> score -> persist results -> publish. The run's
state is the execution record (the trigger's counters are read from flow runs), its
artifacts show the history of each trigger or cluster in the Prefect UI, and its events
(`cluster.execution.completed` / `.failed`) let other automations react.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.events import emit_event
from prefect.runtime import flow_run
from prefect.states import Cancelled, Failed, State
from prefect.utilities.annotations import quote

from prefect_cluster_triggers.blocks._naming import prefect_name
from prefect_cluster_triggers.blocks.cluster_definition import load_cluster_definition
from prefect_cluster_triggers.blocks.collections import load_collection, read_documents
from prefect_cluster_triggers.blocks.result_store import ResultStore, default_result_store
from prefect_cluster_triggers.deployments._models import format_utc
from prefect_cluster_triggers.deployments.announcements import announce
from prefect_cluster_triggers.deployments.contract import ExecutionConfig, validate_execution_config
from prefect_cluster_triggers.deployments.errors import ContractError, Problem
from prefect_cluster_triggers.deployments.translate import CONDITION_TAG, EVENT_TAG, FLOW_NAME, MANUAL_TAG, TriggerRecord
from prefect_cluster_triggers.flows import engine
from prefect_cluster_triggers.flows.clusterers import Clustering
from prefect_cluster_triggers.flows.engine import Documents, Outcome, PreviousClusters
from prefect_cluster_triggers.flows.errors import ClusterTriggersError, DataError, NotFound
from prefect_cluster_triggers.flows.trigger_state import record_run, stopped_reason, wait_until_due


class _RefusalsWithoutTraceback(logging.Filter):
    """Prefect's task engine logs every task exception with its traceback. For a refusal we
    explain ourselves (bad data, a missing collection, an impossible request) the message is
    the whole story: the run's logs, the UI and the `cluster` command show it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], (ClusterTriggersError, ContractError)):
            record.exc_info, record.exc_text = None, None
        return True


logging.getLogger("prefect.task_runs").addFilter(_RefusalsWithoutTraceback())


def _retry_io_only(task: Any, task_run: Any, state: State) -> bool:
    """Retry transient I/O failures, not bad data or a missing collection: those fail the same way again."""
    try:
        state.result()
    except (DataError, NotFound, ContractError):
        return False
    except Exception:
        return True
    return False


@task(name="load documents", retries=2, retry_delay_seconds=2, retry_condition_fn=_retry_io_only, cache_policy=NO_CACHE)
def load_documents(collection_ids: list[str]) -> Documents:
    parts = [read_documents(load_collection(collection_id)) for collection_id in collection_ids]
    if len(parts) == 1:
        return parts[0]
    dims = {collection_id: part.vectors.shape[1] for collection_id, part in zip(collection_ids, parts) if len(part.ids)}
    if len(set(dims.values())) > 1:
        raise DataError(f"the collections have different dimensions: {dims}")
    texts = [text for part in parts for text in (part.texts or [""] * len(part.ids))]
    return Documents(
        [i for part in parts for i in part.ids],
        np.concatenate([part.vectors for part in parts if len(part.ids)] or [np.empty((0, 0), np.float32)]),
        texts if any(texts) else (),
    )


@task(name="preprocess", cache_policy=NO_CACHE)
def preprocess(documents: Documents, config: ExecutionConfig) -> tuple[np.ndarray, np.ndarray]:
    return engine.prepare(documents, config.config)


@task(name="cluster", cache_policy=NO_CACHE)
def cluster(full: np.ndarray, fit_space: np.ndarray, config: ExecutionConfig) -> Clustering:
    return engine.fit(full, fit_space, config.config)


@task(name="score", cache_policy=NO_CACHE)
def score(full: np.ndarray, clustering: Clustering, texts: Any, previous: PreviousClusters | None) -> Outcome:
    return engine.score(full, clustering, texts, previous)


@task(name="persist results", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def persist(store: ResultStore, results_id: str, run_id: str, record: dict[str, Any], ids: Any, outcome: Outcome) -> None:
    store.write_run(results_id, run_id, record, outcome.centroids, ids, outcome.cluster_of, outcome.distance)


@task(name="publish", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def publish(results_id: str, record: dict[str, Any]) -> None:
    key = prefect_name(results_id)
    create_table_artifact(
        key=f"clusters-{key}",
        table=[
            {"cluster": c["id"], "num_members": c["num_members"], "keywords": ", ".join(c["keywords"])}
            for c in record["clusters"]
        ],
        description=f"Clusters of {results_id}, run {record['run_id']}",
    )
    create_markdown_artifact(key=f"cluster-summary-{key}", markdown=_summary_markdown(record),
                             description=f"Clustering summary of {results_id}")
    _emit("cluster.execution.completed", results_id, {k: record[k] for k in ("run_id", "num_documents", "num_clusters")})


@flow(name=FLOW_NAME, validate_parameters=True, on_failure=[record_run], on_crashed=[record_run],
      on_completion=[record_run], on_cancellation=[record_run])
def cluster_collection(
    execution_config: dict[str, Any] | None = None,
    cluster_id: str | None = None,
    results_id: str | None = None,
    trigger: dict[str, Any] | None = None,
    firing: dict[str, Any] | None = None,
) -> dict[str, Any] | State:
    """Cluster the collections of an execution config (or of a stored cluster definition).

    Trigger deployments pass `trigger` (the trigger's record); ad-hoc runs pass
    `execution_config` or `cluster_id`. Runs made by an event or conditional trigger carry
    `firing`: what made it fire (the events it consumed, or the measurement), so the
    Prefect UI shows why a run happened and the trigger's counter is read back from it.
    Results are kept under the trigger's id, else
    `results_id`, else the cluster definition's id, else an id derived from the collections
    and algorithm, so repeated runs of the same thing keep their cluster ids. Bad data ends
    the run Failed with a message and leaves earlier results untouched.
    """
    trigger_id = None
    if trigger is not None:
        wait_until_due(firing)
        this_run = FlowRunContext.get().flow_run
        reason = stopped_reason(this_run)
        if reason:
            get_run_logger().warning(reason)
            return Cancelled(message=reason)
        record_run(None, this_run, None)  # `ls` shows this run as processing
        record = TriggerRecord.model_validate(trigger)
        announce("fired", record.trigger_id, record.namespace_id, run_id=str(this_run.id), reason=_reason(this_run),
                 firing=firing)
        trigger_id, cluster_id = record.trigger_id, record.request.cluster_id
        config = record.request.execution_config
        execution_config = config.model_dump(mode="json") if config is not None else None
    results_id = trigger_id or results_id or cluster_id
    try:
        config = _resolve_config(execution_config, cluster_id)
        results_id = results_id or _adhoc_results_id(config)
        return _run(results_id, config, cluster_id, trigger_id)
    except (ClusterTriggersError, ContractError) as exc:
        results_id = results_id or "adhoc"  # an invalid ad-hoc config has no collections to name it by
        message = str(exc)
        get_run_logger().error("clustering %s failed: %s", results_id, message)
        _emit("cluster.execution.failed", results_id, {"run_id": str(flow_run.id), "error": message})
        return Failed(message=message)


def _reason(flow_run: Any) -> str:
    """Why this run of a trigger exists: its firing's kind, a manual request, or the schedule."""
    tags = set(flow_run.tags or ())
    return next((reason for tag, reason in _RUN_REASONS if tag in tags), "schedule")


_RUN_REASONS = ((EVENT_TAG, "event"), (CONDITION_TAG, "condition"), (MANUAL_TAG, "manual"))


def _run(results_id: str, config: ExecutionConfig, cluster_id: str | None, trigger_id: str | None) -> dict[str, Any]:
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round((now - clock) * 1000, 1)
        clock = now

    store = default_result_store()
    previous = _previous_clusters(store, results_id)
    documents = load_documents(list(config.collection_ids))
    lap("load_ms")
    # quote(): Prefect would otherwise walk every document id looking for upstream futures.
    full, fit_space = preprocess(quote(documents), config)
    lap("preprocess_ms")
    clustering = cluster(full, fit_space, config)
    lap("cluster_ms")
    outcome = score(full, clustering, quote(documents.texts), previous)
    lap("score_ms")
    run_id = str(flow_run.id)
    record = _record(run_id, results_id, config, cluster_id, trigger_id, documents, outcome, timings)
    persist(store, results_id, run_id, record, quote(documents.ids), outcome)
    lap("persist_ms")
    publish(results_id, record)
    return record


def _resolve_config(execution_config: dict[str, Any] | None, cluster_id: str | None) -> ExecutionConfig:
    if execution_config is not None:
        return validate_execution_config(execution_config)
    if cluster_id is None:
        raise ContractError([Problem("execution_config", "required when cluster_id is not given")])
    return load_cluster_definition(cluster_id).execution_config()


def _previous_clusters(store: ResultStore, results_id: str) -> PreviousClusters | None:
    try:
        latest = store.latest(results_id)
    except NotFound:
        return None
    ids = np.array([c["id"] for c in latest.record["clusters"]], dtype=np.int64)
    return PreviousClusters(ids, latest.centroids, int(latest.record["next_cluster_id"]))


def _record(
    run_id: str,
    results_id: str,
    config: ExecutionConfig,
    cluster_id: str | None,
    trigger_id: str | None,
    documents: Documents,
    outcome: Outcome,
    timings: dict[str, float],
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "results_id": results_id,
        "trigger_id": trigger_id,
        "cluster_id": cluster_id,
        "status": "completed",
        "created_at": format_utc(datetime.now(timezone.utc)),
        "collection_ids": list(config.collection_ids),
        "algorithm": config.config.algorithm,
        "parameters": config.config.model_dump(mode="json"),
        "num_documents": len(documents.ids),
        "dimension": int(documents.vectors.shape[1]),
        "num_clusters": len(outcome.cluster_ids),
        "num_noise": int(np.count_nonzero(outcome.cluster_of < 0)),
        "metrics": outcome.metrics,
        "mean_similarity": outcome.mean_similarity,
        "timings_ms": dict(timings),
        "next_cluster_id": outcome.next_cluster_id,
        "clusters": [
            {"id": int(cid), "num_members": int(n), "keywords": words}
            for cid, n, words in zip(outcome.cluster_ids, outcome.num_members, outcome.keywords)
        ],
    }


def _summary_markdown(record: dict[str, Any]) -> str:
    metrics = record["metrics"]
    lines = [
        f"# Clustering of `{record['results_id']}`",
        "",
        f"Run `{record['run_id']}`: **{record['num_clusters']} clusters** in {record['num_documents']} documents "
        f"({record['num_noise']} noise), algorithm `{record['algorithm']}` on {', '.join(record['collection_ids'])}.",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {name} | {'n/a' if value is None else f'{value:.4f}'} |" for name, value in metrics.items()),
        "",
        "| step | ms |",
        "|---|---|",
        *(f"| {name.removesuffix('_ms')} | {value} |" for name, value in record["timings_ms"].items()),
    ]
    return "\n".join(lines)


def _adhoc_results_id(config: ExecutionConfig) -> str:
    return "adhoc." + re.sub(r"[^A-Za-z0-9_.-]", "-", "+".join(config.collection_ids)) + "." + config.config.algorithm


def _emit(event: str, results_id: str, payload: dict[str, Any]) -> None:
    emit_event(event=event, resource={"prefect.resource.id": f"cluster-results.{results_id}"}, payload=payload)
