"""`cluster-triggers`: the command line of the trigger contract, on typer (rich help, shell completion).

Every user mistake ends in exit code 2 and one `<field path or option>: <message>` line per
problem on stderr, never a traceback or a usage page. Tables (`ls`, `history`) are rich
tables, `--json` prints JSON instead; the other commands print JSON. `validate` and
`preview` import no Prefect: the commands that need it import it when they run.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Optional, Sequence

import typer
from typer._click import exceptions as usage  # typer 0.29 vendors click: its exceptions live here
from typer._click.globals import get_current_context
import yaml
from pydantic import ValidationError
from pydantic_core import to_jsonable_python

from prefect_cluster_triggers.deployments._models import format_utc
from prefect_cluster_triggers.deployments.contract import (
    ConditionalScheduleConfig,
    EventScheduleConfig,
    EventType,
    validate_request,
)
from prefect_cluster_triggers.deployments.errors import ContractError, Problem
from prefect_cluster_triggers.deployments.fire_times import describe_wait, next_fire_times
from prefect_cluster_triggers.flows.errors import ClusterTriggersError

_USAGE_ERROR = 2
_API_ERROR = 1

app = typer.Typer(name="cluster-triggers", help="Create and inspect re-clustering triggers (a Prefect plugin).",
                  no_args_is_help=True, pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]})
collections_app = typer.Typer(help="Document collections (LanceDB tables).", no_args_is_help=True)
clusters_app = typer.Typer(help="Cluster definitions.", no_args_is_help=True)
keys_app = typer.Typer(help="REST API keys.", no_args_is_help=True)
app.add_typer(collections_app, name="collections")
app.add_typer(clusters_app, name="clusters")
app.add_typer(keys_app, name="keys")

RequestFile = Annotated[str, typer.Argument(metavar="FILE", help="Trigger request, JSON or YAML; - reads stdin.")]
TriggerId = Annotated[str, typer.Argument(metavar="ID", help="Trigger id.")]
Namespace = Annotated[Optional[str], typer.Option(help="Namespace (default: setting CLUSTER_TRIGGERS_NAMESPACE).")]
AsJson = Annotated[bool, typer.Option("--json", help="JSON instead of a table.")]
CollectionId = Annotated[str, typer.Argument(metavar="COLLECTION_ID", help="Collection id (created on first add).")]


class ExecutionStatus(StrEnum):
    pending = "pending"
    processing = "processing"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        result = app(args=list(sys.argv[1:] if argv is None else argv), prog_name="cluster-triggers",
                     standalone_mode=False)
    except usage.NoArgsIsHelpError:  # the help was shown
        return _USAGE_ERROR
    except usage.UsageError as exc:
        print(_usage_line(exc), file=sys.stderr)
        return _USAGE_ERROR
    except typer.Exit as exc:  # --help, --show-completion
        return exc.exit_code
    except typer.Abort:  # Ctrl-C
        return 130
    except ContractError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return _USAGE_ERROR
    return result if isinstance(result, int) else 0


def _needs_prefect(command: Callable[..., int]) -> Callable[..., int]:
    """A command that talks to Prefect: pointed at the running stack first (before Prefect loads its
    settings), its refusals as one line, an unreachable Prefect API as one line and exit code 1.
    Prefect is imported only now, so `validate` and `preview` stay instant and Prefect-free."""

    @functools.wraps(command)
    def run(**arguments: Any) -> int:
        try:
            _use_running_stack()
        except TimeoutError as exc:
            print(exc, file=sys.stderr)
            return _API_ERROR
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry from an embedded server
        import httpx
        from prefect.events.worker import EventsWorker
        from prefect.exceptions import PrefectHTTPStatusError
        from prefect.settings import PREFECT_API_URL

        try:
            return command(**arguments)
        except ClusterTriggersError as exc:
            subject = arguments.get("id") or get_current_context().find_root().invoked_subcommand or command.__name__
            raise ContractError([Problem(subject, str(exc))]) from None
        except (httpx.HTTPError, PrefectHTTPStatusError) as exc:
            where = PREFECT_API_URL.value() or "the embedded server"
            print(f"prefect api ({where}): {exc}; start it with `make run` or set PREFECT_API_URL", file=sys.stderr)
            return _API_ERROR
        finally:
            # Send queued events (documents added, blocks loaded) before exiting, without
            # the worker's "Still processing items" progress warning on stderr.
            logging.getLogger(EventsWorker.__name__).setLevel(logging.ERROR)
            EventsWorker.drain_all()

    return run


@app.command(help="Check a trigger request and print it normalised.")
def validate(file: RequestFile) -> int:
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


@collections_app.command("add", help="Add or replace documents by id, streaming the file (collection created if new).")
@_needs_prefect
def collections_add(
    collection_id: CollectionId,
    vectors: Annotated[str, typer.Option(metavar="FILE", help=".npy float matrix (one row per document), .parquet "
                                         "(id, vector, payload columns) or .jsonl ({id, vector, payload} per line).")],
    ids: Annotated[Optional[str], typer.Option(metavar="FILE.txt", help="With .npy: one id per line "
                                               "(default: running numbers).")] = None,
    payloads: Annotated[Optional[str], typer.Option(metavar="FILE.jsonl", help="With .npy: one JSON payload per line.")] = None,
) -> int:
    from prefect_cluster_triggers.deployments._cli_clustering import collections_add as add

    return add(collection_id, vectors, ids, payloads)


@collections_app.command("delete", help="Delete documents by id.")
@_needs_prefect
def collections_delete(
    collection_id: CollectionId,
    document_ids: Annotated[Optional[list[str]], typer.Option("--id", metavar="ID", help="Repeatable.")] = None,
    ids: Annotated[Optional[str], typer.Option(metavar="FILE.txt", help="One id per line.")] = None,
) -> int:
    from prefect_cluster_triggers.deployments._cli_clustering import collections_delete as delete_documents

    return delete_documents(collection_id, document_ids or [], ids)


@collections_app.command("notify", help="Tell event triggers that documents of a collection (stored elsewhere) changed.")
@_needs_prefect
def collections_notify(
    collection_id: CollectionId,
    event_type: EventType,
    count: Annotated[Optional[int], typer.Option(help="How many documents (default 1).")] = None,
) -> int:
    from prefect_cluster_triggers.deployments._cli_clustering import collections_notify as notify

    return notify(collection_id, event_type.value, count)


@clusters_app.command("create", help="Store a cluster definition (collection_ids, config).")
@_needs_prefect
def clusters_create(file: Annotated[str, typer.Argument(metavar="FILE", help="JSON or YAML; - reads stdin.")]) -> int:
    from prefect_cluster_triggers.deployments._cli_clustering import clusters_create as store

    return store(file)


@app.command(help="Run the clustering flow once on a trigger request and wait.")
@_needs_prefect
def cluster(file: Annotated[str, typer.Argument(metavar="FILE", help="Trigger request (its execution_config or "
                                                "cluster_id is used).")]) -> int:
    from prefect_cluster_triggers.deployments._cli_clustering import cluster_once

    with spinner("clustering"):
        return cluster_once(file)


@app.command(help="Print the latest result of a trigger or cluster.")
@_needs_prefect
def results(
    id: Annotated[str, typer.Argument(metavar="ID", help="Trigger id, cluster id, or the results_id a run printed.")],
    members: Annotated[bool, typer.Option("--members", help="Add every document's cluster and distance.")] = False,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="FILE", help="With --members: write them "
                                                  "to FILE (.csv, .jsonl or .parquet) instead of printing them.")] = None,
) -> int:
    from prefect_cluster_triggers.deployments._cli_clustering import results as show

    return show(id, members, output)


@app.command(help="Create a trigger (a Prefect deployment) from a request file.")
@_needs_prefect
def create(file: RequestFile, id: Annotated[Optional[str], typer.Option(help="Trigger id (default: generated "
                                                                        "trg_...).")] = None,
           namespace: Namespace = None) -> int:
    from prefect_cluster_triggers.deployments._cli_triggers import create as make

    return make(file, id, namespace)


@app.command(help="List triggers.")
@_needs_prefect
def ls(as_json: AsJson = False, limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
       namespace: Namespace = None) -> int:
    from prefect_cluster_triggers.deployments._cli_triggers import ls as listing

    return listing(as_json, limit, namespace)


@app.command(help="Show a trigger with its status and counters (JSON).")
@_needs_prefect
def get(id: TriggerId, namespace: Namespace = None) -> int:
    from prefect_cluster_triggers.deployments._cli_triggers import get as show

    return show(id, namespace)


@app.command(help="Change schedule_config, description or status.")
@_needs_prefect
def update(id: TriggerId, file: Annotated[str, typer.Argument(metavar="FILE", help="JSON or YAML object of the fields "
                                                                "to change; - reads stdin.")],
           namespace: Namespace = None) -> int:
    from prefect_cluster_triggers.deployments._cli_triggers import update as change

    return change(id, file, namespace)


@app.command(help="Stop running a trigger, keeping its configuration.")
@_needs_prefect
def pause(id: TriggerId, namespace: Namespace = None) -> int:
    from prefect_cluster_triggers.deployments._cli_triggers import pause as stop

    return stop(id, namespace)


@app.command(help="Make a paused or failed trigger active again.")
@_needs_prefect
def resume(id: TriggerId, namespace: Namespace = None) -> int:
    from prefect_cluster_triggers.deployments._cli_triggers import resume as restart

    return restart(id, namespace)


@app.command(help="Soft-delete: disabled, no more runs, history kept.")
@_needs_prefect
def delete(id: TriggerId, namespace: Namespace = None) -> int:
    from prefect_cluster_triggers.deployments._cli_triggers import delete as remove

    return remove(id, namespace)


@app.command(help="Run a trigger now, outside its schedule.")
@_needs_prefect
def execute(id: TriggerId, wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to end.")] = False,
            namespace: Namespace = None) -> int:
    from prefect_cluster_triggers.deployments._cli_triggers import execute as run

    with spinner(f"running {id}") if wait else _nothing():
        return run(id, wait, namespace)


@app.command(help="List a trigger's executions (or, with --evaluations, why it did or did not fire).")
@_needs_prefect
def history(
    id: TriggerId,
    offset: Annotated[int, typer.Option(help="Skip this many, newest first.")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    status: Annotated[Optional[ExecutionStatus], typer.Option(help="Only executions in this status.")] = None,
    evaluations: Annotated[bool, typer.Option("--evaluations", help="The evaluator's decisions, newest first.")] = False,
    as_json: AsJson = False,
    namespace: Namespace = None,
) -> int:
    from prefect_cluster_triggers.deployments._cli_triggers import history as show

    return show(id, offset=offset, limit=limit, status=status and status.value, evaluations=evaluations,
                as_json=as_json, namespace=namespace)


@keys_app.command("create", help="Make an API key (printed once; only its hash is kept).")
def keys_create(
    namespace: Annotated[list[str], typer.Option(metavar="NS", help="Namespace name or id the key may use "
                                                 "(repeat for several).")],
    created_by: Annotated[Optional[str], typer.Option(help="Recorded as created_by (default: your user name).")] = None,
) -> int:
    import getpass

    from prefect_cluster_triggers.deployments.access import KeyStore

    key, record = KeyStore().create(namespace, created_by or getpass.getuser())
    print_json({"api_key": key, "key_id": record.key_id, "namespace_ids": record.namespace_ids})
    print("store the api_key now: it is not kept and cannot be shown again", file=sys.stderr)
    return 0


@app.command(help="Serve the REST API (/v1/clusters/triggers) and the evaluator.")
@_needs_prefect
def api(host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[Optional[int], typer.Option(help="Default: setting CLUSTER_TRIGGERS_API_PORT (8080).")] = None) -> int:
    from prefect_cluster_triggers.deployments._cli_triggers import serve_api

    return serve_api(host, port)


@app.command(help="Write a folder of trigger files into prefect.yaml.")
@_needs_prefect
def render(
    triggers: Annotated[Optional[str], typer.Option(metavar="DIR", help="Folder of trigger files (default: the "
                                                    "package's examples).")] = None,
    output: Annotated[str, typer.Option(metavar="FILE", help="Prefect project file.")] = "prefect.yaml",
    check: Annotated[bool, typer.Option("--check", help="Only check that the file is up to date.")] = False,
) -> int:
    from prefect_cluster_triggers.deployments._cli_triggers import render as write

    return write(triggers, output, check)


def _use_running_stack() -> None:
    """Point at the stack `make run` keeps up, unless PREFECT_API_URL says otherwise (before Prefect loads its settings).

    A stack still setting up is waited for: before it is ready, a command would race its
    setup, or (with no API URL yet) reach a throw-away ephemeral Prefect server.
    """
    if "PREFECT_API_URL" not in os.environ:
        from prefect_cluster_triggers.deployments.stack import ready_stack

        def announce(info: dict[str, Any]) -> None:
            print(f"waiting for the cluster-triggers stack (pid {info['pid']}) to finish setting up", file=sys.stderr)

        stack = ready_stack(announce=announce)
        if stack:
            os.environ["PREFECT_API_URL"] = stack["api_url"]


def _usage_line(exc: usage.UsageError) -> str:
    """A usage mistake as one `<option or argument>: <what>` line, the way contract problems read."""
    param = getattr(exc, "param", None)
    if isinstance(exc, usage.NoSuchOption):
        return f"{exc.option_name}: no such option (see --help)"
    if param is not None:
        name = param.opts[0] if param.param_type_name == "option" else (param.metavar or param.name or "").upper()
        if isinstance(exc, usage.MissingParameter):
            return f"{name}: missing; see `{exc.ctx.command_path if exc.ctx else 'cluster-triggers'} --help`"
        cause = exc.__cause__
        if isinstance(cause, ValidationError):  # typer checks values with pydantic: say what was given
            error = cause.errors()[0]
            return f"{name}: {error['msg'].removeprefix('Value error, ')} (got {error['input']!r})"
        return f"{name}: {exc.message}"
    command = exc.ctx.command_path if exc.ctx else "cluster-triggers"
    return f"{command}: {exc.message} (see --help)"


@contextmanager
def spinner(text: str) -> Iterator[None]:
    """A spinner on a terminal (stderr) while a long call runs; nothing in a pipe or a test."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(text):
        yield


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def print_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A rich table on stdout; piped, one unwrapped line per row (for grep and awk)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    Console(width=None if sys.stdout.isatty() else 100_000, highlight=False).print(table)


def read_text(path: str) -> str:
    """A UTF-8 text file (`-` for stdin).

    Raises:
        ContractError: the file cannot be read, in one line naming it.
    """
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractError([Problem(path, f"cannot read: {getattr(exc, 'strerror', None) or exc}")]) from None


def print_json(value: Any) -> None:
    """Print plain data or pydantic models (also nested) as indented JSON, times in UTC with Z."""
    print(json.dumps(to_jsonable_python(value), indent=2))


def load_document(path: str) -> Any:
    """Parse a JSON or YAML file (`-` for stdin) into plain data.

    Raises:
        ContractError: the file is missing or is neither JSON nor YAML.
    """
    return parse_document(read_text(path), source=path)


def parse_document(text: str, *, source: str = "document") -> Any:
    """Parse JSON or YAML text into plain data; problems are reported under `source`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ContractError([Problem(source, f"neither JSON nor YAML{where}: {getattr(exc, 'problem', exc)}")]) from None


def _parse_instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("not an ISO 8601 time such as 2027-03-14T00:00:00Z") from None
    if value.tzinfo is None:
        raise ValueError("needs a timezone, e.g. a trailing Z for UTC")
    return value


if __name__ == "__main__":
    sys.exit(main())
