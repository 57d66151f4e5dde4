"""Chart pages (deployments/service/charts.py) without a server: well-formed SVG in markdown images, escaped user
text, bounded sizes. That the Prefect UI draws them: tests/integration/test_chart_rendering.py."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from prefect_cluster_triggers.core.markdown import escape_markdown
from prefect_cluster_triggers.deployments.service import charts
from prefect_cluster_triggers.deployments.service.charts import (
    MAX_MARKDOWN_BYTES,
    MAX_RUNS,
    MAX_SERIES,
    MeasurementPoint,
    RunPoint,
    changes_markdown,
    picture_markdown,
    svg_image,
    trend_markdown,
)
from prefect_cluster_triggers.flows.engine.changes import compare_runs
from prefect_cluster_triggers.flows.engine.projection import project_sample

T0 = datetime(2026, 11, 1, 2, tzinfo=timezone.utc)
HOSTILE = 'a`b|c[d](e)<img src=x onerror=alert(1)>*f*_g_ \n# h ![i](j) &amp; </svg><script>k</script>'
IMAGE = re.compile(r"!\[((?:\\.|[^\]\\\n])*)\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)")
SVG = "{http://www.w3.org/2000/svg}"


def _svgs(markdown: str) -> list[ET.Element]:
    """Every chart of a page, parsed (a parse error fails the test): the only images are base64 SVG ones."""
    assert markdown.count("data:") == len(IMAGE.findall(markdown))
    return [ET.fromstring(base64.b64decode(data)) for _, data in IMAGE.findall(markdown)]


def _runs(n: int, clusters: int = 8) -> list[RunPoint]:
    return [RunPoint(run_id=f"run-{i:04d}", at=T0 + timedelta(hours=i), num_documents=1000 * clusters + i, num_noise=i,
                     sizes={c: 1000 + c * i for c in range(clusters)},
                     metrics={"silhouette_score": 0.5, "davies_bouldin_index": 1.0 + i / 100, "calinski_harabasz_score": 900.0})
            for i in range(n)]


def test_a_trend_page_has_its_four_charts_and_a_table():
    measurements = [MeasurementPoint(at=T0 + timedelta(minutes=10 * i), value=i / 100, threshold=0.1, fired=i >= 10)
                    for i in range(20)]
    page = trend_markdown("nightly", _runs(12), measurements, metric="cosine_drift")
    titles = [next(svg.iter(f"{SVG}text")).text for svg in _svgs(page)]
    assert titles == ["Cluster sizes (documents per cluster, per run)", "silhouette",  # and two more panels beside
                      "Documents per run", "Condition: cosine_drift per check (threshold dashed, red: fired)"]
    assert "| run | finished | documents | clusters | noise | silhouette | Davies-Bouldin | Calinski-Harabasz |" in page
    assert "| `run-0011` | 2026-11-01 13:00 | 8,011 | 8 | 11 | 0.5 | 1.11 | 900 |" in page
    assert len(_svgs(trend_markdown("nightly", _runs(12)))) == 3  # no measurements, no condition chart
    assert "No completed run yet." in trend_markdown("nightly", [])


def test_sizes_stack_the_largest_clusters_then_other_then_noise():
    runs = _runs(3, clusters=15)
    svg = ET.fromstring(charts.sizes_svg(runs))
    legend = [t.text for t in svg.iter(f"{SVG}text")][-(MAX_SERIES + 2):]
    assert legend == [str(c) for c in range(5, 15)] + ["other", "noise"]  # the 10 largest of the latest run, by id
    bars = [r for r in svg.iter(f"{SVG}rect") if r.get("width") not in (None, "10") and r.get("rx") is None]
    assert len(bars) == 3 * 12 - 1  # the first run has no noise: no empty segment


def test_user_text_is_escaped_in_markdown_and_in_svg():
    page = trend_markdown(HOSTILE, _runs(3), [MeasurementPoint(T0, 0.2, 0.1, True)], metric=HOSTILE)
    for svg in _svgs(page):
        assert not [e for e in svg.iter() if e.tag in ("script", f"{SVG}script", "img", f"{SVG}foreignObject")]
    assert any(HOSTILE.split("\n")[0][:20] in "".join(svg.itertext()) for svg in _svgs(page))  # drawn as text
    text = page.split("\n", 1)[0]  # the heading: the id in a code span, which no backtick can close
    assert text.count("`") == 2 and "|" not in text
    escaped = escape_markdown(HOSTILE)
    assert "\n" not in escaped and "<" not in escaped
    assert not re.search(r"(?<!\\)[\[\]()`|*_!#]", escaped)  # every piece of punctuation escaped


def test_picture_has_one_dot_per_sampled_point_and_a_bounded_legend():
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 40, 30_000)
    vectors = rng.normal(size=(30_000, 24)) + labels[:, None] * 0.1
    projection = project_sample(vectors, labels)
    page = picture_markdown("Run 7 of nightly", projection, sizes={c: int((labels == c).sum()) for c in range(40)})
    (svg,) = _svgs(page)
    dots = sum(p.get("d").count("h0") for p in svg.iter(f"{SVG}path"))
    assert dots == len(projection.points) == 2000
    legend = [t.text for t in svg.iter(f"{SVG}text") if t.get("font-size") == "11"]
    assert len(legend) == MAX_SERIES + 2 and legend[-2:] == ["30 other", "noise"]
    assert "2,000 of 30,000 documents" in page


def test_worst_case_pages_stay_within_the_budget():
    many = _runs(3 * MAX_RUNS, clusters=1000)
    measurements = [MeasurementPoint(T0 + timedelta(minutes=i), float(i % 7), 3.0, i % 7 > 3) for i in range(20_000)]
    page = trend_markdown("t" * 200, many, measurements, metric="m" * 200)
    assert len(page.encode()) < MAX_MARKDOWN_BYTES / 2
    assert f"The latest {MAX_RUNS} runs" in page
    rng = np.random.default_rng(1)
    labels = rng.integers(-1, 5000, 100_000)
    picture = picture_markdown("p" * 200, project_sample(rng.normal(size=(100_000, 8)), labels))
    assert len(picture.encode()) < MAX_MARKDOWN_BYTES / 4
    report = compare_runs([f"{i:0200d}" for i in range(5000)], rng.integers(-1, 300, 5000),
                          [f"{i:0200d}" for i in range(5000)], rng.integers(-1, 300, 5000))
    assert len(changes_markdown(report).encode()) < 20_000


def test_undefined_and_infinite_scores_leave_gaps():
    runs = _runs(4)
    runs[1] = RunPoint(runs[1].run_id, runs[1].at, 10, 0, {0: 10}, {"silhouette_score": None,
                                                                     "calinski_harabasz_score": float("inf")})
    svg = base64.b64decode(IMAGE.findall(trend_markdown("x", runs))[1][1]).decode()
    assert "nan" not in svg.lower() and "inf" not in svg.lower()
    lonely = trend_markdown("x", [RunPoint("r", T0, 5, 0, {0: 5}, {})])
    assert "undefined (fewer than 2 clusters)" in base64.b64decode(IMAGE.findall(lonely)[1][1]).decode()


def test_changes_page_names_events_and_escapes_document_ids():
    report = compare_runs(["a`|b", "c", "d", "e"], [0, 0, 1, 1], ["a`|b", "c", "d", "e"], [2, 0, 1, -1])
    page = changes_markdown(report, moves=1)
    assert page.splitlines()[2] == escape_markdown(report.summary())
    assert "| `a'¦b` | 0 | 2 |" in page and "| … 1 more | | |" in page
    assert "| 1 | noise | 1 |" in page


def test_records_and_measurement_payloads_as_the_project_stores_them():
    record = {"run_id": "4b0f", "created_at": "2026-11-01T02:00:00Z", "num_documents": 12, "num_noise": 2,
              "clusters": [{"id": 3, "num_members": 6, "keywords": []}, {"id": 5, "num_members": 4, "keywords": []}],
              "metrics": {"silhouette_score": 0.4, "davies_bouldin_index": None, "calinski_harabasz_score": 7.0}}
    run = RunPoint.from_record(record)
    assert (run.at, run.sizes, run.metrics["davies_bouldin_index"]) == (T0, {3: 6, 5: 4}, None)
    check = MeasurementPoint.from_payload({"metric": "cosine_drift", "value": None, "threshold": 0.2, "fired": False,
                                           "decision": "check failed", "checked_at": "2026-11-01T02:00:00.5Z"})
    assert check.value is None and check.at == T0 + timedelta(milliseconds=500)


def test_svg_image_is_one_markdown_image():
    image = svg_image('<svg xmlns="http://www.w3.org/2000/svg"/>', "alt")
    assert IMAGE.fullmatch(image)


@given(st.floats(-1e9, 1e9), st.floats(0, 1e9))
@example(-5e-324, 5.0)  # a subnormal low: low / step rounds to -0.0
def test_ticks_cover_the_range_in_a_few_round_steps(low, width):
    ticks = charts.nice_ticks(low, low + width)
    assert ticks[0] <= low and ticks[-1] >= low + width - 1e-9 * max(1.0, abs(low))
    assert 2 <= len(ticks) <= 7 and ticks == sorted(set(ticks))
