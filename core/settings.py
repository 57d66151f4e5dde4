"""Project settings, read from `CLUSTER_TRIGGERS_*` environment variables, in groups by concern.

Each group is read on its own (`get_settings().storage`, `.target`, ...), so a module names
only the concern it depends on. Every variable keeps its flat name (`CLUSTER_TRIGGERS_WORK_POOL`,
`CLUSTER_TRIGGERS_EVALUATOR_SWEEP_SECONDS`): the groups organise the code, not the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "CLUSTER_TRIGGERS_"


class _Group(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)  # shared: see get_settings


class TriggerRules(_Group):
    """Bounds the contract and the trigger service apply to every trigger."""

    min_interval_seconds: int = Field(60, ge=1, description="Smallest `interval_seconds` an interval trigger may use.")
    max_consecutive_failures: int = Field(
        5, ge=1, description="Failed runs in a row after which a trigger becomes `failed` and stops."
    )
    max_active_triggers: int = Field(50, ge=1, description="Most active triggers a namespace may have.")
    namespace: str = Field("default", description="Namespace of triggers made from the CLI and prefect.yaml.")


class DeploymentTarget(_Group):
    """Where trigger deployments run and how a worker gets the code."""

    work_pool: str = Field(
        "cluster-triggers", description="Work pool that runs trigger deployments (process, Docker, Kubernetes, ...)."
    )
    job_variables: dict[str, Any] = Field(
        default_factory=dict,
        description="Job variables of every trigger deployment, as JSON, e.g. `{\"image\": \"registry/team:1.2\"}` "
        "for a Docker or Kubernetes pool.",
    )
    pull_steps: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Prefect pull steps of every trigger deployment, as JSON (e.g. a `git_clone`). None by default: "
        "the flow is imported from the installed package, so any worker with the package runs any trigger.",
    )


class StorageSettings(_Group):
    """Where collections and results live."""

    data_dir: Path = Field(
        Path.home() / ".cluster-triggers",
        description="Where local collections and clustering results live by default.",
    )
    storage_uri: str | None = Field(
        None, description="Where new collections and results go: a directory, or `s3://bucket/prefix` on S3 or an "
        "S3-compatible server (endpoint below, credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY); "
        "the data directory when empty.",
    )
    s3_endpoint_url: str | None = Field(None, description="Endpoint of an S3-compatible server; AWS when empty.")
    s3_region: str = Field("us-east-1", description="Region of the storage bucket.")


class EngineSettings(_Group):
    """Where a run computes."""

    dask_address: str | None = Field(
        None, description="Scheduler of a Dask cluster (`tcp://host:8786`) on which runs assign their documents, one "
        "task per part of a collection; unset, a run does that work in its own process."
    )


class EvaluatorSettings(_Group):
    """How the evaluator of event and conditional triggers runs."""

    evaluator_sweep_seconds: float = Field(
        10.0, gt=0, description="How often the evaluator sweeps: it re-reads the triggers that changed, that events "
        "named or that came due, and a sixtieth of the others, so each trigger at least once in 60 sweeps (wake-ups by automations are immediate; the "
        "sweep catches anything they missed)."
    )
    wake_url: str | None = Field(
        None, description="Address the Prefect server calls to wake the evaluator; "
        "`http://127.0.0.1:<api_port>` when empty."
    )


class StackSettings(_Group):
    """The local stack of `make run`."""

    api_port: int = Field(8080, ge=1, le=65535, description="Port of the REST API `make run` starts.")
    prefect_port: int = Field(4200, ge=1, le=65535, description="Port of the local Prefect server `make run` starts.")
    hold_until_ready: bool = Field(
        False, description="Set by `make run` for its REST API: requests wait until the stack's setup has finished."
    )


class Settings(_Group):
    """Every setting, by group; each group reads its own variables."""

    rules: TriggerRules = Field(default_factory=TriggerRules, description="Bounds applied to every trigger.")
    target: DeploymentTarget = Field(default_factory=DeploymentTarget, description="Where trigger deployments run.")
    storage: StorageSettings = Field(default_factory=StorageSettings, description="Where collections and results live.")
    engine: EngineSettings = Field(default_factory=EngineSettings, description="Where a run computes.")
    evaluator: EvaluatorSettings = Field(default_factory=EvaluatorSettings, description="The evaluator's loop.")
    stack: StackSettings = Field(default_factory=StackSettings, description="The local stack of `make run`.")


def storage_root(storage: StorageSettings) -> str:
    """Where new collections and results go, absolute: every process that reads the saved location agrees."""
    return (storage.storage_uri or str(storage.data_dir.resolve())).rstrip("/")


def get_settings() -> Settings:
    """The settings of the environment as it is now, so a changed environment applies without a restart.

    Built once per distinct set of `CLUSTER_TRIGGERS_*` variables: building reads and validates every
    field (a millisecond), and a trigger's validation alone asks for them a few times.
    """
    key = tuple(sorted((k.upper(), v) for k, v in os.environ.items() if k.upper().startswith(ENV_PREFIX)))
    if key not in _built:
        if len(_built) >= _KEPT:  # environments set and dropped (tests)
            _built.clear()
        _built[key] = Settings()
    return _built[key]


_KEPT = 16
_built: dict[tuple[tuple[str, str], ...], Settings] = {}
