"""`cluster-triggers render`: the trigger files in `deployments/triggers/` as `prefect.yaml` deployments.

Each file (JSON or YAML, the seed's request format) is one trigger whose id is the file's
name without extension. `prefect --no-prompt deploy --all` then creates the same
deployments `cluster-triggers create --id <name> <file>` would. Interval schedules are
anchored at a fixed instant (2026-01-01T00:00:00Z) so the file stays the same on every
render and a redeploy changes nothing; through `prefect deploy`, `start_immediately` waits
for the first slot after deployment (`make run` starts such triggers once itself). The files
are the source of truth for `prefect deploy`: a redeploy sets each trigger's paused state
to its file's `status`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from deployments.access import namespace_id_of
from deployments.contract import validate_request
from deployments.errors import ContractError, Problem
from deployments.settings import get_settings
from deployments.translate import PROJECT_DIR, TriggerRecord, deployment_fields

TRIGGERS_DIR = PROJECT_DIR / "deployments" / "triggers"
PREFECT_YAML = PROJECT_DIR / "prefect.yaml"
RENDER_ANCHOR = datetime(2026, 1, 1, tzinfo=timezone.utc)

_HEADER = """\
# Prefect project file for prefect-cluster-triggers.
# The deployments below are generated from deployments/triggers/ by `cluster-triggers render`;
# edit the trigger files, not this list. `prefect --no-prompt deploy --all` deploys them.
"""


def trigger_files(directory: Path = TRIGGERS_DIR) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".json", ".yaml", ".yml"))


def render_prefect_yaml(directory: Path = TRIGGERS_DIR) -> str:
    """The full text of `prefect.yaml` for the trigger files in `directory`.

    Raises:
        ContractError: a trigger file is invalid (problems prefixed with its name).
    """
    from deployments.cli import load_document

    settings = get_settings()
    deployments: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for path in trigger_files(directory):
        try:
            request = validate_request(load_document(str(path)))
        except ContractError as exc:
            problems += [Problem(f"{path.name}: {p.path}", p.message) for p in exc.problems]
            continue
        record = TriggerRecord(trigger_id=path.stem, namespace_id=namespace_id_of(settings.namespace), request=request)
        fields = deployment_fields(record, anchor=RENDER_ANCHOR, work_pool=settings.work_pool,
                                   paused=request.status == "paused")
        deployments.append(fields)
    if problems:
        raise ContractError(problems)
    project = {
        "name": "prefect-cluster-triggers",
        "prefect-version": "3.9.1",
        "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PWD }}"}}],
        "deployments": deployments,
    }
    return _HEADER + yaml.safe_dump(project, sort_keys=False, width=120)
