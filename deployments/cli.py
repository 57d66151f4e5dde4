"""`cluster-triggers`: the command line of the trigger contract.

Every user mistake ends in exit code 2 and one `<field path>: <message>` line per problem on
stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import yaml
from pydantic_core import to_jsonable_python

from prefect_cluster_triggers.deployments._models import format_utc
from prefect_cluster_triggers.deployments.contract import EventScheduleConfig, ConditionalScheduleConfig, validate_request
from prefect_cluster_triggers.deployments.errors import ContractError, Problem
from prefect_cluster_triggers.deployments.fire_times import describe_wait, next_fire_times
from prefect_cluster_triggers.flows.errors import ClusterTriggersError

_USAGE_ERROR = 2
_API_ERROR = 1


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ContractError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return _USAGE_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cluster-triggers", description="Create and inspect re-clustering triggers (a Prefect plugin)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check a trigger request and print it normalised")
    validate.add_argument("file", help="trigger request, JSON or YAML; - reads stdin")
    validate.set_defaults(handler=_validate)

    preview = commands.add_parser("preview", help="print the next fire times of a trigger request")
    preview.add_argument("file", help="trigger request, JSON or YAML; - reads stdin")
    preview.add_argument("--next", type=int, default=5, metavar="N", help="how many fire times (1..1000, default 5)")
    preview.add_argument("--after", metavar="ISO-TIME", help="start from this instant, e.g. 2027-03-14T00:00:00Z (default now)")
    preview.set_defaults(handler=_preview)

    collections = commands.add_parser("collections", help="document collections (LanceDB tables)").add_subparsers(
        dest="collections_command", required=True, metavar="COMMAND"
    )
    add = collections.add_parser("add", help="add or replace documents by id, streaming the file (collection created if new)")
    add.add_argument("collection_id")
    add.add_argument("--vectors", required=True, metavar="FILE",
                     help=".npy float matrix (one row per document), .parquet (id, vector, payload columns) "
                          "or .jsonl ({id, vector, payload} per line)")
    add.add_argument("--ids", metavar="FILE.txt", help="with .npy: one id per line (default: running numbers)")
    add.add_argument("--payloads", metavar="FILE.jsonl", help="with .npy: one JSON payload per line")
    add.set_defaults(handler=_lazy("_cli_clustering", "collections_add"))
    delete = collections.add_parser("delete", help="delete documents by id")
    delete.add_argument("collection_id")
    delete.add_argument("--id", dest="document_ids", action="append", default=[], metavar="ID", help="repeatable")
    delete.add_argument("--ids", metavar="FILE.txt", help="one id per line")
    delete.set_defaults(handler=_lazy("_cli_clustering", "collections_delete"))
    notify = collections.add_parser(
        "notify", help="tell event triggers that documents of a collection (stored elsewhere) changed"
    )
    notify.add_argument("collection_id")
    notify.add_argument("event_type", choices=["documents_added", "documents_updated", "batch_completed"])
    notify.add_argument("--count", type=int, help="how many documents (default 1)")
    notify.set_defaults(handler=_lazy("_cli_clustering", "collections_notify"))

    clusters = commands.add_parser("clusters", help="cluster definitions").add_subparsers(
        dest="clusters_command", required=True, metavar="COMMAND"
    )
    create_cluster = clusters.add_parser("create", help="store a cluster definition (collection_ids, config)")
    create_cluster.add_argument("file", help="JSON or YAML; - reads stdin")
    create_cluster.set_defaults(handler=_lazy("_cli_clustering", "clusters_create"))

    run = commands.add_parser("cluster", help="run the clustering flow once on a trigger request and wait")
    run.add_argument("file", help="trigger request (its execution_config or cluster_id is used)")
    run.set_defaults(handler=_lazy("_cli_clustering", "cluster_once"))

    results = commands.add_parser("results", help="print the latest result of a trigger or cluster")
    results.add_argument("id", help="trigger id, cluster id, or the results_id a run printed")
    results.add_argument("--members", action="store_true", help="add every document's cluster and distance")
    results.add_argument("--output", "-o", metavar="FILE",
                         help="with --members: write them to FILE (.csv, .jsonl or .parquet) instead of printing them")
    results.set_defaults(handler=_lazy("_cli_clustering", "results"))

    create = commands.add_parser("create", help="create a trigger (a Prefect deployment) from a request file")
    create.add_argument("file", help="trigger request, JSON or YAML; - reads stdin")
    create.add_argument("--id", help="trigger id (default: generated trg_...)")
    for name, help_text in [
        ("get", "show a trigger with its status and counters"),
        ("pause", "stop running a trigger, keeping its configuration"),
        ("resume", "make a paused or failed trigger active again"),
        ("delete", "soft-delete: disabled, no more runs, history kept"),
        ("execute", "run a trigger now, outside its schedule"),
        ("history", "list a trigger's executions"),
        ("update", "change schedule_config, description or status"),
    ]:
        command = commands.add_parser(name, help=help_text)
        command.add_argument("id", help="trigger id")
        command.set_defaults(handler=_lazy("_cli_triggers", name))
        if name == "update":
            command.add_argument("file", help="JSON or YAML object of the fields to change; - reads stdin")
        if name == "execute":
            command.add_argument("--wait", action="store_true", help="wait for the run to end")
        if name == "history":
            command.add_argument("--offset", type=int, default=0)
            command.add_argument("--limit", type=int, default=50)
            command.add_argument("--status", choices=["pending", "processing", "completed", "failed", "cancelled"])
            command.add_argument("--evaluations", action="store_true",
                                 help="why it did or did not fire: the evaluator's decisions, newest first")
    ls = commands.add_parser("ls", help="list triggers")
    ls.add_argument("--json", action="store_true", help="JSON instead of a table")
    ls.add_argument("--limit", type=int, default=50)
    ls.set_defaults(handler=_lazy("_cli_triggers", "ls"))
    create.set_defaults(handler=_lazy("_cli_triggers", "create"))
    for command in (create, ls, *[commands.choices[n] for n in ("get", "pause", "resume", "delete", "execute",
                                                                 "history", "update")]):
        command.add_argument("--namespace", help="namespace (default: setting CLUSTER_TRIGGERS_NAMESPACE)")

    keys = commands.add_parser("keys", help="REST API keys").add_subparsers(
        dest="keys_command", required=True, metavar="COMMAND"
    )
    create_key = keys.add_parser("create", help="make an API key (printed once; only its hash is kept)")
    create_key.add_argument("--namespace", action="append", required=True, metavar="NS",
                            help="namespace name or id the key may use (repeat for several)")
    create_key.add_argument("--created-by", default=None, help="recorded as created_by (default: your user name)")
    create_key.set_defaults(handler=_create_key)

    api = commands.add_parser("api", help="serve the REST API (/v1/clusters/triggers)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=None, help="default: setting CLUSTER_TRIGGERS_API_PORT (8080)")
    api.set_defaults(handler=_lazy("_cli_triggers", "serve_api"))

    render = commands.add_parser("render", help="write a folder of trigger files into prefect.yaml")
    render.add_argument("--triggers", metavar="DIR", help="folder of trigger files (default: the package's examples)")
    render.add_argument("--output", metavar="FILE", default="prefect.yaml", help="Prefect project file (default ./prefect.yaml)")
    render.add_argument("--check", action="store_true", help="only check that the file is up to date")
    render.set_defaults(handler=_lazy("_cli_triggers", "render"))
    return parser


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """Import the Prefect-side commands only when one of them runs: `validate` stays instant."""

    def handler(args: argparse.Namespace) -> int:
        try:
            _use_running_stack()
        except TimeoutError as exc:
            print(exc, file=sys.stderr)
            return _API_ERROR
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry from an embedded server
        import importlib

        import httpx
        from prefect.events.worker import EventsWorker
        from prefect.exceptions import PrefectHTTPStatusError
        from prefect.settings import PREFECT_API_URL

        try:
            return getattr(importlib.import_module(f"prefect_cluster_triggers.deployments.{module}"), name)(args)
        except ClusterTriggersError as exc:
            raise ContractError([Problem(getattr(args, "id", None) or args.command, str(exc))]) from None
        except (httpx.HTTPError, PrefectHTTPStatusError) as exc:
            where = PREFECT_API_URL.value() or "the embedded server"
            print(f"prefect api ({where}): {exc}; start it with `make run` or set PREFECT_API_URL", file=sys.stderr)
            return _API_ERROR
        finally:
            # Send queued events (documents added, blocks loaded) before exiting, without
            # the worker's "Still processing items" progress warning on stderr.
            logging.getLogger(EventsWorker.__name__).setLevel(logging.ERROR)
            EventsWorker.drain_all()

    return handler


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


def _create_key(args: argparse.Namespace) -> int:
    import getpass

    from prefect_cluster_triggers.deployments.access import KeyStore

    key, record = KeyStore().create(args.namespace, args.created_by or getpass.getuser())
    print_json({"api_key": key, "key_id": record.key_id, "namespace_ids": record.namespace_ids})
    print("store the api_key now: it is not kept and cannot be shown again", file=sys.stderr)
    return 0


def _validate(args: argparse.Namespace) -> int:
    request = validate_request(load_document(args.file))
    print(request.model_dump_json(exclude_none=True, indent=2))
    return 0


def _preview(args: argparse.Namespace) -> int:
    problems = []
    if not 1 <= args.next <= 1000:
        problems.append(Problem("--next", f"must be between 1 and 1000 (got {args.next})"))
    after = datetime.now(timezone.utc)
    if args.after is not None:
        try:
            after = _parse_instant(args.after)
        except ValueError as exc:
            problems.append(Problem("--after", f"{exc} (got {args.after!r})"))
    if problems:
        raise ContractError(problems)
    schedule = validate_request(load_document(args.file)).schedule_config
    if isinstance(schedule, (EventScheduleConfig, ConditionalScheduleConfig)):
        print(describe_wait(schedule))
    else:
        for instant in next_fire_times(schedule, after=after, count=args.next):
            print(format_utc(instant))
    return 0


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
