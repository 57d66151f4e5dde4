"""Shared building blocks of the contract models: strict objects and UTC timestamps."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError


class StrictModel(BaseModel):
    """A contract object that rejects unknown keys and says which keys it knows.

    Pydantic's own `extra="forbid"` only says "Extra inputs are not permitted"; a user who
    typed `n_cluster` needs to see `n_clusters` among the allowed names. Floats are finite:
    JSON and YAML parsers read `NaN` and `.inf`, which no parameter means and Prefect stores
    as null.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        unknown = [key for key in data if key not in cls.model_fields]
        if unknown:
            allowed = ", ".join(cls.model_fields)
            raise ValidationError.from_exception_data(
                cls.__name__,
                [_error((str(key),), "unknown_field", f"unknown field; allowed: {allowed}", data[key]) for key in unknown],
            )
        return data


def field_error(loc: tuple[str | int, ...], kind: str, message: str, value: Any) -> ValidationError:
    """A validation error located at `loc` below the model being validated.

    Raised from a validator, pydantic prefixes the location with the model's own path, so a
    check written at the top level still names the exact field.
    """
    return ValidationError.from_exception_data("contract", [_error(loc, kind, message, value)])


def _error(loc: tuple[str | int, ...], kind: str, message: str, value: Any) -> InitErrorDetails:
    # Braces in user text must not be read as a message template.
    template = message.replace("{", "{{").replace("}", "}}")
    return InitErrorDetails(type=PydanticCustomError(kind, template), loc=loc, input=value)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a timezone is required (write UTC times with a trailing Z)")
    return _plain_utc(value)


def _plain_utc(value: datetime) -> datetime:
    """A standard-library UTC datetime, also from Prefect's Pendulum subclasses."""
    value = value.astimezone(timezone.utc)
    return datetime(*value.timetuple()[:6], value.microsecond, tzinfo=timezone.utc)


def format_utc(value: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, to the second (to the millisecond when there is one)."""
    value = _plain_utc(value)
    spec = "milliseconds" if value.microsecond else "seconds"
    return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


UtcDateTime = Annotated[
    datetime,
    AfterValidator(_as_utc),
    PlainSerializer(format_utc, return_type=str, when_used="json"),
]
"""A timezone-aware instant, always UTC on the wire (`2027-03-14T07:00:00Z`)."""


def _format_exact(value: datetime) -> str:
    return _plain_utc(value).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


ExactUtcDateTime = Annotated[
    datetime,
    AfterValidator(_as_utc),
    PlainSerializer(_format_exact, return_type=str, when_used="json"),
]
"""An instant kept to the microsecond: positions in an event stream must compare equal after a round trip."""
