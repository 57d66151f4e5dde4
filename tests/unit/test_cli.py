"""`cluster-triggers validate` and `preview`, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_cluster_triggers.deployments.cli import main
from tests.seed_examples import ALL


def _write(tmp_path: Path, text: str, name: str = "trigger.json") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("name", ALL)
def test_validate_accepts_each_seed_example(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", _write(tmp_path, ALL[name])]) == 0
    normalised = json.loads(capsys.readouterr().out)
    assert normalised["trigger_type"] == json.loads(ALL[name])["trigger_type"]
    assert normalised["status"] == "active"


def test_validate_reads_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "trigger_type: cron\nschedule_config:\n  cron_expression: '0 2 * * *'\ncluster_id: cluster_abc123\n"
    assert main(["validate", _write(tmp_path, text, "t.yaml")]) == 0
    assert json.loads(capsys.readouterr().out)["schedule_config"] == {"cron_expression": "0 2 * * *", "timezone": "UTC"}


def test_validate_reports_one_line_per_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = {
        "trigger_type": "cron",
        "schedule_config": {"cron_expression": "0 2 * *", "timezone": "Mars/Olympus"},
        "execution_config": {"collection_ids": ["col_1"], "config": {"algorithm": "kmeans", "n_clusters": 0}},
    }
    assert main(["validate", _write(tmp_path, json.dumps(bad))]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "schedule_config.cron_expression",
        "schedule_config.timezone",
        "execution_config.config.n_clusters",
    ]
    assert '(got "Mars/Olympus")' in lines[1] and "(got 0)" in lines[2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("{not json: [", "neither JSON nor YAML at line 1"), ("- a\n- b\n", "request: must be a JSON object")],
)
def test_validate_unreadable_documents(tmp_path: Path, text: str, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", _write(tmp_path, text)]) == 2
    assert expected in capsys.readouterr().err


def test_missing_file_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "/no/such/trigger.json"]) == 2
    assert capsys.readouterr().err == "/no/such/trigger.json: cannot read: No such file or directory\n"


def test_preview_cron_across_spring_forward(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    request = {"trigger_type": "cron", "schedule_config": {"cron_expression": "0 2 * * *", "timezone": "America/New_York"},
               "cluster_id": "cluster_abc123"}
    assert main(["preview", _write(tmp_path, json.dumps(request)), "--next", "3", "--after", "2027-03-13T00:00:00Z"]) == 0
    assert capsys.readouterr().out.splitlines() == ["2027-03-13T07:00:00Z", "2027-03-14T07:00:00Z", "2027-03-15T06:00:00Z"]


def test_preview_event_trigger_says_what_it_waits_for(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preview", _write(tmp_path, ALL["event"])]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "100 documents" in out and "col_abc123" in out and "300 s" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["--next", "0"], "--next: must be between 1 and 1000 (got 0)"),
     (["--after", "2027-03-13T00:00:00"], "--after: needs a timezone"),
     (["--after", "tomorrow"], "--after: not an ISO 8601 time")],
)
def test_preview_bad_options(tmp_path: Path, args: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preview", _write(tmp_path, ALL["cron"]), *args]) == 2
    assert capsys.readouterr().err.startswith(expected)


def test_console_script_reads_stdin_and_exits_2() -> None:
    script = Path(sys.executable).with_name("cluster-triggers")
    good = subprocess.run([script, "validate", "-"], input=ALL["interval"], capture_output=True, text=True)
    assert good.returncode == 0 and json.loads(good.stdout)["schedule_config"]["interval_seconds"] == 21600
    bad = subprocess.run([script, "validate", "-"], input='{"trigger_type": "hourly"}', capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[0].startswith("trigger_type: Input should be 'cron'")
    assert "Traceback" not in bad.stderr


def test_domain_core_imports_no_prefect() -> None:
    code = (
        "import sys, prefect_cluster_triggers.deployments.contract, prefect_cluster_triggers.deployments.fire_times, "
        "prefect_cluster_triggers.deployments.firing, prefect_cluster_triggers.deployments.cli, "
        "prefect_cluster_triggers.flows.engine, prefect_cluster_triggers.flows.assignment, prefect_cluster_triggers.flows.metrics, "
        "prefect_cluster_triggers.flows.conditions; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["preview"], "FILE: missing; see `cluster-triggers preview --help`"),
     (["preview", "t.json", "--next", "abc"],
      "--next: Input should be a valid integer, unable to parse string as an integer (got 'abc')"),
     (["preview", "t.json", "--bogus"], "--bogus: no such option (see --help)"),
     (["collections", "notify", "col_1", "documents_gone"],
      "EVENT_TYPE: 'documents_gone' is not one of 'documents_added', 'documents_updated', 'batch_completed'. "
      "(got 'documents_gone')"),
     (["history", "trg_1", "--status", "done"],
      "--status: 'done' is not one of 'pending', 'processing', 'completed', 'failed', 'cancelled'. (got 'done')"),
     (["frobnicate"], "cluster-triggers: No such command 'frobnicate'. (see --help)")],
)
def test_a_usage_mistake_is_one_line_and_exit_2_without_a_usage_page(
        args: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert (out, err.splitlines()) == ("", [expected])


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    shown = capsys.readouterr().out
    for command in ("validate", "preview", "cluster", "results", "create", "ls", "get", "update", "pause", "resume",
                    "delete", "execute", "history", "api", "render", "collections", "clusters", "keys",
                    "--install-completion"):
        assert command in shown, command
