"""The trigger commands: `validate` and `preview` (no server), and the lifecycle from `create` to `history`.

When the CLI found a stack of `make run`, its REST API (which runs the same lifecycle) answers
`create`, `ls`, `get`, `pause`, `resume` and `delete`: this process then never imports Prefect,
the bulk of a command's time. The output is the same either way. Without a stack, when its API
does not answer, or for what the REST API does not offer (`create --id`), the lifecycle runs here.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sys
from contextlib import nullcontext
from datetime import datetime, timezone
from types import ModuleType
from typing import Annotated, Any, Awaitable, Callable, Optional

import typer

from prefect_cluster_triggers.core.contract import (
    ClusterTrigger,
    ConditionalScheduleConfig,
    EventScheduleConfig,
    ExecutionStatus,
    validate_request,
)
from prefect_cluster_triggers.core.errors import ClusterTriggersError, ContractError, Problem
from prefect_cluster_triggers.core.fire_times import describe_wait, next_fire_times
from prefect_cluster_triggers.core.models import format_utc
from prefect_cluster_triggers.core.names import namespace_id_of
from prefect_cluster_triggers.core.settings import get_settings
from prefect_cluster_triggers.deployments.api.keys import KeyStore
from prefect_cluster_triggers.deployments.cli.common import (
    EXIT_FAILED,
    AsJson,
    Namespace,
    RequestFile,
    TriggerId,
    found_stack,
    print_json,
    print_table,
    require_prefect_server,
    spinner,
    talks_to_server,
)
from prefect_cluster_triggers.deployments.cli.documents import load_document

app = typer.Typer()

_TRIGGERS = "/v1/clusters/triggers"
# Ids that are one plain URL path segment (no '/', not '.' or '..'); any other id is looked up here,
# so that it gets the lifecycle's own answer.
_PATH_SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")


@app.command(help="Check a trigger request and print it normalised.")
def validate(file: RequestFile) -> int:
    """Print the request as the contract normalises it, or its problems: no server, no Prefect."""
    request = validate_request(load_document(file))
    print(request.model_dump_json(exclude_none=True, indent=2))
    return 0


@app.command(help="Print the next fire times of a trigger request.")
def preview(
    file: RequestFile,
    next: Annotated[int, typer.Option("--next", metavar="N", help="How many fire times (1..1000).")] = 5,
    after: Annotated[Optional[str], typer.Option(metavar="ISO-TIME", help="Start from this instant, e.g. "
                                                 "2027-03-14T00:00:00Z (default now).")] = None,
) -> int:
    """Show when a schedule would fire (or what an event or conditional trigger waits for) before creating it."""
    problems = []
    if not 1 <= next <= 1000:
        problems.append(Problem("--next", f"must be between 1 and 1000 (got {next})"))
    start = datetime.now(timezone.utc)
    if after is not None:
        try:
            start = _parse_instant(after)
        except ValueError as exc:
            problems.append(Problem("--after", f"{exc} (got {after!r})"))
    if problems:
        raise ContractError(problems)
    schedule = validate_request(load_document(file)).schedule_config
    if isinstance(schedule, (EventScheduleConfig, ConditionalScheduleConfig)):
        print(describe_wait(schedule))
    else:
        for instant in next_fire_times(schedule, after=start, count=next):
            print(format_utc(instant))
    return 0


@app.command(help="Create a trigger (a Prefect deployment) from a request file.")
@talks_to_server
def create(file: RequestFile, id: Annotated[Optional[str], typer.Option(help="Trigger id (default: generated "
                                                                        "trg_...).")] = None,
           namespace: Namespace = None) -> int:
    """Create through the stack's REST API when it runs (no Prefect import), else here; a chosen id always here."""
    request = validate_request(load_document(file))
    trigger = None if id else _through_stack("POST", "", namespace, request.model_dump(mode="json"))
    if trigger is None:
        commands, queries = _service()
        trigger = queries.run_sync(commands.create_trigger(request, namespace_id=namespace, trigger_id=id))
    print_json(trigger)
    return 0


