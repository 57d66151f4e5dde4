"""`cluster-triggers`: the command line of the trigger contract.

Every user mistake ends in exit code 2 and one `<field path>: <message>` line per problem on
stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import yaml

from deployments._models import format_utc
from deployments.contract import EventScheduleConfig, ConditionalScheduleConfig, validate_request
from deployments.errors import ContractError, Problem
from deployments.fire_times import describe_wait, next_fire_times

_USAGE_ERROR = 2


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

    collections = commands.add_parser("collections", help="local document collections").add_subparsers(
        dest="collections_command", required=True, metavar="COMMAND"
    )
    add = collections.add_parser("add", help="append documents to a local collection (created if new)")
    add.add_argument("collection_id")
    add.add_argument("--vectors", required=True, metavar="FILE.npy", help="float matrix, one row per document")
    add.add_argument("--ids", metavar="FILE.txt", help="one id per line (default: running numbers)")
    add.add_argument("--payloads", metavar="FILE.jsonl", help="one JSON payload per line")
    add.set_defaults(handler=_lazy("collections_add"))

    clusters = commands.add_parser("clusters", help="cluster definitions").add_subparsers(
        dest="clusters_command", required=True, metavar="COMMAND"
    )
    create = clusters.add_parser("create", help="store a cluster definition (collection_ids, config)")
    create.add_argument("file", help="JSON or YAML; - reads stdin")
    create.set_defaults(handler=_lazy("clusters_create"))

    run = commands.add_parser("cluster", help="run the clustering flow once on a trigger request and wait")
    run.add_argument("file", help="trigger request (its execution_config or cluster_id is used)")
    run.set_defaults(handler=_lazy("cluster_once"))

    results = commands.add_parser("results", help="print the latest result of a trigger or cluster")
    results.add_argument("id", help="trigger id, cluster id, or the results_id a run printed")
    results.add_argument("--members", action="store_true", help="add every document's cluster and distance")
    results.set_defaults(handler=_lazy("results"))
    return parser


def _lazy(name: str) -> Callable[[argparse.Namespace], int]:
    """Import the Prefect-side commands only when one of them runs: `validate` stays instant."""

    def handler(args: argparse.Namespace) -> int:
        from prefect.events.worker import EventsWorker

        from deployments import _cli_clustering

        try:
            return getattr(_cli_clustering, name)(args)
        finally:
            # Send queued events (documents added, blocks loaded) before exiting, without
            # the worker's "Still processing items" progress warning on stderr.
            logging.getLogger(EventsWorker.__name__).setLevel(logging.ERROR)
            EventsWorker.drain_all()

    return handler


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


def load_document(path: str) -> Any:
    """Parse a JSON or YAML file (`-` for stdin) into plain data.

    Raises:
        ContractError: the file is missing or is neither JSON nor YAML.
    """
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractError([Problem(path, f"cannot read: {getattr(exc, 'strerror', None) or exc}")]) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ContractError([Problem(path, f"neither JSON nor YAML{where}: {getattr(exc, 'problem', exc)}")]) from None


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
