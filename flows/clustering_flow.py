"""The shared clustering flow: every execution of every trigger is one run of this flow.

open collections -> sample and fit -> assign and persist -> publish, in memory bounded by
the fit sample and one batch, whatever the collection's size (see `flows.engine`). The run's
state is the execution record (the trigger's counters are read from flow runs), its
artifacts show the history of each trigger or cluster in the Prefect UI, and its events
(`cluster.execution.completed` / `.failed`) let other automations react.
"""

from __future__ import annotations

import json
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
from prefect.exceptions import CancelledRun, FailedRun
from prefect.runtime import flow_run
from prefect.states import Cancelled, Failed, State
from prefect.utilities.annotations import quote

from prefect_cluster_triggers.blocks._naming import prefect_name
from prefect_cluster_triggers.blocks.cluster_definition import load_cluster_definition
from prefect_cluster_triggers.blocks.collections import load_collection
from prefect_cluster_triggers.blocks.result_store import ResultStore, default_result_store
from prefect_cluster_triggers.deployments._models import format_utc
from prefect_cluster_triggers.deployments.announcements import announce
from prefect_cluster_triggers.deployments.contract import ExecutionConfig, validate_execution_config
from prefect_cluster_triggers.deployments.errors import ContractError, Problem
from prefect_cluster_triggers.deployments.translate import CONDITION_TAG, EVENT_TAG, FLOW_NAME, MANUAL_TAG, TriggerRecord
from prefect_cluster_triggers.flows import engine
from prefect_cluster_triggers.deployments.settings import get_settings
from prefect_cluster_triggers.flows.assignment import assign_parts
from prefect_cluster_triggers.flows.engine import Documents, Fitted, PreviousClusters, Summary
from prefect_cluster_triggers.flows.keywords import payload_text
from prefect_cluster_triggers.flows.preprocess import sample_of
from prefect_cluster_triggers.flows.errors import ClusterTriggersError, DataError, NotFound
from prefect_cluster_triggers.flows.trigger_state import record_run, stopped_reason, wait_until_due