@app.command(help="List triggers.")
@talks_to_server
def ls(as_json: AsJson = False, limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
       namespace: Namespace = None) -> int:
    """The namespace's triggers as a table (or JSON), through the stack's REST API when it runs."""
    page = _through_stack("POST", "/list", namespace, {"limit": limit})
    if page is not None:
        triggers, total = [ClusterTrigger.model_validate(t) for t in page["results"]], page["total"]
    else:
        _, queries = _service()
        triggers, total = queries.run_sync(queries.list_triggers(namespace, limit=limit))
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


@app.command(help="Show a trigger with its status and counters (JSON).")
@talks_to_server
def get(id: TriggerId, namespace: Namespace = None) -> int:
    """One trigger, through the stack's REST API when it runs."""
    trigger = _by_id("GET", id, "", namespace)
    if trigger is None:
        _, queries = _service()
        trigger = queries.run_sync(queries.get_trigger(id, namespace))
    print_json(trigger)
    return 0


@app.command(help="Change schedule_config, description or status.")
@talks_to_server
def update(id: TriggerId, file: Annotated[str, typer.Argument(metavar="FILE", help="JSON or YAML object of the fields "
                                                              "to change; - reads stdin.")],
           namespace: Namespace = None) -> int:
    """Always here: the REST API checks the body with its own model, which words some refusals otherwise."""
    changes = load_document(file)
    if not isinstance(changes, dict):
        raise ContractError([Problem(file, "must be a JSON or YAML object of the fields to change")])
    commands, queries = _service()
    print_json(queries.run_sync(commands.update_trigger(id, changes, namespace)))
    return 0


@app.command(help="Stop running a trigger, keeping its configuration.")
@talks_to_server
def pause(id: TriggerId, namespace: Namespace = None) -> int:
    """Pause through the stack's REST API when it runs."""
    return _switch("POST", id, "/pause", namespace, lambda commands: commands.pause_trigger(id, namespace))


@app.command(help="Make a paused or failed trigger active again.")
@talks_to_server
def resume(id: TriggerId, namespace: Namespace = None) -> int:
    """Resume through the stack's REST API when it runs."""
    return _switch("POST", id, "/resume", namespace, lambda commands: commands.resume_trigger(id, namespace))


@app.command(help="Soft-delete: disabled, no more runs, history kept.")
@talks_to_server
def delete(id: TriggerId, namespace: Namespace = None) -> int:
    """Soft-delete through the stack's REST API when it runs."""
    return _switch("DELETE", id, "", namespace, lambda commands: commands.delete_trigger(id, namespace))


def _switch(method: str, id: str, suffix: str, namespace: str | None,
            change: Callable[[ModuleType], Awaitable[Any]]) -> int:
    """A change through the stack's REST API when it runs, else `change(commands)` here; prints the trigger."""
    trigger = _by_id(method, id, suffix, namespace)
    if trigger is None:
        commands, queries = _service()
        trigger = queries.run_sync(change(commands))
    print_json(trigger)
    return 0


@app.command(help="Run a trigger now, outside its schedule.")
@talks_to_server
def execute(id: TriggerId, wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to end.")] = False,
            namespace: Namespace = None) -> int:
    """Start a run now (here, with Prefect); with --wait, exit 1 when it failed."""
    commands, queries = _service()
    with spinner(f"running {id}") if wait else nullcontext():
        execution = queries.run_sync(commands.execute_trigger(id, namespace, wait=wait))
    print_json(execution)
    return EXIT_FAILED if execution.status == "failed" else 0


