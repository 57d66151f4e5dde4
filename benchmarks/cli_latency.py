"""The CLI's wall time against Prefect's own CLI on the same stack, commands run alternately.

Uses the running stack of `make run` when there is one (its triggers made here are in the
namespace `bench-cli-latency` and deleted at the end); else starts a private one: a Prefect
server (SQLite, temporary data directory, free port), its REST API, and a `stack.json` that
makes the CLI find them as it finds `make run`. Each round runs, in turn:

* get:    `cluster-triggers get ID`  |  the same in-process  |  `prefect deployment inspect cluster-collection/ID`
* ls:     `cluster-triggers ls`      |  the same in-process  |  `prefect deployment ls`
* create: `cluster-triggers create FILE`  |  the same in-process

In-process: PREFECT_API_URL names the stack's server by another address (`localhost`), so the
CLI does not take it for the stack's and runs the lifecycle itself, as it does against a server
with no stack of ours. (Exported as the stack prints it, the CLI uses the stack's REST API.)

Prints each command's median over the rounds and the ratios (targets: get and ls at most 0.8x
of Prefect's CLI, create under 2 s).

    .venv/bin/python benchmarks/cli_latency.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from _private_stack import private_prefect

BIN = Path(sys.executable).parent
NAMESPACE = "bench-cli-latency"
REQUEST = {"trigger_type": "cron", "schedule_config": {"cron_expression": "0 2 * * *"},
           "execution_config": {"collection_ids": ["col_bench"], "config": {"algorithm": "kmeans", "n_clusters": 3}},
           "status": "paused"}


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return elapsed, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    from prefect_cluster_triggers.core.stack_file import ready_stack

    with ExitStack() as stack:
        running = ready_stack()
        if running:
            print(f"using the running stack (pid {running['pid']}, Prefect at {running['api_url']})")
            ours = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
            prefect_url = running["api_url"]
        else:
            ours, prefect_url = start_private_stack(stack)
        here = {**ours, "PREFECT_API_URL": prefect_url.replace("127.0.0.1", "localhost")}  # see the docstring
        exported = {**ours, "PREFECT_API_URL": prefect_url}  # Prefect's CLI, as the stack says to export it
        request = Path(tempfile.mkdtemp(prefix="bench-cli-latency-")) / "request.json"
        request.write_text(json.dumps(REQUEST))
        ct = [str(BIN / "cluster-triggers")]
        made: list[str] = []

        def create(env: dict[str, str]) -> tuple[float, str]:
            elapsed, out = timed([*ct, "create", str(request), "--namespace", NAMESPACE], env)
            made.append(json.loads(out)["trigger_id"])
            return elapsed, out

        create(ours)  # the one `get` reads; also warms the disk cache of every command's imports
        trigger_id = made[0]
        commands = {
            "get": [("cluster-triggers get", lambda: timed([*ct, "get", trigger_id, "--namespace", NAMESPACE], ours)),
                    ("cluster-triggers get (in-process)",
                     lambda: timed([*ct, "get", trigger_id, "--namespace", NAMESPACE], here)),
                    ("prefect deployment inspect", lambda: timed(
                        [str(BIN / "prefect"), "deployment", "inspect", f"cluster-collection/{trigger_id}"], exported))],
            "ls": [("cluster-triggers ls", lambda: timed([*ct, "ls", "--namespace", NAMESPACE], ours)),
                   ("cluster-triggers ls (in-process)", lambda: timed([*ct, "ls", "--namespace", NAMESPACE], here)),
                   ("prefect deployment ls", lambda: timed([str(BIN / "prefect"), "deployment", "ls"], exported))],
            "create": [("cluster-triggers create", lambda: create(ours)),
                       ("cluster-triggers create (in-process)", lambda: create(here))],
        }
        times: dict[str, list[float]] = {name: [] for pairs in commands.values() for name, _ in pairs}
        for _ in range(rounds):
            for pairs in commands.values():
                for name, run in pairs:
                    times[name].append(run()[0])
        try:
            report(times, rounds)
        finally:
            for made_id in made:
                timed([*ct, "delete", made_id, "--namespace", NAMESPACE], ours)
    return 0


def report(times: dict[str, list[float]], rounds: int) -> None:
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"\nmedian wall time of {rounds} rounds, commands alternating")
    for name, value in median.items():
        print(f"  {name:40} {value:6.2f} s   (min {min(times[name]):.2f}, max {max(times[name]):.2f})")
    print("\nratios")
    for ours, theirs, target in (("cluster-triggers get", "prefect deployment inspect", "<= 0.80"),
                                 ("cluster-triggers ls", "prefect deployment ls", "<= 0.80"),
                                 ("cluster-triggers get", "cluster-triggers get (in-process)", ""),
                                 ("cluster-triggers ls", "cluster-triggers ls (in-process)", ""),
                                 ("cluster-triggers create", "cluster-triggers create (in-process)", "")):
        print(f"  {ours} / {theirs}: {median[ours] / median[theirs]:.2f}x {('(target ' + target + ')') if target else ''}")
    print(f"  cluster-triggers create: {median['cluster-triggers create']:.2f} s (target < 2 s)")


def start_private_stack(stack: ExitStack) -> tuple[dict[str, str], str]:
    """A Prefect server and the REST API, recorded in stack.json as `make run` records its stack; the
    environment of a shell without PREFECT_API_URL, and the server's URL."""
    from prefect_cluster_triggers.deployments.stack.processes import api_server, free_port

    env, data_dir = stack.enter_context(private_prefect("bench-cli-latency-"))
    port = free_port()
    url = env["PREFECT_API_URL"]
    subprocess.run([str(BIN / "prefect"), "block", "register", "-m", "prefect_cluster_triggers.blocks"], env=env,
                   check=True, capture_output=True)
    stack.enter_context(api_server(port, {**env, "CLUSTER_TRIGGERS_API_PORT": str(port)}, log=data_dir / "api.log"))
    (data_dir / "stack.json").write_text(json.dumps({"pid": os.getpid(), "state": "ready", "api_url": url}))
    stack.callback((data_dir / "stack.json").unlink)
    print(f"private stack: Prefect at {url}, REST API on port {port}, data in {data_dir}")
    ours = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    return {**ours, "CLUSTER_TRIGGERS_API_PORT": str(port)}, url


if __name__ == "__main__":
    sys.exit(main())
