"""`cluster-triggers render`: a folder of trigger files as `prefect.yaml` deployments.

The folder is the package's example triggers (`deployments/triggers/` in the repository,
package data once installed) unless `--triggers DIR` names a project's own. Each file
(JSON or YAML, the seed's request format) is one trigger whose id is the file's
name without extension. `prefect --no-prompt deploy --all` then creates the same
deployments `cluster-triggers create --id <name> <file>` would. Interval schedules are
anchored at a fixed instant (2026-01-01T00:00:00Z) so the file stays the same on every
render and a redeploy changes nothing; through `prefect deploy`, `start_immediately` waits
for the first slot after deployment (`make run` starts such triggers once itself). The files
are the source of truth for `prefect deploy`: a redeploy sets each trigger's paused state
to its file's `status`.

Where the code comes from is the settings' deployment target (work pool, job variables,
pull steps): the file's `pull:` is exactly the configured steps, `[]` by default, which
tells `prefect deploy` not to add a step into the deploying machine's directory.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml

from prefect_cluster_triggers.core.contract import validate_request
from prefect_cluster_triggers.core.errors import ContractError, Problem
from prefect_cluster_triggers.core.names import namespace_id_of
from prefect_cluster_triggers.core.settings import get_settings
from prefect_cluster_triggers.deployments.cli.common import EXIT_FAILED
from prefect_cluster_triggers.deployments.cli.documents import parse_document
from prefect_cluster_triggers.deployments.prefect_objects.translate import (
    TriggerRecord,
    default_target,
    deployment_fields,
)

app = typer.Typer()

EXAMPLE_TRIGGERS = files("prefect_cluster_triggers.deployments") / "triggers"
RENDER_ANCHOR = datetime(2026, 1, 1, tzinfo=timezone.utc)

_HEADER = """\
# Prefect project file for prefect-cluster-triggers.
# The deployments below are generated from trigger files by `cluster-triggers render`
# ({folder}); edit the trigger files, not this list.
# `prefect --no-prompt deploy --all` deploys them.
"""


@app.command(help="Write a folder of trigger files into prefect.yaml.")
def render(
    triggers: Annotated[Optional[str], typer.Option(metavar="DIR", help="Folder of trigger files (default: the "
                                                    "package's examples).")] = None,
    output: Annotated[str, typer.Option(metavar="FILE", help="Prefect project file.")] = "prefect.yaml",
    check: Annotated[bool, typer.Option("--check", help="Only check that the file is up to date.")] = False,
) -> int:
    """Write (or with --check, compare) the project file `prefect deploy` reads; exit 1 when it is out of date."""
    text = render_prefect_yaml(Path(triggers)) if triggers else render_prefect_yaml()
    path = Path(output)
    if check:
        if not path.exists() or path.read_text() != text:
            print(f"{path}: out of date with its trigger files; run `cluster-triggers render`", file=sys.stderr)
            return EXIT_FAILED
        return 0
    path.write_text(text)
    print(f"wrote {path}")
    return 0


def trigger_files(directory: Traversable = EXAMPLE_TRIGGERS) -> list[Traversable]:
    """The trigger files of `directory` (JSON or YAML), in name order, so the rendered file is stable."""
    return sorted((p for p in directory.iterdir() if p.name.endswith((".json", ".yaml", ".yml"))), key=lambda p: p.name)


def render_prefect_yaml(directory: Traversable = EXAMPLE_TRIGGERS) -> str:
    """The full text of `prefect.yaml` for the trigger files in `directory`.

    Raises:
        ContractError: a trigger file is invalid (problems prefixed with its name).
    """
    settings = get_settings()
    target = default_target()
    deployments: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for path in trigger_files(directory):
        try:
            request = validate_request(parse_document(path.read_text()))
        except ContractError as exc:
            problems += [Problem(f"{path.name}: {p.path}", p.message) for p in exc.problems]
            continue
        trigger_id = path.name.rsplit(".", 1)[0]
        record = TriggerRecord(trigger_id=trigger_id, namespace_id=namespace_id_of(settings.rules.namespace), request=request)
        fields = deployment_fields(record, anchor=RENDER_ANCHOR, target=target, paused=request.status == "paused")
        deployments.append(fields)
    if problems:
        raise ContractError(problems)
    project = {
        "name": "prefect-cluster-triggers",
        "prefect-version": "3.9.1",
        "pull": target.pull_steps,
        "deployments": deployments,
    }
    # The folder as the user named it (`--triggers DIR`), not where the package's examples are installed.
    folder = "deployments/triggers/ here" if directory == EXAMPLE_TRIGGERS else f"{str(directory).rstrip('/')}/"
    return _HEADER.format(folder=folder) + yaml.safe_dump(project, sort_keys=False, width=120)