class _RefusalsWithoutTraceback(logging.Filter):
    """Prefect's task engine logs every task exception with its traceback. For a refusal we
    explain ourselves (bad data, a missing collection, an impossible request) the message is
    the whole story: the run's logs, the UI and the `cluster` command show it in one line.

    A worker's flow process then ends by raising the run's final state: a run that returned
    the Failed state it chose raises `FailedRun`, which Prefect logs as "Engine execution
    exited with unexpected exception" with a traceback (a skipped run: `CancelledRun`). That
    state and its message were logged just before ("Finished in state Failed(...)"), so the
    line is dropped. A flow that raised keeps its traceback (Prefect re-raises that exception
    itself, not `FailedRun`).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], (FailedRun, CancelledRun)):
            return False
        if record.exc_info and isinstance(record.exc_info[1], (ClusterTriggersError, ContractError)):
            record.exc_info, record.exc_text = None, None
        return True


for _engine_logger in ("prefect.task_runs", "prefect.flow_runs"):
    logging.getLogger(_engine_logger).addFilter(_RefusalsWithoutTraceback())


def _retry_io_only(task: Any, task_run: Any, state: State) -> bool:
    """Retry transient I/O failures, not bad data or a missing collection: those fail the same way again."""
    try:
        state.result()
    except (DataError, NotFound, ContractError):
        return False
    except Exception:
        return True
    return False


@task(name="open collections", retries=2, retry_delay_seconds=2, retry_condition_fn=_retry_io_only,
      cache_policy=NO_CACHE)
def open_collections(collection_ids: list[str]) -> list[Any]:
    """Each collection pinned as this run reads it (a Lance table at its current version)."""
    return [load_collection(collection_id).snapshot() for collection_id in collection_ids]


@task(name="sample and fit", retries=2, retry_delay_seconds=2, retry_condition_fn=_retry_io_only, cache_policy=NO_CACHE)
def fit(snapshots: list[Any], config: ExecutionConfig, previous: PreviousClusters | None) -> Fitted:
    sample, num_documents = _sample(snapshots, config)
    return engine.fit_model(sample, config.config, num_documents=num_documents, previous=previous)


@task(name="assign and persist", retries=2, retry_delay_seconds=1, retry_condition_fn=_retry_io_only,
      cache_policy=NO_CACHE)
def assign_and_persist(store: ResultStore, results_id: str, record: dict[str, Any], snapshots: list[Any],
                       fitted: Fitted) -> dict[str, Any]:
    """Assign every document (in this process, or on the Dask cluster of `CLUSTER_TRIGGERS_DASK_ADDRESS`),
    streaming the members into the run's results; make them the latest once complete."""
    started = time.perf_counter()
    parts = [part for snapshot in snapshots for part in snapshot.parts()]
    address = get_settings().dask_address
    with store.files.new_run(results_id, record["run_id"]) as run:
        tally = assign_parts(fitted.model, parts, run.write_members, dask_address=address)
        summary = engine.summarize(fitted, tally)
        record = {**_with_summary(record, fitted, summary), "assignment": {"on": address or "in-process", "parts": len(parts)}}
        record["timings_ms"] = {**record["timings_ms"], "assign_ms": round((time.perf_counter() - started) * 1000, 1)}
        run.commit(record, fitted.model.centroids, tally.passes)
    return record


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
    snapshots = open_collections(list(config.collection_ids))
    lap("open_ms")
    fitted = fit(quote(snapshots), config, previous)
    lap("fit_ms")
    record = _record(str(flow_run.id), results_id, config, cluster_id, trigger_id, timings)
    # quote(): Prefect would otherwise walk the model and the snapshots looking for upstream futures.
    record = assign_and_persist(store, results_id, record, quote(snapshots), quote(fitted))
    publish(results_id, record)
    return record


def _sample(snapshots: list[Any], config: ExecutionConfig) -> tuple[Documents, int]:
    """A uniform sample of all the collections together, of the algorithm's fit size, and their document count."""
    read = {cid: s.dimension for cid, s in zip(config.collection_ids, snapshots)}  # a stream's costs a fetch
    dims = {cid: dim for cid, dim in read.items() if dim is not None}
    if len(set(dims.values())) > 1:
        raise DataError(f"the collections have different dimensions: {dims}")
    ids, vectors, payloads, total = sample_of(snapshots, engine.default_sample_size(config.config,
                                                                                   next(iter(dims.values()), 1)))
    texts = [payload_text(json.loads(payload)) if payload else "" for payload in payloads]
    return Documents(ids, vectors, texts if any(texts) else ()), total


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


def _record(run_id: str, results_id: str, config: ExecutionConfig, cluster_id: str | None, trigger_id: str | None,
            timings: dict[str, float]) -> dict[str, Any]:
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
        "timings_ms": dict(timings),
    }


def _with_summary(record: dict[str, Any], fitted: Fitted, summary: Summary) -> dict[str, Any]:
    """The record with what the whole run measured; `sample` says what the algorithm was fitted on."""
    return {
        **record,
        "num_documents": summary.num_documents,
        "dimension": int(fitted.model.centroids.shape[1]) if len(fitted.model.centroids) else None,
        "num_clusters": len(fitted.model.cluster_ids),
        "num_noise": summary.num_noise,
        "sample": {"used": fitted.sampled, "size": fitted.sample_size},
        "metrics": summary.metrics,
        "mean_similarity": summary.mean_similarity,
        "next_cluster_id": fitted.next_cluster_id,
        "clusters": [
            {"id": int(cid), "num_members": int(n), "keywords": words}
            for cid, n, words in zip(fitted.model.cluster_ids, summary.num_members, fitted.keywords)
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
