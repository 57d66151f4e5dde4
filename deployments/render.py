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

from datetime import datetime, timezone
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

import yaml

from prefect_cluster_triggers.deployments.access import namespace_id_of
from prefect_cluster_triggers.deployments.contract import validate_request
from prefect_cluster_triggers.deployments.errors import ContractError, Problem
from prefect_cluster_triggers.deployments.settings import get_settings
from prefect_cluster_triggers.deployments.translate import TriggerRecord, default_target, deployment_fields

EXAMPLE_TRIGGERS = files("prefect_cluster_triggers.deployments") / "triggers"
RENDER_ANCHOR = datetime(2026, 1, 1, tzinfo=timezone.utc)

_HEADER = """\
# Prefect project file for prefect-cluster-triggers.
# The deployments below are generated from trigger files by `cluster-triggers render`
# (deployments/triggers/ here); edit the trigger files, not this list.
# `prefect --no-prompt deploy --all` deploys them.
"""


def trigger_files(directory: Traversable = EXAMPLE_TRIGGERS) -> list[Traversable]:
    return sorted((p for p in directory.iterdir() if p.name.endswith((".json", ".yaml", ".yml"))), key=lambda p: p.name)


def render_prefect_yaml(directory: Traversable = EXAMPLE_TRIGGERS) -> str:
    """The full text of `prefect.yaml` for the trigger files in `directory`.

    Raises:
        ContractError: a trigger file is invalid (problems prefixed with its name).
    """
    from prefect_cluster_triggers.deployments.cli import parse_document

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
        record = TriggerRecord(trigger_id=trigger_id, namespace_id=namespace_id_of(settings.namespace), request=request)
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
    return _HEADER + yaml.safe_dump(project, sort_keys=False, width=120)
