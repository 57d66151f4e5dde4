"""The shared clustering flow: every execution of every trigger is one run of this flow.

open collections -> sample and fit -> assign and persist -> publish, in memory bounded by
the fit sample and one batch, whatever the collection's size (see `flows.engine`), except
for the change report: the ids and cluster ids of this run's and the previous run's members
(`flows.engine.changes`). The run's state is the execution record (the trigger's counters are
read from flow runs); its artifacts show the history of each trigger or cluster in the Prefect
UI: clusters, summary, what changed since the previous run, a picture of the clusters, and the
trends over runs (`service.run_pages`); its events (`cluster.execution.completed` / `.failed`)
let other automations react. It ends with one log line: documents, clusters, moves, seconds.
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
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.events import emit_event
from prefect.exceptions import CancelledRun, FailedRun
from prefect.runtime import flow_run
from prefect.states import Cancelled, Failed, State
from prefect.utilities.annotations import quote
from prefect.utilities.asyncutils import run_coro_as_sync

from prefect_cluster_triggers.blocks.cluster_definition import load_cluster_definition
from prefect_cluster_triggers.blocks.collections import load_collection
from prefect_cluster_triggers.blocks.files.lance_documents import BATCH_ROWS
from prefect_cluster_triggers.blocks.files.member_parts import member_parts
from prefect_cluster_triggers.blocks.files.result_files import StoredRun
from prefect_cluster_triggers.blocks.result_store import ResultStore, default_result_store, results_owner
from prefect_cluster_triggers.core.contract import ConditionalScheduleConfig, ExecutionConfig, validate_execution_config
from prefect_cluster_triggers.core.errors import (
    ClusterTriggersError,
    ContractError,
    DataError,
    NotFound,
    Problem,
)
from prefect_cluster_triggers.core.models import format_utc
from prefect_cluster_triggers.core.names import namespace_id_of, prefect_name
from prefect_cluster_triggers.core.settings import get_settings
from prefect_cluster_triggers.deployments.prefect_objects.translate import (
    CONDITION_TAG,
    EVENT_TAG,
    FLOW_DESCRIPTION,
    FLOW_NAME,
    MANUAL_TAG,
    TriggerRecord,
)
from prefect_cluster_triggers.deployments.prefect_objects.trigger_events import announce
from prefect_cluster_triggers.deployments.service import run_pages
from prefect_cluster_triggers.deployments.service.run_hooks import record_run, stopped_reason, wait_until_due
from prefect_cluster_triggers.flows.engine import pipeline
from prefect_cluster_triggers.flows.engine.assignment import assign_parts
from prefect_cluster_triggers.flows.engine.changes import DEFAULT_MOVED_LIMIT, ChangeReport, compare_parts
from prefect_cluster_triggers.flows.engine.keywords import payload_text
from prefect_cluster_triggers.flows.engine.pipeline import Documents, Fitted, PreviousClusters, Summary
from prefect_cluster_triggers.flows.engine.preprocess import sample_of
from prefect_cluster_triggers.flows.engine.projection import Projection, project_sample


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
        if record.exc_info and isinstance(record.exc_info[1], ClusterTriggersError):
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
def open_collections(collection_ids: list[str], namespace_id: str) -> list[Any]:
    """Each of the namespace's collections pinned as this run reads it (a Lance table at its current version)."""
    return [load_collection(collection_id, namespace_id).snapshot() for collection_id in collection_ids]


@task(name="sample and fit", retries=2, retry_delay_seconds=2, retry_condition_fn=_retry_io_only, cache_policy=NO_CACHE)
def fit(snapshots: list[Any], config: ExecutionConfig,
        previous: PreviousClusters | None) -> tuple[Fitted, Projection | None]:
    """The fitted model, and the run's picture drawn from its sample: the sample ends with this task, so
    the assignment that follows holds one batch, not the sample too."""
    sample, num_documents = _sample(snapshots, config)
    fitted = pipeline.fit_model(sample, config.config, num_documents=num_documents, previous=previous)
    return fitted, _picture(fitted, sample, config)


@task(name="assign and persist", retries=2, retry_delay_seconds=1, retry_condition_fn=_retry_io_only,
      cache_policy=NO_CACHE)
