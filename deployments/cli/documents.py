"""Request files as plain data: JSON or YAML, from a path or stdin, every problem as one line."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import yaml

from prefect_cluster_triggers.core.errors import ContractError, Problem, field_path

# A trigger request nests four levels deep; the parsers themselves recurse, so a file nested
# hundreds deep would end in a RecursionError instead of a line.
MAX_NESTING = 32


def read_text(path: str) -> str:
    """A UTF-8 text file (`-` for stdin).

    Raises:
        ContractError: the file cannot be read, in one line naming it.
    """
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractError([Problem(path, f"cannot read: {getattr(exc, 'strerror', None) or exc}")]) from None


def load_document(path: str) -> Any:
    """Parse a JSON or YAML file (`-` for stdin) into plain data.

    Raises:
        ContractError: the file is missing, is neither JSON nor YAML, nests too deeply or holds
            a non-finite number.
    """
    return parse_document(read_text(path), source=path)


def parse_document(text: str, *, source: str = "document") -> Any:
    """Parse JSON or YAML text into plain data; problems are reported under `source`.

    Both parsers read `NaN` and `Infinity` (`.nan`, `.inf` in YAML), which no field means:
    they are refused here, each at its field path.
    """
    too_deep = ContractError([Problem(source, f"nested more than {MAX_NESTING} levels deep")])
    try:
        data = _parsed(text, source)
    except RecursionError:
        raise too_deep from None
    problems: list[Problem] = []
    if not _finite(data, (), problems, set()):
        raise too_deep
    if problems:
        raise ContractError(problems)
    return data


def _parsed(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:  # not JSON; also a JSON integer of more than 4,300 digits
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ContractError([Problem(source, f"neither JSON nor YAML{where}: {getattr(exc, 'problem', exc)}")]) from None
    except ValueError as exc:  # a YAML date such as 2027-02-30, an integer too long to convert
        raise ContractError([Problem(source, f"not readable as JSON or YAML: {str(exc).split(';')[0]}")]) from None


def _finite(value: Any, loc: tuple[str | int, ...], problems: list[Problem], done: set[int]) -> bool:
    """Add a problem per non-finite number below `value`; False when it nests too deeply.

    `done` holds the containers already walked: YAML aliases share them, and a file of nested
    aliases would otherwise be walked exponentially often (a cycle still ends at the depth limit).
    """
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(Problem(field_path(loc), f"must be a finite number (got {json.dumps(value)})"))
    if not isinstance(value, (dict, list)) or id(value) in done:
        return True
    if len(loc) >= MAX_NESTING:
        return False
    items = [(str(key), item) for key, item in value.items()] if isinstance(value, dict) else enumerate(value)
    if not all(_finite(item, (*loc, key), problems, done) for key, item in items):
        return False
    done.add(id(value))
    return True
