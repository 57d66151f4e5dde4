"""CLI commands of the trigger lifecycle; thin wrappers over `deployments.lifecycle`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from prefect_cluster_triggers.deployments import lifecycle
from prefect_cluster_triggers.deployments._models import format_utc
from prefect_cluster_triggers.deployments.cli import load_document, print_json
from prefect_cluster_triggers.deployments.contract import validate_request
from prefect_cluster_triggers.deployments.errors import ContractError, Problem
from prefect_cluster_triggers.deployments.render import render_prefect_yaml

_RUN_FAILED = 1


def create(args: argparse.Namespace) -> int:
    request = validate_request(load_document(args.file))
    trigger = lifecycle.run_sync(lifecycle.create_trigger(request, namespace_id=args.namespace, trigger_id=args.id))
    print_json(trigger)
    return 0


def ls(args: argparse.Namespace) -> int:
    triggers, total = lifecycle.run_sync(lifecycle.list_triggers(args.namespace, limit=args.limit))
    if args.json:
        print_json({"results": triggers, "total": total})
        return 0
    rows = [("TRIGGER", "TYPE", "STATUS", "NEXT RUN", "RUNS", "FAILS", "LAST", "DESCRIPTION")]
    rows += [
        (t.trigger_id, t.trigger_type.value, t.status.value,
         format_utc(t.next_scheduled_at) if t.next_scheduled_at else "-", str(t.execution_count),
         str(t.consecutive_failures), t.last_execution_status or "-", t.description or "")
        for t in triggers
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    return 0


def get(args: argparse.Namespace) -> int:
    print_json(lifecycle.run_sync(lifecycle.get_trigger(args.id, args.namespace)))
    return 0


def update(args: argparse.Namespace) -> int:
    changes = load_document(args.file)
    if not isinstance(changes, dict):
        raise ContractError([Problem(args.file, "must be a JSON or YAML object of the fields to change")])
    print_json(lifecycle.run_sync(lifecycle.update_trigger(args.id, changes, args.namespace)))
    return 0


def pause(args: argparse.Namespace) -> int:
    print_json(lifecycle.run_sync(lifecycle.pause_trigger(args.id, args.namespace)))
    return 0


def resume(args: argparse.Namespace) -> int:
    print_json(lifecycle.run_sync(lifecycle.resume_trigger(args.id, args.namespace)))
    return 0


def delete(args: argparse.Namespace) -> int:
    print_json(lifecycle.run_sync(lifecycle.delete_trigger(args.id, args.namespace)))
    return 0


def execute(args: argparse.Namespace) -> int:
    execution = lifecycle.run_sync(lifecycle.execute_trigger(args.id, args.namespace, wait=args.wait))
    print_json(execution)
    return _RUN_FAILED if execution.status == "failed" else 0


def history(args: argparse.Namespace) -> int:
    if args.evaluations:
        found = lifecycle.run_sync(lifecycle.trigger_evaluations(args.id, args.namespace, limit=args.limit))
        print_json({"trigger_id": args.id, "evaluations": found})
        return 0
    executions, total = lifecycle.run_sync(
        lifecycle.trigger_history(args.id, args.namespace, offset=args.offset, limit=args.limit, status_filter=args.status)
    )
    print_json({"trigger_id": args.id, "executions": executions, "total": total, "offset": args.offset,
                "limit": args.limit})
    return 0


def render(args: argparse.Namespace) -> int:
    text = render_prefect_yaml(Path(args.triggers)) if args.triggers else render_prefect_yaml()
    output = Path(args.output)
    if args.check:
        if not output.exists() or output.read_text() != text:
            print(f"{output}: out of date with its trigger files; run `cluster-triggers render`", file=sys.stderr)
            return _RUN_FAILED
        return 0
    output.write_text(text)
    print(f"wrote {output}")
    return 0


def serve_api(args: argparse.Namespace) -> int:
    import uvicorn

    from prefect_cluster_triggers.deployments.settings import get_settings

    port = args.port or get_settings().api_port
    os.environ["CLUSTER_TRIGGERS_API_PORT"] = str(port)  # the evaluator's wake-up address uses it
    uvicorn.run("prefect_cluster_triggers.deployments.api:app", host=args.host, port=port, log_level="info")
    return 0
