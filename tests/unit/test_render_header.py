"""The `prefect.yaml` header names the folder the deployments were rendered from (issue 22, item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefect_cluster_triggers.deployments.cli.render import EXAMPLE_TRIGGERS, render_prefect_yaml


def test_a_projects_own_folder_is_named_in_the_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "triggers").mkdir()
    (tmp_path / "triggers" / "nightly.json").write_text((EXAMPLE_TRIGGERS / "daily-kmeans-cron.json").read_text())
    monkeypatch.chdir(tmp_path)
    header = render_prefect_yaml(Path("triggers")).split("\nname:")[0]
    assert "(triggers/)" in header and "deployments/triggers" not in header


def test_the_examples_header_names_the_repositorys_folder() -> None:
    assert "(deployments/triggers/ here)" in render_prefect_yaml().split("\nname:")[0]