def assign_and_persist(store: ResultStore, results_id: str, record: dict[str, Any], snapshots: list[Any],
                       fitted: Fitted, previous: StoredRun | None) -> tuple[dict[str, Any], ChangeReport]:
    """Assign every document (in this process, or on the Dask cluster of `CLUSTER_TRIGGERS_DASK_ADDRESS`),
    streaming the members into the run's results; compare them with the `previous` run's; make them the
    latest once complete, with the change report beside them."""
    started = time.perf_counter()
    parts = [part for snapshot in snapshots for part in snapshot.parts()]
    address = get_settings().engine.dask_address
    with store.files.new_run(results_id, record["run_id"]) as run:
        tally = assign_parts(fitted.model, parts, run.write_members, dask_address=address)
        summary = pipeline.summarize(fitted, tally)
        record = {**_with_summary(record, fitted, summary), "assignment": {"on": address or "in-process", "parts": len(parts)}}
        assigned = time.perf_counter()
        paired = member_parts(store.files.filesystem, previous.members_file if previous else None, run.members_file())
        report = compare_parts(paired, moves_kept=DEFAULT_MOVED_LIMIT)
        record["changes_summary"] = report.summary()
        record["timings_ms"] = {**record["timings_ms"], "assign_ms": round((assigned - started) * 1000, 1),
                                "compare_ms": round((time.perf_counter() - assigned) * 1000, 1)}
        changes = {"run_id": record["run_id"], "previous_run_id": record["previous_run_id"], **report.to_dict()}
        run.commit(record, fitted.model.centroids, tally.passes, changes=changes)
    return record, report


