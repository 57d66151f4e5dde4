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
    """Run `argv[1:]` until it exits or this guard is told to stop; `argv[0]` is the stack's pid.

    The stopping signals are blocked and taken with `sigtimedwait` between looks at the command,
    so a stop never interrupts the guard half-way through anything."""
    stack_pid, command = int(argv[0]), argv[1:]
    signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)
    _on_parent_death(signal.SIGTERM)
    child = subprocess.Popen(command, start_new_session=True, preexec_fn=_in_the_command)
    stopping = None if os.getppid() == stack_pid else signal.SIGTERM  # the stack died before we asked
    while stopping is None:
        code = child.poll()
        if code is not None:
            return code
        received = signal.sigtimedwait(_WAITED, 1.0)
        if received is not None and received.si_signo in _STOPPING:
            stopping = received.si_signo
    _stop_group(child)
    return 128 + stopping


def _in_the_command() -> None:
    """In the command's process, before exec: signals as usual, and killed at once with its guard."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _WAITED)
    _on_parent_death(signal.SIGKILL)


def _on_parent_death(sig: int) -> None:
    """Ask Linux to send `sig` to this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, sig)


_STOPPING = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
_WAITED = _STOPPING | {signal.SIGCHLD}  # SIGCHLD: the command exited


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
