"""`cluster-triggers validate` and `preview`, as a user runs them."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from prefect_cluster_triggers.deployments.cli.app import main
from tests.hostile_requests import hostile_requests
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
        "import sys, prefect_cluster_triggers.core.contract, prefect_cluster_triggers.core.fire_times, "
        "prefect_cluster_triggers.core.firing, prefect_cluster_triggers.deployments.cli.app, "
        "prefect_cluster_triggers.flows.engine.pipeline, prefect_cluster_triggers.flows.engine.assignment, prefect_cluster_triggers.flows.engine.metrics, "
        "prefect_cluster_triggers.flows.engine.conditions; "
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


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ('{"trigger_type": "conditional", "schedule_config": {"condition_type": "drift", "threshold": NaN, '
         '"metric": "cosine_drift", "check_interval_seconds": -Infinity}, "cluster_id": "c"}', "t.json"),
        ("trigger_type: conditional\nschedule_config: {condition_type: drift, threshold: .nan, metric: cosine_drift,"
         " check_interval_seconds: -.inf}\ncluster_id: c\n", "t.yaml"),
    ],
)
def test_validate_refuses_non_finite_numbers_at_their_field(
    tmp_path: Path, text: str, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", _write(tmp_path, text, name)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "schedule_config.threshold: must be a finite number (got NaN)",
        "schedule_config.check_interval_seconds: must be a finite number (got -Infinity)",
    ]


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, "a: " + "[" * 5000 + "]" * 5000, "[" * 40 + "]" * 40, "a: &a [*a]\n"],
    ids=["json-100000", "yaml-5000", "json-40", "yaml-cycle"],
)
def test_validate_refuses_deep_nesting_in_one_line(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, text)
    assert main(["validate", path]) == 2
    assert capsys.readouterr().err == f"{path}: nested more than 32 levels deep\n"


def test_validate_walks_shared_yaml_aliases_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nine levels of nine aliases are 9^9 leaves when expanded; each shared list is walked once."""
    lines = ["l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    assert main(["validate", _write(tmp_path, "\n".join(lines), "t.yaml")]) == 2
    assert "l8: unknown field" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [("description: 2027-02-30\n", "not readable as JSON or YAML: day is out of range for month"),
     ('{"a": ' + "1" * 5000 + "}", "not readable as JSON or YAML: Exceeds the limit (4300 digits)")],
)
def test_values_the_parsers_cannot_build_are_one_line(
    tmp_path: Path, text: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", _write(tmp_path, text)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err


@settings(max_examples=200, deadline=None)
@given(document=hostile_requests(), as_yaml=st.booleans())
def test_validate_of_hostile_requests_exits_0_or_2_in_lines(document: dict, as_yaml: bool) -> None:
    """In process: an exception escaping `main` fails the test, so no traceback reaches a user."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("t.yaml" if as_yaml else "t.json")
        path.write_text(yaml.safe_dump(document) if as_yaml else json.dumps(document), encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["validate", str(path)])
    if code == 0:
        json.loads(out.getvalue(), parse_constant=_refuse)  # strict JSON: no NaN or Infinity printed
    else:
        assert code == 2 and out.getvalue() == ""
        assert err.getvalue() and all(": " in line for line in err.getvalue().splitlines())


def _refuse(constant: str) -> None:
    raise AssertionError(f"printed {constant}")
