"""Runs one process of a local stack and stops it, with all it started, when the stack goes.

`python -m prefect_cluster_triggers.deployments.stack.guard <stack pid> <command...>`

A stack killed outright (SIGKILL, the OOM killer) runs no code of its own, so each child
asks Linux for a signal when its parent dies. A `prefect worker` that gets it with its
Prefect server gone does not exit: it forwards the signal to its inner process, which keeps
retrying the dead server (still running 120 s later). So every process runs under this
guard, which gets the parent-death signal, asks the command's whole process group to stop,
and kills what is left after `GRACE` seconds; the command's own exit is the guard's. A guard
killed outright (the stack's last resort, a test's SIGKILL) takes its command with it at once.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

GRACE = 10.0  # seconds a stopped command has to exit before its group is killed (the stack waits 15)
_PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    """Run `argv[1:]` until it exits or this guard is told to stop; `argv[0]` is the stack's pid."""
    stack_pid, command = int(argv[0]), argv[1:]
    _on_parent_death(signal.SIGTERM)
    child = subprocess.Popen(command, start_new_session=True, preexec_fn=lambda: _on_parent_death(signal.SIGKILL))
    for sig in _STOPPING:
        signal.signal(sig, _raise_stop)
    try:
        if os.getppid() != stack_pid:  # the stack died before the parent-death signal was asked for
            raise _Stop(signal.SIGTERM)
        return child.wait()
    except _Stop as stop:  # raised out of the wait, which gives up its lock: stopping waits for the child again
        for sig in _STOPPING:
            signal.signal(sig, signal.SIG_IGN)
        _stop_group(child)
        return 128 + stop.signum


class _Stop(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_parent_death(sig: int) -> None:
    """Ask Linux to send `sig` to this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, sig)


def _raise_stop(signum: int, _frame: object) -> None:
    raise _Stop(signum)


_STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _stop_group(child: subprocess.Popen) -> None:
    """SIGTERM to the command's process group, SIGKILL to what is left of it after `GRACE` seconds."""
    try:
        os.killpg(child.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + GRACE
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        os.killpg(child.pid, signal.SIGKILL)  # also what the command started and left behind
    except ProcessLookupError:
        pass
    child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
