"""The Create Cluster Trigger contract: request, response and their validation.

Field for field the seed's API (`../shared/seed/`). Pure pydantic: no Prefect here, so the
contract is checked the same way by the CLI, the REST API and the deployment translation,
and is tested without a server.
"""

from __future__ import annotations

import zoneinfo
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, Literal, TypeVar

from croniter import CroniterBadDateError, croniter
from pydantic import (
    BaseModel,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from prefect_cluster_triggers.core.clustering_config import ClusteringConfig, validate_clustering_config
from prefect_cluster_triggers.core.errors import ContractError
from prefect_cluster_triggers.core.models import StrictModel, UtcDateTime, field_error
from prefect_cluster_triggers.core.settings import get_settings

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
Identifier = Annotated[
    str,
    Field(
        pattern=IDENTIFIER_PATTERN,
        description="Letters, digits, `_`, `.`, `-`; up to 128 characters.",
        examples=["col_abc123"],
    ),
]


class TriggerType(StrEnum):
    """The four kinds of trigger of the contract."""
    cron = "cron"
    interval = "interval"
    event = "event"
    conditional = "conditional"


class TriggerStatus(StrEnum):
    """A trigger's status: `active`, `paused`, `disabled` (deleted) or `failed` (too many failures in a row)."""
    active = "active"
    paused = "paused"
    disabled = "disabled"
    failed = "failed"


class ExecutionStatus(StrEnum):
    """An execution's status as the contract shows it (`history`), whatever Prefect's state names."""

    pending = "pending"
    processing = "processing"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


class EventType(StrEnum):
    """The collection events an event trigger counts."""
    documents_added = "documents_added"
    documents_updated = "documents_updated"
    batch_completed = "batch_completed"


class ConditionType(StrEnum):
    """What a conditional trigger measures: embedding drift, collection volume or clustering quality."""
    drift = "drift"
    volume = "volume"
    quality = "quality"


# Longest interval, cooldown and check interval: one year. Longer is a typo, and past
# Python's datetime range Prefect cannot even store the schedule.
MAX_SECONDS = 31_536_000
# Most documents (or batches) an event trigger waits for.
MAX_EVENT_THRESHOLD = 10**9
# Most collections one trigger clusters together.
MAX_COLLECTIONS = 100

Seconds = Annotated[StrictInt, Field(le=MAX_SECONDS)]

# Metric -> (condition type, upper bound of a meaningful threshold; None = unbounded).
# Every metric is "bigger is worse" and 0 right after a clustering, so thresholds are > 0.
METRICS: dict[str, tuple[ConditionType, float | None]] = {
    "cosine_drift": (ConditionType.drift, 2.0),
    "centroid_shift": (ConditionType.drift, 2.0),
    "document_growth": (ConditionType.volume, None),
    "silhouette_drop": (ConditionType.quality, 2.0),
}


class CronScheduleConfig(StrictModel):
    """Fire on a cron schedule, in a time zone (daylight-saving changes as Prefect's scheduler makes them)."""
    cron_expression: str = Field(
        description="Standard 5-field cron expression (names such as MON-FRI, L, #) or a macro such as @daily.",
        examples=["0 2 * * *"],
    )
    timezone: str = Field("UTC", description="IANA timezone the expression is read in.", examples=["America/New_York"])

    @field_validator("cron_expression")
    @classmethod
    def _prefect_cron(cls, value: str) -> str:
        """Accept what Prefect's `CronSchedule` accepts, checked with our croniter (Prefect is not
        imported here), except what could not run as previewed: seconds and year fields, random
        fields, expressions that never fire."""
        fields = value.split()
        spaced = " ".join(fields)  # any whitespace between fields, as Prefect's croniter reads it; ours splits on spaces
        if len(fields) != 5 and not (len(fields) == 1 and fields[0].startswith("@")):
            raise ValueError(
                "must have 5 fields (minute hour day-of-month month day-of-week) or be a macro such as "
                f"@daily, found {len(fields)}"
            )
        if len(fields) == 1 and value != fields[0]:  # Prefect reads "@daily " as no macro at all
            raise ValueError("a macro such as @daily stands alone: no spaces around it")
        # Prefect's croniter also reads non-ASCII digits such as "٣"; ours does not.
        if not value.isascii() or not croniter.is_valid(spaced):
            raise ValueError("not a valid cron expression, e.g. '0 2 * * *' (02:00 every day)")
        # Prefect refuses a bare R but takes R(0-29) and R/5, then draws new times on every
        # scheduling pass: no preview could say when it runs.
        if any(field[0] in "Rr" for field in fields):
            raise ValueError("random fields (R) are not supported")
        # Our croniter knows W (nearest weekday); Prefect's does not.
        if len(fields) == 5 and "w" in fields[2].casefold():
            raise ValueError("W (nearest weekday) is not supported by Prefect's scheduler")
        try:
            croniter(spaced).get_next()
        except CroniterBadDateError:
            raise ValueError("never fires (no calendar date matches)") from None
        return spaced

    @field_validator("timezone")
    @classmethod
    def _iana_timezone(cls, value: str) -> str:
        if value not in _timezones():
            raise ValueError("not an IANA timezone name, e.g. 'UTC', 'America/New_York', 'Europe/Berlin'")
        return value


class IntervalScheduleConfig(StrictModel):
    """Fire every `interval_seconds`, optionally once at creation."""
    interval_seconds: Seconds = Field(description="Seconds between runs.", examples=[21600])
    start_immediately: StrictBool = Field(False, description="Run once at creation, then every interval.")

    @field_validator("interval_seconds")
    @classmethod
    def _at_least_minimum(cls, value: int) -> int:
        minimum = get_settings().rules.min_interval_seconds
        if value < minimum:
            raise ValueError(f"must be at least {minimum} seconds (setting CLUSTER_TRIGGERS_MIN_INTERVAL_SECONDS)")
        return value


class EventScheduleConfig(StrictModel):
    """Fire after `event_threshold` documents arrived in a collection, at most once per cooldown."""
    event_type: EventType = Field(description="Which collection events count.")
    event_threshold: Annotated[StrictInt, Field(ge=1, le=MAX_EVENT_THRESHOLD)] = Field(
        description="Documents (batches for `batch_completed`) since the last firing that fire the trigger."
    )
    collection_id: Identifier = Field(description="The collection whose events count.")
    cooldown_seconds: Annotated[Seconds, Field(ge=0)] = Field(
        300, description="Least time between two firings; events in between still count."
    )


class ConditionalScheduleConfig(StrictModel):
    """Fire when a metric measured every `check_interval_seconds` exceeds `threshold`."""
    condition_type: ConditionType = Field(description="What kind of condition is measured.")
    threshold: float = Field(strict=True, description="The trigger fires when the metric exceeds this value.")
    metric: str = Field(description="The measurement, valid for the condition type.", examples=["cosine_drift"])
    check_interval_seconds: Annotated[Seconds, Field(ge=60)] = Field(
        description="Seconds between two measurements."
    )

    @model_validator(mode="after")
    def _metric_fits_condition(self) -> ConditionalScheduleConfig:
        allowed = [name for name, (kind, _) in METRICS.items() if kind == self.condition_type]
        if self.metric not in allowed:
            raise field_error(
                ("metric",),
                "metric",
                f"not a metric of condition_type '{self.condition_type}'; allowed: {', '.join(allowed)}",
                self.metric,
            )
        upper = METRICS[self.metric][1]
        if self.threshold <= 0 or (upper is not None and self.threshold > upper):
            bound = f"0 < threshold <= {upper:g}" if upper is not None else "threshold > 0"
            raise field_error(
                ("threshold",), "threshold", f"out of range for metric '{self.metric}': {bound}", self.threshold
            )
        return self


ScheduleConfig = CronScheduleConfig | IntervalScheduleConfig | EventScheduleConfig | ConditionalScheduleConfig

SCHEDULE_MODELS: dict[TriggerType, type[StrictModel]] = {
    TriggerType.cron: CronScheduleConfig,
    TriggerType.interval: IntervalScheduleConfig,
    TriggerType.event: EventScheduleConfig,
    TriggerType.conditional: ConditionalScheduleConfig,
}


class ExecutionConfig(StrictModel):
    """What to cluster and how."""

    collection_ids: list[Identifier] = Field(
        min_length=1, max_length=MAX_COLLECTIONS, description="Collections clustered together; no duplicates."
    )
    config: ClusteringConfig = Field(description="Algorithm, its parameters and preprocessing.")

    @field_validator("collection_ids")
    @classmethod
    def _no_duplicates(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for index, collection_id in enumerate(value):
            if collection_id in seen:
                raise field_error((index,), "duplicate", "listed twice; each collection at most once", collection_id)
            seen.add(collection_id)
        return value

    @field_validator("config", mode="wrap")
    @classmethod
    def _config_for_algorithm(cls, value: Any, _handler: Any) -> Any:
        return validate_clustering_config(value)


class ClusterDefinitionSpec(ExecutionConfig):
    """A cluster definition to store: an execution config with a name that triggers refer to."""

    cluster_id: Identifier | None = Field(None, description="Id to store it under; generated when omitted.")
    description: Annotated[str, Field(max_length=2000)] | None = Field(None, description="What it is for.")


class CreateTriggerRequest(StrictModel):
    """Request to create a cluster trigger (the seed's body, field for field)."""

    trigger_type: TriggerType = Field(description="Decides which `schedule_config` fields are needed.")
    schedule_config: ScheduleConfig = Field(description="Configuration specific to `trigger_type`.")
    cluster_id: Identifier | None = Field(
        None, description="Existing cluster definition to run; excludes `execution_config`.", examples=["cluster_abc123"]
    )
    execution_config: ExecutionConfig | None = Field(
        None, description="Clustering configuration; required when `cluster_id` is not given."
    )
    description: Annotated[str, Field(max_length=2000)] | None = Field(
        None, description="Human-readable description.", examples=["Daily clustering at 2am UTC"]
    )
    status: Literal["active", "paused"] = Field(
        "active", description="Initial status; `disabled` and `failed` are set by the system only."
    )

    @field_validator("schedule_config", mode="wrap")
    @classmethod
    def _schedule_for_type(cls, value: Any, _handler: Any, info: ValidationInfo) -> Any:
        # The sibling trigger_type picks the model; a plain union would guess from the keys.
        trigger_type = info.data.get("trigger_type")
        if trigger_type is None:
            return value  # trigger_type is wrong and already reported; the request fails anyway
        if not isinstance(value, dict):
            raise field_error((), "schedule_type", f"must be an object for trigger_type '{trigger_type}'", value)
        return SCHEDULE_MODELS[trigger_type].model_validate(value)

    @field_validator("status", mode="before")
    @classmethod
    def _system_statuses(cls, value: Any) -> Any:
        if value in (TriggerStatus.disabled, TriggerStatus.failed):
            raise ValueError("is set by the system only; allowed on create: active, paused")
        return value

    @model_validator(mode="after")
    def _cluster_or_config(self) -> CreateTriggerRequest:
        if self.cluster_id is None and self.execution_config is None:
            raise field_error(("execution_config",), "required", "required when cluster_id is not given", None)
        if self.cluster_id is not None and self.execution_config is not None:
            raise field_error(
                ("cluster_id",),
                "exclusive",
                "give cluster_id or execution_config, not both (the cluster's own config is used)",
                self.cluster_id,
            )
        return self


class ClusterTrigger(BaseModel):
    """A cluster trigger as the API returns it (the seed's response model)."""

    namespace_id: str = Field(description="Namespace ID")
    internal_id: str = Field(description="Organization internal ID")
    execution_config: ExecutionConfig | None = Field(
        description="Configuration for cluster execution (a `cluster_id` trigger shows its definition's; null if that was deleted)"
    )
    trigger_type: TriggerType = Field(description="Type of trigger")
    schedule_config: ScheduleConfig | dict[str, Any] = Field(
        description="Type-specific schedule configuration (as stored, when it no longer validates: see `stored_problem`)"
    )
    trigger_id: str = Field(description="Unique trigger ID")
    cluster_id: str | None = Field(None, description="Optional link to cluster definition")
    status: TriggerStatus = Field(TriggerStatus.active, description="Current status")
    last_triggered_at: UtcDateTime | None = Field(None, description="Last time trigger fired")
    last_execution_job_id: str | None = Field(None, description="Job ID of last execution (the Prefect flow run id)")
    next_scheduled_at: UtcDateTime | None = Field(None, description="Next scheduled execution time")
    execution_count: int = Field(0, description="Total executions")
    consecutive_failures: int = Field(0, description="Consecutive execution failures")
    last_execution_status: str | None = Field(None, description="Status of last execution")
    last_execution_error: str | None = Field(None, description="Error from last execution")
    event_counter: int = Field(0, description="Current event count since last trigger")
    last_cooldown_at: UtcDateTime | None = Field(None, description="Last time cooldown was applied")
    last_measurement: float | None = Field(
        None, description="Conditional triggers: the metric's value at the last check (none if it failed)"
    )
    last_condition_check_at: UtcDateTime | None = Field(None, description="Conditional triggers: time of the last check")
    last_check_error: str | None = Field(None, description="Conditional triggers: why the last check failed")
    created_at: UtcDateTime = Field(description="Creation timestamp")
    updated_at: UtcDateTime = Field(description="Last update timestamp")
    created_by: str | None = Field(None, description="User who created trigger")
    description: str | None = Field(None, description="Trigger description")
    stored_problem: str | None = Field(
        None, description="Why the stored trigger no longer validates (edited in the Prefect UI): it does not run "
        "until a PATCH fixes it; it can still be read, paused and deleted"
    )


def validate_request(data: Any) -> CreateTriggerRequest:
    """Validate a create request from parsed JSON/YAML, reporting every problem at once.

    Raises:
        ContractError: one `Problem` per broken field; never any other exception.
    """
    return _validated(CreateTriggerRequest, data)


def validate_cluster_definition(data: Any) -> ClusterDefinitionSpec:
    """Validate a cluster definition file (`cluster-triggers clusters create`).

    Raises:
        ContractError: one `Problem` per broken field.
    """
    return _validated(ClusterDefinitionSpec, data)


def validate_execution_config(data: Any) -> ExecutionConfig:
    """Validate an execution config on its own (a stored cluster definition).

    Raises:
        ContractError: one `Problem` per broken field.
    """
    return _validated(ExecutionConfig, data)


_Model = TypeVar("_Model", bound=BaseModel)


def _validated(model: type[_Model], data: Any) -> _Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ContractError.from_validation_error(exc) from None


@cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())
