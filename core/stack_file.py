"""`stack.json`: where the local stack (`make run`) says it is, and whether its setup has finished.

The stack writes the file first with `"state": "starting"` and says `"ready"` only after every
setup step. The CLI waits for `ready` before it talks to Prefect, and the REST API holds
requests until then, so nothing a user does while the stack starts can race its setup, or
reach a throw-away ephemeral Prefect server instead of this one.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from prefect_cluster_triggers.core.settings import get_settings

STARTING, READY = "starting", "ready"


class StackFile:
    """`stack.json`, replaced atomically on each update so a reader never sees half of it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.info: dict[str, Any] = {"pid": os.getpid(), "state": STARTING}

    def update(self, **fields: Any) -> None:
        """Change some fields and replace the file atomically."""
        self.info.update(fields)
        staging = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        staging.write_text(json.dumps(self.info))
        os.replace(staging, self.path)


@contextmanager
def stack_file() -> Iterator[StackFile]:
    """`stack.json` for this process, `starting` at first; removed when the stack stops."""
    stack_file = StackFile(get_settings().storage.data_dir / "stack.json")
    stack_file.update()
    try:
        yield stack_file
    finally:
        stack_file.path.unlink(missing_ok=True)


def running_stack() -> dict | None:
    """The stack recorded in the data directory, when its process is still alive (ready or starting)."""
    path = get_settings().storage.data_dir / "stack.json"
    try:
        info = json.loads(path.read_text())
        os.kill(info["pid"], 0)
    except (OSError, ValueError, KeyError):
        return None
    return info


def ready_stack(timeout: float = 600, *, announce: Callable[[dict], None] | None = None) -> dict | None:
    """The running stack once its setup has finished; None when no stack runs.

    A stack still starting is waited for (`announce(info)` is called once, first), so a
    command issued while `make run` sets up runs after the setup, against the right server.

    Raises:
        TimeoutError: the stack is still starting after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    info = running_stack()
    if info and info.get("state") == STARTING and announce:
        announce(info)
    while info and info.get("state") == STARTING:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the cluster-triggers stack (pid {info['pid']}) is still setting up after {timeout:.0f} s")
        time.sleep(0.2)
        info = running_stack()
    return info
