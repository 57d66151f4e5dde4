"""`cluster-triggers`: the command line of the trigger contract, on typer (rich help, shell completion).

This module only assembles the command groups (one module each) and runs them: every user
mistake ends in exit code 2 and one `<field path or option>: <message>` line per problem on
stderr, never a traceback or a usage page. No command module imports Prefect at import
time: `validate` and `preview` never load it, the others when they run.
"""

from __future__ import annotations

import sys
from typing import Sequence

import typer

from prefect_cluster_triggers.core.errors import ContractError
from prefect_cluster_triggers.deployments.cli import (
    clusters,
    collections,
    keys,
    migrate,
    render,
    runs,
    serve,
    triggers,
)
from prefect_cluster_triggers.deployments.cli.common import EXIT_USAGE, usage_line

app = typer.Typer(name="cluster-triggers", help="Create and inspect re-clustering triggers (a Prefect plugin).",
                  no_args_is_help=True, pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]})
for commands in (triggers.app, runs.app, collections.app, clusters.app, keys.app, serve.app, migrate.app, render.app):
    app.add_typer(commands)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: run one command and return its exit code, mistakes as lines instead of tracebacks."""
    try:
        result = app(args=list(sys.argv[1:] if argv is None else argv), prog_name="cluster-triggers",
                     standalone_mode=False)
    except typer.TyperException as exc:  # a usage mistake, found by typer before any command ran
        line = usage_line(exc)
        if line is not None:
            print(line, file=sys.stderr)
        return exc.exit_code
    except ContractError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