@app.command(help="List a trigger's executions (or, with --evaluations, why it did or did not fire).")
@talks_to_server
def history(
    id: TriggerId,
    offset: Annotated[int, typer.Option(help="Skip this many, newest first.")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    status: Annotated[Optional[ExecutionStatus], typer.Option(help="Only executions in this status.")] = None,
    evaluations: Annotated[bool, typer.Option("--evaluations", help="The evaluator's decisions, newest first.")] = False,
    as_json: AsJson = False,
    namespace: Namespace = None,
) -> int:
    """A trigger's executions, or the evaluator's decisions about it, as a table or JSON."""
    _, queries = _service()
    if evaluations:
        found = queries.run_sync(queries.trigger_evaluations(id, namespace, limit=limit))
        if as_json:
            print_json({"trigger_id": id, "evaluations": found})
        else:
            print_table(("OCCURRED", "EVENT", "DECISION", "DETAILS"),
                        [(format_utc(e.occurred), e.event, e.decision or "-", json.dumps(e.details, separators=(",", ":")))
                         for e in found])
        return 0
    executions, total = queries.run_sync(
        queries.trigger_history(id, namespace, offset=offset, limit=limit, status_filter=status and status.value)
    )
    if as_json:
        print_json({"trigger_id": id, "executions": executions, "total": total, "offset": offset, "limit": limit})
        return 0
    print_table(
        ("JOB", "TRIGGERED", "STATUS", "MS", "CLUSTERS", "DOCUMENTS", "ERROR"),
        [(e.job_id, format_utc(e.triggered_at) if e.triggered_at else "-", e.status,
          str(e.execution_time_ms or "-"), str(e.num_clusters or "-"), str(e.num_documents or "-"), e.error or "")
         for e in executions],
    )
    print(f"{len(executions)} of {total} executions (offset {offset})")
    return 0


def _service() -> tuple[ModuleType, ModuleType]:
    """The trigger service's commands and queries, to run in this process against the configured
    Prefect server (imports Prefect)."""
    require_prefect_server()
    from prefect_cluster_triggers.deployments.service import commands, queries

    return commands, queries


def _through_stack(method: str, path: str, namespace: str | None, body: Any = None) -> Any | None:
    """The answer of the stack's REST API, as JSON; None when there is no stack, its API does not answer
    (not started, another port) or does not know this CLI's key (another data directory).

    Refusals raise what the lifecycle raises for them (their text is the lifecycle's), so they
    print as they do when it runs here.
    """
    if not found_stack:
        return None
    import httpx

    namespace_id = namespace_id_of(namespace)
    base = found_stack.get("rest_url") or f"http://127.0.0.1:{get_settings().stack.api_port}"
    url = f"{base}{_TRIGGERS}{path}"
    headers = {"Authorization": f"Bearer {_cli_key(namespace_id)}", "X-Namespace": namespace_id}
    try:
        response = httpx.request(method, url, json=body, headers=headers, timeout=httpx.Timeout(120, connect=2))
    except httpx.ConnectError:  # nothing was sent: safe to do it here instead
        return None
    except httpx.HTTPError as exc:  # maybe done, maybe not: never done twice
        print(f"cluster-triggers api ({url}): {exc!r}; see `cluster-triggers get` or the stack's api.log",
              file=sys.stderr)
        raise typer.Exit(EXIT_FAILED) from None
    if response.status_code in (401, 403):
        return None
    if response.is_success:
        return response.json()
    detail = response.json().get("detail") if "json" in response.headers.get("content-type", "") else response.text
    if response.status_code == 422 and isinstance(detail, list):
        raise ContractError([Problem(d["loc"], d["msg"]) for d in detail])
    if response.status_code in (404, 409, 422):
        raise ClusterTriggersError(detail)
    print(f"cluster-triggers api ({url}): {response.status_code} {detail}", file=sys.stderr)
    raise typer.Exit(EXIT_FAILED)


def _cli_key(namespace_id: str) -> str:
    """This user's REST API key for `namespace_id`, made on first use (recorded with the user's name,
    like `keys create`) and kept in `<data dir>/cli_keys.json`, readable by the user only: the
    same person can read the key store and the data next to it anyway."""
    path = get_settings().storage.data_dir / "cli_keys.json"
    try:
        keys = json.loads(path.read_text())
    except FileNotFoundError:
        keys = {}
    if namespace_id not in keys:
        keys[namespace_id], _ = KeyStore().create([namespace_id], getpass.getuser())
        staging = path.with_name(f".{path.name}.{os.getpid()}")
        staging.touch(mode=0o600)
        staging.write_text(json.dumps(keys, indent=2))
        os.replace(staging, path)
    return keys[namespace_id]


def _by_id(method: str, trigger_id: str, action: str, namespace: str | None) -> Any | None:
    """A call on one trigger through the stack; None (do it here) for an id that is no plain path segment."""
    if not _PATH_SAFE_ID.fullmatch(trigger_id):
        return None
    return _through_stack(method, f"/{trigger_id}{action}", namespace)


def _parse_instant(text: str) -> datetime:
    """An ISO 8601 instant with a timezone (`--after`)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("not an ISO 8601 time such as 2027-03-14T00:00:00Z") from None
    if value.tzinfo is None:
        raise ValueError("needs a timezone, e.g. a trailing Z for UTC")
    return value
