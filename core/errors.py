"""Every error this project raises on purpose, under one root: `ClusterTriggersError`.

Each says what went wrong in words a data team can act on. The flow turns them into a Failed
state with the message as is, the REST API into 4xx answers, the CLI into one line with
exit code 2; anything else is a bug. A contract error carries one line per problem, naming
the field, the value and what is allowed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError


class ClusterTriggersError(Exception):
    """Base of every error this project raises on purpose."""


class DataError(ClusterTriggersError):
    """The documents cannot be used: NaN or inf, a dimension change, an empty collection, a malformed page."""


class ClusteringRefused(ClusterTriggersError):
    """The requested clustering cannot work on this data; refused before any time is spent."""


class NotFound(ClusterTriggersError):
    """A collection, cluster definition or result that does not exist."""


class SourceUnavailable(ClusterTriggersError):
    """A remote collection did not answer usefully after every retry."""


class Conflict(ClusterTriggersError):
    """A change the contract forbids in the trigger's current state (HTTP 409)."""


class AlreadyExists(Conflict):
    """A trigger with this id exists already."""


class QuotaExceeded(Conflict):
    """A namespace is at its maximum of active triggers."""

# Whole objects are not echoed: the path already says which one, and the line stays readable.
_NO_VALUE_ECHO = {"missing", "required", "unknown_field"}
_VALUE_ECHO_LIMIT = 60


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request, located by its dotted field path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ContractError(ClusterTriggersError):
    """A request that breaks the trigger contract; carries every problem found, not just the first.

    The CLI prints its lines (exit code 2) and the REST API returns them (HTTP 422), so a user
    sees the same words whichever door they came through.
    """

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    @classmethod
    def from_validation_error(cls, exc: ValidationError) -> ContractError:
        """One problem per pydantic error, each at its field path."""
        return cls.from_validation_error_details(exc.errors(include_url=False))

    @classmethod
    def from_validation_error_details(cls, errors: list[Any]) -> ContractError:
        """From pydantic's error dicts (also FastAPI's request validation errors)."""
        return cls([_problem(error) for error in errors])


def field_path(loc: tuple[str | int, ...]) -> str:
    """Render a pydantic location as `execution_config.collection_ids[1]`."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "request"


def _problem(error: Any) -> Problem:
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        message = "required"
    elif error["type"] in ("model_type", "dict_type", "model_attributes_type"):
        message = "must be a JSON object"
    elif error["type"] not in _NO_VALUE_ECHO and not isinstance(error.get("input"), (dict, list)):
        message = f"{message} (got {_echo(error.get('input'))})"
    return Problem(field_path(tuple(error["loc"])), message)


def _echo(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= _VALUE_ECHO_LIMIT else text[: _VALUE_ECHO_LIMIT - 3] + "..."
