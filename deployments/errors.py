"""Contract errors: one readable line per problem, naming the field, the value and what is allowed.

The CLI prints these lines (exit code 2) and the REST API returns them (HTTP 422), so a
user sees the same words whichever door they came through.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

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


class ContractError(ValueError):
    """A request that breaks the trigger contract; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    @classmethod
    def from_validation_error(cls, exc: ValidationError) -> ContractError:
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
