"""CLI commands of the trigger lifecycle; thin wrappers over `deployments.lifecycle`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from prefect_cluster_triggers.deployments import lifecycle
from prefect_cluster_triggers.deployments._models import format_utc
from prefect_cluster_triggers.deployments.cli import load_document, print_json, print_table
from prefect_cluster_triggers.deployments.contract import validate_request
from prefect_cluster_triggers.deployments.errors import ContractError, Problem
from prefect_cluster_triggers.deployments.render import render_prefect_yaml

_RUN_FAILED = 1


def create(file: str, trigger_id: str | None, namespace: str | None) -> int:
    request = validate_request(load_document(file))
    trigger = lifecycle.run_sync(lifecycle.create_trigger(request, namespace_id=namespace, trigger_id=trigger_id))
    print_json(trigger)
    return 0


def ls(as_json: bool, limit: int, namespace: str | None) -> int:
    triggers, total = lifecycle.run_sync(lifecycle.list_triggers(namespace, limit=limit))
    if as_json:
        print_json({"results": triggers, "total": total})
        return 0
    print_table(
        ("TRIGGER", "TYPE", "STATUS", "NEXT RUN", "RUNS", "FAILS", "LAST", "DESCRIPTION"),
        [(t.trigger_id, t.trigger_type.value, t.status.value,
          format_utc(t.next_scheduled_at) if t.next_scheduled_at else "-", str(t.execution_count),
          str(t.consecutive_failures), t.last_execution_status or "-", t.description or "")
         for t in triggers],
    )
    return 0


def get(trigger_id: str, namespace: str | None) -> int:
    print_json(lifecycle.run_sync(lifecycle.get_trigger(trigger_id, namespace)))
    return 0


def update(trigger_id: str, file: str, namespace: str | None) -> int:
    changes = load_document(file)
    if not isinstance(changes, dict):
        raise ContractError([Problem(file, "must be a JSON or YAML object of the fields to change")])
    print_json(lifecycle.run_sync(lifecycle.update_trigger(trigger_id, changes, namespace)))
    return 0


def pause(trigger_id: str, namespace: str | None) -> int:
    print_json(lifecycle.run_sync(lifecycle.pause_trigger(trigger_id, namespace)))
    return 0


def resume(trigger_id: str, namespace: str | None) -> int:
    print_json(lifecycle.run_sync(lifecycle.resume_trigger(trigger_id, namespace)))
    return 0


def delete(trigger_id: str, namespace: str | None) -> int:
    print_json(lifecycle.run_sync(lifecycle.delete_trigger(trigger_id, namespace)))
    return 0


def execute(trigger_id: str, wait: bool, namespace: str | None) -> int:
    execution = lifecycle.run_sync(lifecycle.execute_trigger(trigger_id, namespace, wait=wait))
    print_json(execution)
    return _RUN_FAILED if execution.status == "failed" else 0


def history(trigger_id: str, *, offset: int, limit: int, status: str | None, evaluations: bool, as_json: bool,
            namespace: str | None) -> int:
    if evaluations:
        found = lifecycle.run_sync(lifecycle.trigger_evaluations(trigger_id, namespace, limit=limit))
        if as_json:
            print_json({"trigger_id": trigger_id, "evaluations": found})
        else:
            print_table(("OCCURRED", "EVENT", "DECISION", "DETAILS"),
                        [(format_utc(e.occurred), e.event, e.decision or "-", json.dumps(e.details, separators=(",", ":")))
                         for e in found])
        return 0
    executions, total = lifecycle.run_sync(
        lifecycle.trigger_history(trigger_id, namespace, offset=offset, limit=limit, status_filter=status)
    )
    if as_json:
        print_json({"trigger_id": trigger_id, "executions": executions, "total": total, "offset": offset,
                    "limit": limit})
        return 0
    print_table(
        ("JOB", "TRIGGERED", "STATUS", "MS", "CLUSTERS", "DOCUMENTS", "ERROR"),
        [(e.job_id, format_utc(e.triggered_at) if e.triggered_at else "-", e.status,
          str(e.execution_time_ms or "-"), str(e.num_clusters or "-"), str(e.num_documents or "-"), e.error or "")
         for e in executions],
    )
    print(f"{len(executions)} of {total} executions (offset {offset})")
    return 0


def render(triggers: str | None, output: str, check: bool) -> int:
    text = render_prefect_yaml(Path(triggers)) if triggers else render_prefect_yaml()
    path = Path(output)
    if check:
        if not path.exists() or path.read_text() != text:
            print(f"{path}: out of date with its trigger files; run `cluster-triggers render`", file=sys.stderr)
            return _RUN_FAILED
        return 0
    path.write_text(text)
    print(f"wrote {path}")
    return 0


def serve_api(host: str, port: int | None) -> int:
    import uvicorn

    from prefect_cluster_triggers.deployments.settings import get_settings

    port = port or get_settings().api_port
    os.environ["CLUSTER_TRIGGERS_API_PORT"] = str(port)  # the evaluator's wake-up address uses it
    uvicorn.run("prefect_cluster_triggers.deployments.api:app", host=host, port=port, log_level="info")
    return 0
