"""What every command group shares: exit codes, option types, output, and the way to a server.

Every user mistake ends in exit code 2 and one `<field path or option>: <message>` line per
problem on stderr; a command that needs a server finds the running stack first and prints an
unreachable server in one line with exit code 1. Nothing here imports Prefect.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import sys
from contextlib import contextmanager
from typing import Annotated, Any, Callable, Iterator, Optional, Sequence

import typer
from pydantic import ValidationError
from pydantic_core import to_jsonable_python

from prefect_cluster_triggers.core.errors import ClusterTriggersError, ContractError, Problem

EXIT_FAILED = 1  # no server, the server failed, or a run failed
EXIT_USAGE = 2  # a mistake in what was asked

NO_SERVER = "no Prefect server: start one with `make run` (the CLI finds it by itself) or set PREFECT_API_URL"

RequestFile = Annotated[str, typer.Argument(metavar="FILE", help="Trigger request, JSON or YAML; - reads stdin.")]
TriggerId = Annotated[str, typer.Argument(metavar="ID", help="Trigger id.")]
Namespace = Annotated[Optional[str], typer.Option(help="Namespace (default: setting CLUSTER_TRIGGERS_NAMESPACE).")]
AsJson = Annotated[bool, typer.Option("--json", help="JSON instead of a table.")]

found_stack: dict[str, Any] = {}
"""The running stack this command uses (see `use_running_stack`); empty when none was found or
PREFECT_API_URL was given."""


def usage_line(error: typer.TyperException) -> str | None:
    """A usage mistake as one `<option or argument>: <what>` line, the way contract problems read;
    None when typer has shown the help already (a group called without a command).

    typer exports the root of its usage errors (`TyperException`) but not the kinds below it;
    those keep click's class names, which tell them apart here.
    """
    kinds = {kind.__name__ for kind in type(error).__mro__}
    if "NoArgsIsHelpError" in kinds:
        return None
    if "NoSuchOption" in kinds:
        return f"{getattr(error, 'option_name')}: no such option (see --help)"
    ctx = getattr(error, "ctx", None)
    command = ctx.command_path if ctx else "cluster-triggers"
    param = getattr(error, "param", None)
    if param is None:
        return f"{command}: {error.message} (see --help)"
    name = param.opts[0] if param.param_type_name == "option" else (param.metavar or param.name or "").upper()
    if "MissingParameter" in kinds:
        return f"{name}: missing; see `{command} --help`"
    cause = error.__cause__
    if isinstance(cause, ValidationError):  # typer checks values with pydantic: say what was given
        first = cause.errors()[0]
        return f"{name}: {first['msg'].removeprefix('Value error, ')} (got {first['input']!r})"
    return f"{name}: {error.message}"


def print_json(value: Any) -> None:
    """Print plain data or pydantic models (also nested) as indented JSON, times in UTC with Z."""
    print(json.dumps(to_jsonable_python(value), indent=2))


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


@contextmanager
def spinner(text: str) -> Iterator[None]:
    """A spinner on a terminal (stderr) while a long call runs; nothing in a pipe or a test."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(text):
        yield


def require_prefect_server() -> None:
    """Stop here, in one line and exit code 1, when no Prefect server is configured (no stack found, no
    PREFECT_API_URL in the environment or the Prefect profile): any Prefect client would otherwise start a
    throw-away ephemeral server, slow to start on a busy machine and forgetting all it was told.
    """
    if not configured_api_url():
        print(NO_SERVER, file=sys.stderr)
        raise typer.Exit(EXIT_FAILED)


def configured_api_url() -> str | None:
    """The Prefect API this process would use (imports Prefect's settings)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def use_running_stack() -> None:
    """Point at the stack `make run` keeps up, unless PREFECT_API_URL names another server (before Prefect
    loads its settings).

    A stack still setting up is waited for: before it is ready, a command would race its
    setup, or (with no API URL yet) reach a throw-away ephemeral Prefect server. The stack
    found is kept in `found_stack`: its REST API answers the trigger commands, also in a shell
    where PREFECT_API_URL is exported to that stack's server (as `prefect deploy` needs).
    """
    from prefect_cluster_triggers.core.stack_file import READY, ready_stack, running_stack

    given = os.environ.get("PREFECT_API_URL")
    if given is None:
        def announce(info: dict[str, Any]) -> None:
            print(f"waiting for the cluster-triggers stack (pid {info['pid']}) to finish setting up", file=sys.stderr)

        stack = ready_stack(announce=announce)
    else:
        stack = running_stack()
        if not stack or stack.get("api_url", "").rstrip("/") != given.rstrip("/") or stack.get("state") != READY:
            return
    if stack:
        os.environ["PREFECT_API_URL"] = stack["api_url"]
        found_stack.update(stack)


def talks_to_server(command: Callable[..., int]) -> Callable[..., int]:
    """A command that needs a server: pointed at the running stack first (before Prefect loads its
    settings), its refusals as one line, an unreachable server as one line and exit code 1.

    Prefect is imported by the command body only when it runs the lifecycle in this process (a
    command answered by the stack's REST API never imports it), so the commands the REST API
    answers stay fast. A refusal is named by the command's `id` argument, else by the command
    (or group) the user typed, which typer's context tells: typer fills in the `ctx` added to
    the command's signature.
    """

    @functools.wraps(command)
    def run(ctx: typer.Context, **arguments: Any) -> int:
        import httpx

        try:
            use_running_stack()
        except TimeoutError as exc:
            print(exc, file=sys.stderr)
            return EXIT_FAILED
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry from an embedded server
        try:
            return command(**arguments)
        except ContractError:
            raise  # already located at its field or file
        except ClusterTriggersError as exc:
            subject = arguments.get("id") or ctx.find_root().invoked_subcommand or command.__name__
            raise ContractError([Problem(subject, str(exc))]) from None
        except Exception as exc:
            prefect_errors = sys.modules.get("prefect.exceptions")
            if not isinstance(exc, httpx.HTTPError) and not (
                    prefect_errors and isinstance(exc, prefect_errors.PrefectHTTPStatusError)):
                raise
            print(f"prefect api ({configured_api_url()}): {exc}; "
                  f"start it with `make run` or set PREFECT_API_URL", file=sys.stderr)
            return EXIT_FAILED
        finally:
            events = sys.modules.get("prefect.events.worker")
            if events is not None:
                # Send queued events (documents added, blocks loaded) before exiting, without
                # the worker's "Still processing items" progress warning on stderr.
                logging.getLogger(events.EventsWorker.__name__).setLevel(logging.ERROR)
                events.EventsWorker.drain_all()

    context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    parameters = inspect.signature(command, eval_str=True).parameters.values()
    run.__signature__ = inspect.Signature([context, *parameters])  # type: ignore[attr-defined]
    return run


def needs_prefect(command: Callable[..., int]) -> Callable[..., int]:
    """A command that talks to Prefect in this process: see `talks_to_server`; with no Prefect server
    configured it says what to start before Prefect is asked anything."""

    @functools.wraps(command)
    def checked(**arguments: Any) -> int:
        require_prefect_server()
        return command(**arguments)

    return talks_to_server(checked)
