"""The chart pages of deployments/service/charts.py, published as Prefect markdown artifacts, are drawn by the Prefect
UI in headless Chromium: its V1 pages (`/artifacts/artifact/<id>`) and V2 pages (`/v2/...`, the server's
root). Drawn means each chart's `<img>` decoded (natural size), laid out (nonzero box) and painted (a
canvas copy of it is not blank); user text shows as literal text and injects no element or script.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from prefect_cluster_triggers.deployments.service.charts import (
    MeasurementPoint,
    RunPoint,
    changes_markdown,
    picture_markdown,
    trend_markdown,
)
from prefect_cluster_triggers.flows.engine.changes import compare_runs
from prefect_cluster_triggers.flows.engine.projection import project_sample

HOSTILE_ID = 'nightly<img src=x onerror=alert(1)>`|[a](b)'
UIS = {"v1": "", "v2": "/v2"}

# For each chart image of the artifact: decoded size, laid-out size, and the share of painted (non-white) pixels.
_CHARTS_JS = """() => [...document.querySelectorAll('img')].filter(i => i.src.startsWith('data:image/svg+xml;base64,'))
  .map(i => {
    const box = i.getBoundingClientRect();
    const canvas = document.createElement('canvas');
    canvas.width = i.naturalWidth; canvas.height = i.naturalHeight;
    let painted = 0;
    if (i.complete && i.naturalWidth) {
      const context = canvas.getContext('2d');
      context.drawImage(i, 0, 0);
      const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
      for (let p = 0; p < pixels.length; p += 4) if (pixels[p] + pixels[p + 1] + pixels[p + 2] < 700) painted++;
      painted /= pixels.length / 4;
    }
    return {natural: [i.naturalWidth, i.naturalHeight], box: [box.width, box.height], painted};
  })"""


@pytest.fixture(scope="module")
def pages(prefect_api: str) -> dict[str, tuple[str, int]]:
    """The three chart pages as markdown artifacts of the session's server: name -> (artifact id, charts)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    start = datetime(2026, 11, 1, 2, tzinfo=timezone.utc)
    runs = [RunPoint(run_id=f"run-{i}", at=start + timedelta(days=i), num_documents=3000 + 40 * i, num_noise=30,
                     sizes={c: 300 + 20 * c + 5 * i for c in range(1, 9)},
                     metrics={"silhouette_score": 0.4 + i / 100, "davies_bouldin_index": 1.1 - i / 100,
                              "calinski_harabasz_score": 1500.0 + 20 * i}) for i in range(20)]
    checks = [MeasurementPoint(at=start + timedelta(hours=6 * i), value=0.05 + 0.01 * (i % 9), threshold=0.1,
                               fired=0.05 + 0.01 * (i % 9) >= 0.1) for i in range(60)]
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 6, 10_000)
    vectors = rng.normal(size=(6, 16))[np.maximum(labels, 0)] * 4 + rng.normal(size=(10_000, 16))
    ids = np.array([f"doc-{i}" for i in range(10_000)])
    report = compare_runs(ids, labels, ids, np.where(rng.random(10_000) < 0.03, rng.integers(-1, 7, 10_000), labels))
    markdown = {
        "trend": (trend_markdown(HOSTILE_ID, runs, checks, metric="cosine_drift"), 4),
        "picture": (picture_markdown(f"Run 7 of {HOSTILE_ID}", project_sample(vectors, labels)), 1),
        "changes": (changes_markdown(report), 0),
    }
    with get_client(sync_client=True) as client:  # as deployments/dashboard.py publishes (outside a flow run)
        return {name: (str(client.create_artifact(ArtifactCreate(key=f"chart-rendering-{name}", type="markdown",
                                                                 data=text)).id), charts)
                for name, (text, charts) in markdown.items()}



@pytest.mark.parametrize("ui", sorted(UIS))
@pytest.mark.parametrize("name", ["trend", "picture", "changes"])
def test_the_prefect_ui_draws_the_chart_pages(prefect_api: str, pages: dict[str, tuple[str, int]], browser, ui: str,
                                             name: str, tmp_path: Path) -> None:
    artifact_id, charts = pages[name]
    root = prefect_api.removesuffix("/api")
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    try:
        page.goto(f"{root}{UIS[ui]}/artifacts/artifact/{artifact_id}", wait_until="networkidle", timeout=120_000)
        heading = {"trend": "Trends of cluster trigger", "picture": "Run 7 of", "changes": "Changes since the previous run"}
        page.get_by_text(heading[name]).first.wait_for(timeout=60_000)  # the page renders after its data arrives
        if charts:
            page.wait_for_function(f"() => [...document.querySelectorAll('img')].filter(i => i.src.startsWith("
                                   f"'data:image/svg+xml') && i.complete && i.naturalWidth > 0).length >= {charts}",
                                   timeout=60_000)
        drawn = page.evaluate(_CHARTS_JS)
        page.screenshot(path=str(tmp_path / f"{ui}-{name}.png"), full_page=True)
        text = page.inner_text("body")
        injected = page.evaluate("() => [...document.querySelectorAll('img')].filter(i => i.getAttribute('src') === 'x').length")
    finally:
        page.close()
    where = f"(screenshot: {tmp_path / f'{ui}-{name}.png'})"
    assert len(drawn) == charts, where
    for chart in drawn:
        assert min(chart["natural"]) > 0 and min(chart["box"]) > 100, (chart, where)
        assert chart["painted"] > 0.01, (chart, where)  # shapes drawn, not an empty white card
    if name != "changes":
        assert "nightly<img src=x onerror=alert(1)>" in text, where  # the id as literal text
    assert injected == 0 and dialogs == [], where