@task(name="publish", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def publish(results_id: str, record: dict[str, Any], report: ChangeReport, picture: Projection | None,
            metric: str | None) -> None:
    """The run's artifacts (clusters, summary, changes, picture), the owner's trends, and the completed event."""
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
    create_markdown_artifact(key=run_pages.changes_key(results_id),
                             markdown=run_pages.changes_page(record["run_id"], record["previous_run_id"], report),
                             description=f"Run {record['run_id'][:8]} of {results_id}: {report.summary()}")
    try:  # pictures and trends are views: one that cannot be drawn leaves the run completed
        if picture is not None:
            sizes = {c["id"]: c["num_members"] for c in record["clusters"]}
            create_markdown_artifact(key=run_pages.picture_key(results_id),
                                     markdown=run_pages.picture_page(results_id, record["run_id"], picture, sizes),
                                     description=f"Clusters of {results_id}, run {record['run_id'][:8]} (PCA of a sample)")
        run_coro_as_sync(_publish_trends(results_id, metric))
    except Exception:
        get_run_logger().warning("the picture or trends of run %s could not be published", record["run_id"], exc_info=True)
    _emit("cluster.execution.completed", results_id,
          {**{k: record[k] for k in ("run_id", "num_documents", "num_clusters", "previous_run_id")}, "moved": report.moved})


async def _publish_trends(results_id: str, metric: str | None) -> None:
    async with get_client() as client:
        await run_pages.publish_trends(client, results_id, metric=metric, flow_run_id=flow_run.id)


@flow(name=FLOW_NAME, description=FLOW_DESCRIPTION, validate_parameters=True, on_failure=[record_run], on_crashed=[record_run],
      on_completion=[record_run], on_cancellation=[record_run])
def cluster_collection(
    execution_config: dict[str, Any] | None = None,
    cluster_id: str | None = None,
    results_id: str | None = None,
    trigger: dict[str, Any] | None = None,
    firing: dict[str, Any] | None = None,
    namespace: str | None = None,
) -> dict[str, Any] | State:
    """Cluster the collections of an execution config (or of a stored cluster definition).

    Trigger deployments pass `trigger` (the trigger's record); ad-hoc runs pass
    `execution_config` or `cluster_id`. Runs made by an event or conditional trigger carry
    `firing`: what made it fire (the events it consumed, or the measurement), so the
    Prefect UI shows why a run happened and the trigger's counter is read back from it.
    Collections and definitions are those of the trigger's namespace (ad-hoc runs: `namespace`,
    a name or id, the settings' when empty). Results are kept under the trigger's id, else
    `results_id`, else the cluster definition's id, else an id derived from the collections
    and algorithm, within the namespace, so repeated runs of the same thing keep their
    cluster ids. Bad data ends the run Failed with a message and leaves earlier results untouched.
    """
    trigger_id = metric = None
    namespace_id = namespace_id_of(namespace)
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
        trigger_id, cluster_id, namespace_id = record.trigger_id, record.request.cluster_id, record.namespace_id
        config = record.request.execution_config
        execution_config = config.model_dump(mode="json") if config is not None else None
        if isinstance(record.request.schedule_config, ConditionalScheduleConfig):
            metric = record.request.schedule_config.metric
    results_id = trigger_id or results_id or cluster_id
    try:
        config = _resolve_config(execution_config, cluster_id, namespace_id)
        results_id = results_id or _adhoc_results_id(config)
        return _run(results_id, config, cluster_id, trigger_id, namespace_id, metric)
    except ClusterTriggersError as exc:
        results_id = results_id or "adhoc"  # an invalid ad-hoc config has no collections to name it by
        message = str(exc)
        get_run_logger().error("clustering %s failed: %s", results_id, message)
        _emit("cluster.execution.failed", trigger_id or results_owner(namespace_id, results_id),
              {"run_id": str(flow_run.id), "error": message})
        return Failed(message=message)


def _reason(flow_run: Any) -> str:
    """Why this run of a trigger exists: its firing's kind, a manual request, or the schedule."""
    tags = set(flow_run.tags or ())
    return next((reason for tag, reason in _RUN_REASONS if tag in tags), "schedule")


_RUN_REASONS = ((EVENT_TAG, "event"), (CONDITION_TAG, "condition"), (MANUAL_TAG, "manual"))


def _run(results_id: str, config: ExecutionConfig, cluster_id: str | None, trigger_id: str | None,
         namespace_id: str, metric: str | None) -> dict[str, Any]:
    timings: dict[str, float] = {}
    clock = started = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round((now - clock) * 1000, 1)
        clock = now

    store = default_result_store()
    owner = trigger_id or results_owner(namespace_id, results_id)
    previous_run = _latest_run(store, owner)
    previous = _previous_clusters(previous_run)
    snapshots = open_collections(list(config.collection_ids), namespace_id)
    lap("open_ms")
    fitted, picture = fit(quote(snapshots), config, previous)
    lap("fit_ms")
    record = _record(str(flow_run.id), results_id, config, cluster_id, trigger_id, timings)
    record["previous_run_id"] = previous_run.record["run_id"] if previous_run else None
    # quote(): Prefect would otherwise walk the model and the snapshots looking for upstream futures.
    record, report = assign_and_persist(store, owner, record, quote(snapshots), quote(fitted), quote(previous_run))
    publish(owner, record, quote(report), quote(picture), metric)
    since = (f"{report.moved:,} moved since run {record['previous_run_id']}" if record["previous_run_id"]
             else "first run")
    get_run_logger().info("%s documents → %s clusters, %s, %.1f s", f"{record['num_documents']:,}",
                          record["num_clusters"], since, time.perf_counter() - started)
    return record


def _picture(fitted: Fitted, sample: Documents, config: ExecutionConfig) -> Projection | None:
    """The fit sample's documents with their stable cluster ids, projected on the sample's two main axes.
    Labelled a batch at a time: assigning the whole sample at once would copy it several times over."""
    if not len(sample.ids):
        return None
    try:  # a view: a picture that cannot be drawn leaves the run as it is
        labels = np.concatenate([
            pipeline.assign(fitted.model, sample.ids[start: start + BATCH_ROWS], sample.vectors[start: start + BATCH_ROWS])[0]
            for start in range(0, len(sample.ids), BATCH_ROWS)])
        return project_sample(sample.vectors, labels, normalize=config.config.normalize)
    except Exception:
        get_run_logger().warning("no picture of this run's clusters", exc_info=True)
        return None


def _sample(snapshots: list[Any], config: ExecutionConfig) -> tuple[Documents, int]:
    """A uniform sample of all the collections together, of the algorithm's fit size, and their document count."""
    read = {cid: s.dimension for cid, s in zip(config.collection_ids, snapshots)}  # a stream's costs a fetch
    dims = {cid: dim for cid, dim in read.items() if dim is not None}
    if len(set(dims.values())) > 1:
        raise DataError(f"the collections have different dimensions: {dims}")
    ids, vectors, payloads, total = sample_of(snapshots, pipeline.default_sample_size(config.config,
                                                                                   next(iter(dims.values()), 1)))
    texts = [payload_text(json.loads(payload)) if payload else "" for payload in payloads]
    return Documents(ids, vectors, texts if any(texts) else ()), total


def _resolve_config(execution_config: dict[str, Any] | None, cluster_id: str | None, namespace_id: str) -> ExecutionConfig:
    if execution_config is not None:
        return validate_execution_config(execution_config)
    if cluster_id is None:
        raise ContractError([Problem("execution_config", "required when cluster_id is not given")])
    return load_cluster_definition(cluster_id, namespace_id).execution_config()


def _latest_run(store: ResultStore, owner: str) -> StoredRun | None:
    try:
        return store.latest(owner)
    except NotFound:
        return None


def _previous_clusters(latest: StoredRun | None) -> PreviousClusters | None:
    if latest is None:
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
