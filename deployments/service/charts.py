"""Charts of a trigger's runs for Prefect markdown artifacts: trends over runs, a 2-D picture of the clusters,
and what changed since the previous run. Prefect-free: the caller publishes the markdown.

What the Prefect 3.9 UI shows of a markdown artifact (measured in headless Chromium, V1 pages
and V2 pages; tests/integration/test_chart_rendering.py checks it): an image whose source is
a `data:image/svg+xml;base64,...` URL is drawn by both, as markdown `![alt](...)`. Inline
`<svg>` is not: V1's sanitizer keeps an empty `<svg>` box without its shapes, V2's removes
it. So each chart is an SVG drawn here, base64-encoded into a markdown image. In an `<img>`
an SVG runs no script and loads nothing, and the base64 alphabet cannot close the markdown
link; the text drawn inside is XML-escaped all the same, and user text in the markdown
around it (trigger ids, titles) is escaped by `escape_markdown`. Each chart has its own
white background, so it reads on V1's dark theme and V2's light one; a table of the latest
numbers follows the charts, for exact values and for readers of the raw markdown.

Size: every chart is bounded by construction (at most `MAX_RUNS` runs, `MAX_SERIES`
coloured clusters, `MAX_MEASUREMENTS` checks, the projection's sample of points), and
`MAX_MARKDOWN_BYTES` is asserted. The server accepted a 27 MB markdown artifact, but V1 did
not draw a 27 MB image within 120 s, and every artifact list downloads each artifact's data;
the pages made here stay near 100 KB.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from prefect_cluster_triggers.core.markdown import escape_markdown
from prefect_cluster_triggers.flows.engine.changes import NOISE, ChangeReport
from prefect_cluster_triggers.flows.engine.projection import Projection

MAX_RUNS = 100  # the latest runs a trend chart shows
MAX_MEASUREMENTS = 500  # the latest condition checks a trend chart shows
MAX_SERIES = 10  # clusters with a colour of their own; the others are drawn together as "other"
MAX_MARKDOWN_BYTES = 500_000  # a page's budget; V1 and V2 drew 6.9 MB in under 4 s, 27 MB not at all in V1
METRICS = (  # flows/metrics.py's scores: (record key, label, which way is better)
    ("silhouette_score", "silhouette", "higher is better"),
    ("davies_bouldin_index", "Davies-Bouldin", "lower is better"),
    ("calinski_harabasz_score", "Calinski-Harabasz", "higher is better"),
)
# Tableau 10: distinguishable, and readable for the common colour-vision deficiencies.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
OTHER_COLOUR, NOISE_COLOUR = "#7f7f7f", "#d9d9d9"
_FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'


@dataclass(frozen=True)
class RunPoint:
    """What a trend chart needs of one completed run (see `from_record`)."""

    run_id: str
    at: datetime
    num_documents: int
    num_noise: int
    sizes: Mapping[int, int] = field(compare=False)  # cluster id -> members
    metrics: Mapping[str, float | None] = field(compare=False)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RunPoint:
        """From a run's record as the results store keeps it (`created_at`, `clusters`, `metrics`, ...)."""
        return cls(run_id=str(record["run_id"]), at=_instant(record["created_at"]),
                   num_documents=int(record.get("num_documents") or 0), num_noise=int(record.get("num_noise") or 0),
                   sizes={int(c["id"]): int(c["num_members"]) for c in record.get("clusters", ())},
                   metrics=dict(record.get("metrics") or {}))


@dataclass(frozen=True)
class MeasurementPoint:
    """One check of a conditional trigger (the payload of its `cluster.condition.measured` event)."""

    at: datetime
    value: float | None
    threshold: float
    fired: bool

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> MeasurementPoint:
        """A point from a `cluster.condition.measured` event payload."""
        return cls(at=_instant(payload["checked_at"]), value=payload.get("value"),
                   threshold=float(payload["threshold"]), fired=bool(payload.get("fired")))


# Markdown pages -------------------------------------------------------------------------------------

def trend_markdown(trigger_id: str, runs: Sequence[RunPoint], measurements: Sequence[MeasurementPoint] = (),
                   *, metric: str | None = None) -> str:
    """A trigger's trends over its latest runs: cluster sizes, the three quality scores, document counts,
    and (for a conditional trigger) its condition measurements against the threshold."""
    runs = sorted(runs, key=lambda r: r.at)[-MAX_RUNS:]
    measurements = sorted(measurements, key=lambda m: m.at)[-MAX_MEASUREMENTS:]
    name = escape_markdown(trigger_id)
    parts = [f"### Trends of cluster trigger `{_code(trigger_id)}`", ""]
    if not runs:
        parts += ["No completed run yet.", ""]
    else:
        parts += [f"The latest {len(runs)} runs, {_day(runs[0].at)} to {_day(runs[-1].at)}.", "",
                  svg_image(sizes_svg(runs), f"cluster sizes per run of {name}"), "",
                  svg_image(metrics_svg(runs), f"quality scores per run of {name}"), "",
                  svg_image(documents_svg(runs), f"documents per run of {name}"), ""]
    if measurements:
        label = escape_markdown(metric or "measurement")
        parts += [svg_image(measurements_svg(measurements, metric=metric), f"{label} per check of {name}"), ""]
    if runs:
        parts += [_latest_runs_table(runs[-5:]), ""]
    return _bounded("\n".join(parts))


def picture_markdown(title: str, projection: Projection, *, sizes: Mapping[int, int] | None = None) -> str:
    """The 2-D picture of a run's clusters; `sizes` (cluster id -> members of the whole run) label the legend."""
    shown, total = len(projection.points), projection.total
    first, second = (round(100 * x) for x in projection.explained)
    caption = (f"{shown:,} of {total:,} documents, projected on the two main axes of that sample (PCA), which hold "
               f"{first}% and {second}% of its variance. Distances across the picture are only indicative.")
    return _bounded("\n".join([f"### {escape_markdown(title)}", "",
                               svg_image(scatter_svg(projection, sizes=sizes), f"clusters of {escape_markdown(title)}"),
                               "", caption, ""]))


def changes_markdown(report: ChangeReport, *, moves: int = 10, pairs: int = 10) -> str:
    """What changed since the previous run, for the run's summary artifact: the one-line summary, the
    cluster events, the largest flows between clusters and the first moved documents (all bounded)."""
    lines = ["### Changes since the previous run", "", escape_markdown(report.summary())]
    events = [("born", ", ".join(map(str, report.born))), ("vanished", ", ".join(map(str, report.vanished))),
              ("split", "; ".join(f"{s.cluster} → {', '.join(map(str, s.into))}" for s in report.splits)),
              ("merged", "; ".join(f"{', '.join(map(str, m.sources))} → {m.cluster}" for m in report.merges)),
              ("relabelled", "; ".join(f"{a} → {b}" for a, b in report.relabelled))]
    if any(text for _, text in events):
        lines += ["", "| event | clusters |", "|---|---|"]
        lines += [f"| {kind} | {_cell(_clip(text, 400))} |" for kind, text in events if text]
    if report.move_counts:
        lines += ["", "| from | to | documents |", "|---|---|---|"]
        lines += [f"| {_cluster(a)} | {_cluster(b)} | {n:,} |" for a, b, n in report.move_counts[:pairs]]
        if len(report.move_counts) > pairs:
            lines.append(f"| … | … | {sum(n for *_, n in report.move_counts[pairs:]):,} more |")
    if report.moved:
        lines += ["", "| document | from | to |", "|---|---|---|"]
        lines += [f"| `{_code(_clip(str(i), 120))}` | {_cluster(a)} | {_cluster(b)} |" for i, a, b in report.moves(moves)]
        if report.moved > moves:
            lines.append(f"| … {report.moved - moves:,} more | | |")
    return _bounded("\n".join(lines) + "\n")


def svg_image(svg: str, alt: str) -> str:
    """A markdown image of an SVG as a base64 `data:` URL: the form both Prefect UIs draw (see the module
    docstring). `alt` must already be markdown-safe (`escape_markdown`)."""
    return f"![{alt}](data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode('ascii')})"


# SVG charts -----------------------------------------------------------------------------------------

def sizes_svg(runs: Sequence[RunPoint]) -> str:
    """Stacked bars, one per run: the `MAX_SERIES` largest clusters of the latest run (by id), the other
    clusters together, then noise."""
    latest = runs[-1].sizes
    coloured = sorted(sorted(latest, key=lambda c: (-latest[c], c))[:MAX_SERIES])
    series = [(str(c), PALETTE[i % len(PALETTE)]) for i, c in enumerate(coloured)]
    series += [("other", OTHER_COLOUR), ("noise", NOISE_COLOUR)]
    stacks = []
    for run in runs:
        values = [float(run.sizes.get(c, 0)) for c in coloured]
        values.append(float(sum(n for c, n in run.sizes.items() if c not in set(coloured))))
        values.append(float(run.num_noise))
        stacks.append(values)
    frame = _Frame(720, 260, "Cluster sizes (documents per cluster, per run)", legend=True)
    top = max((sum(s) for s in stacks), default=0.0)
    y = frame.y_axis(0.0, top or 1.0)
    body = [frame.run_axis([r.at for r in runs])]
    width = frame.plot_width / len(runs)
    for i, values in enumerate(stacks):
        base = 0.0
        for value, (_, colour) in zip(values, series):
            if value > 0:
                body.append(f'<rect x="{frame.left + i * width + width * 0.1:.1f}" y="{y(base + value):.1f}" '
                            f'width="{max(width * 0.8, 0.5):.1f}" height="{y(base) - y(base + value):.1f}" fill="{colour}"/>')
            base += value
    body.append(frame.legend(series))
    return frame.svg(body)


def metrics_svg(runs: Sequence[RunPoint]) -> str:
    """The three quality scores of flows/metrics.py per run, one small chart each (their scales differ)."""
    panels = []
    for key, label, better in METRICS:
        values = [_finite(r.metrics.get(key)) for r in runs]
        panels.append(_line_panel(label, better, [r.at for r in runs], values, colour=PALETTE[0]))
    return _side_by_side(panels)


def documents_svg(runs: Sequence[RunPoint]) -> str:
    """Documents per run, and how many of them were noise."""
    frame = _Frame(720, 220, "Documents per run", legend=True)
    totals = [float(r.num_documents) for r in runs]
    noise = [float(r.num_noise) for r in runs]
    y = frame.y_axis(0.0, max(totals + [1.0]))
    x = frame.run_x(len(runs))
    body = [frame.run_axis([r.at for r in runs]),
            _polyline(x, y, totals, PALETTE[0]), _polyline(x, y, noise, OTHER_COLOUR),
            frame.legend([("documents", PALETTE[0]), ("noise", OTHER_COLOUR)])]
    return frame.svg(body)


def measurements_svg(measurements: Sequence[MeasurementPoint], *, metric: str | None = None) -> str:
    """A conditional trigger's measurements over time (time to scale), its threshold dashed, checks that
    fired marked in red."""
    frame = _Frame(720, 240, f"Condition: {metric or 'measurement'} per check (threshold dashed, red: fired)")
    times = [m.at.timestamp() for m in measurements]
    values = [_finite(m.value) for m in measurements]
    known = [v for v in values if v is not None] + [m.threshold for m in measurements]
    y = frame.y_axis(min(known), max(known))
    start, end = min(times), max(times)
    span = (end - start) or 1.0

    def x(i: int) -> float:
        return frame.left + frame.plot_width * ((times[i] - start) / span if end > start else 0.5)

    body = [frame.time_axis(measurements[0].at, measurements[-1].at), _polyline(x, y, values, PALETTE[0])]
    steps = " ".join(f"{x(i):.1f},{y(m.threshold):.1f}" for i, m in enumerate(measurements))
    body.append(f'<polyline points="{steps}" fill="none" stroke="{PALETTE[2]}" stroke-width="1.5" stroke-dasharray="6 4"/>')
    body += [f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3.5" fill="{PALETTE[2]}"/>'
             for i, (m, v) in enumerate(zip(measurements, values)) if m.fired and v is not None]
    return frame.svg(body)


def scatter_svg(projection: Projection, *, sizes: Mapping[int, int] | None = None) -> str:
    """The projected sample, one colour per cluster (the `MAX_SERIES` with most sampled points; the
    others grey, noise light grey and underneath), each coloured cluster labelled by its id at its mean."""
    points, clusters = np.asarray(projection.points, dtype=float), np.asarray(projection.clusters)
    ids, counts = np.unique(clusters[clusters != NOISE], return_counts=True)
    ranked = [int(c) for c in ids[np.lexsort((ids, -counts))]]
    coloured = sorted(ranked[:MAX_SERIES])
    colour_of = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(coloured)}
    frame = _Frame(720, 480, "Clusters of a sample of the run's documents (PCA)", legend=True, left=16, bottom=16)
    if len(points):
        low, high = points.min(axis=0), points.max(axis=0)
    else:
        low, high = np.zeros(2), np.ones(2)
    span = np.maximum(high - low, 1e-12)
    scale = min(frame.plot_width / span[0], frame.plot_height / span[1])  # one scale: PCA keeps distances
    offset = (np.array([frame.plot_width, frame.plot_height]) - span * scale) / 2

    def place(xy: np.ndarray) -> np.ndarray:
        shifted = (xy - low) * scale + offset
        return np.column_stack([frame.left + shifted[:, 0], frame.top + frame.plot_height - shifted[:, 1]])

    placed = place(points) if len(points) else np.zeros((0, 2))
    groups = [(clusters == NOISE, NOISE_COLOUR),
              (~np.isin(clusters, coloured) & (clusters != NOISE), OTHER_COLOUR)]
    groups += [(clusters == c, colour_of[c]) for c in coloured]
    body = [f'<rect x="{frame.left}" y="{frame.top}" width="{frame.plot_width}" height="{frame.plot_height}" '
            f'fill="none" stroke="#e5e5e5"/>']
    for mask, colour in groups:  # one path per colour: "M x y h0" draws a round dot, ~14 bytes a point
        if mask.any():
            dots = "".join(f"M{px:.1f} {py:.1f}h0" for px, py in placed[mask])
            body.append(f'<path d="{dots}" stroke="{colour}" stroke-width="5" stroke-linecap="round" '
                        f'stroke-opacity="0.75" fill="none"/>')
    for c in coloured:
        cx, cy = placed[clusters == c].mean(axis=0)
        body.append(f'<text x="{cx:.1f}" y="{cy:.1f}" font-size="13" font-weight="bold" text-anchor="middle" '
                    f'stroke="#fff" stroke-width="3" paint-order="stroke" fill="#222">{c}</text>')
    label = (lambda c: f"{c} ({sizes[c]:,})") if sizes else str
    legend = [(label(c) if not sizes or c in sizes else str(c), colour_of[c]) for c in coloured]
    if len(ranked) > len(coloured):
        legend.append((f"{len(ranked) - len(coloured)} other", OTHER_COLOUR))
    if (clusters == NOISE).any():
        legend.append(("noise", NOISE_COLOUR))
    body.append(frame.legend(legend))
    return frame.svg(body)


# Drawing helpers ------------------------------------------------------------------------------------

class _Frame:
    """An SVG canvas with a title, a plot area, axes and an optional legend column on the right."""

    def __init__(self, width: int, height: int, title: str, *, legend: bool = False, left: int = 60,
                 bottom: int = 30, subtitle: str = "") -> None:
        self.width, self.height, self.title, self.subtitle = width, height, title, subtitle
        self.left, self.top = left, 44 if subtitle else 30
        self.right = 130 if legend else 14
        self.plot_width = width - self.left - self.right
        self.plot_height = height - self.top - bottom
        self._grid: list[str] = []

    def y_axis(self, low: float, high: float) -> Any:
        """Grid lines and labels for [low, high] (widened to nice ticks); returns value -> y."""
        ticks = nice_ticks(low, high)
        low, high = ticks[0], ticks[-1]
        span = (high - low) or 1.0
        self._grid = [f'<line x1="{self.left}" x2="{self.left + self.plot_width}" y1="{self._y(t, low, span):.1f}" '
                         f'y2="{self._y(t, low, span):.1f}" stroke="#e5e5e5"/>'
                         f'<text x="{self.left - 6}" y="{self._y(t, low, span) + 4:.1f}" font-size="11" '
                         f'text-anchor="end" fill="#555">{_xml(_number(t))}</text>' for t in ticks]
        return lambda value: self._y(value, low, span)

    def _y(self, value: float, low: float, span: float) -> float:
        return self.top + self.plot_height * (1 - (value - low) / span)

    def run_x(self, n: int) -> Any:
        return lambda i: self.left + self.plot_width * (i + 0.5) / n

    def run_axis(self, times: Sequence[datetime]) -> str:
        """Date labels under the first, middle and last runs."""
        x = self.run_x(len(times))
        picks = sorted({0, (len(times) - 1) // 2, len(times) - 1})
        return "".join(self._x_label(x(i), times[i]) for i in picks)

    def time_axis(self, start: datetime, end: datetime) -> str:
        if start == end:
            return self._x_label(self.left + self.plot_width / 2, start)
        return self._x_label(self.left, start, "start") + self._x_label(self.left + self.plot_width, end, "end")

    def _x_label(self, x: float, when: datetime, anchor: str = "middle", *, day_only: bool = False) -> str:
        text = when.astimezone(timezone.utc).strftime("%Y-%m-%d") if day_only else _stamp(when)
        return (f'<text x="{x:.1f}" y="{self.top + self.plot_height + 18}" font-size="11" text-anchor="{anchor}" '
                f'fill="#555">{_xml(text)}</text>')

    def ends_axis(self, start: datetime, end: datetime) -> str:
        """The days of the first and last runs under the ends of a narrow plot."""
        if start == end:
            return self._x_label(self.left + self.plot_width / 2, start, day_only=True)
        return (self._x_label(self.left, start, "start", day_only=True)
                + self._x_label(self.left + self.plot_width, end, "end", day_only=True))

    def legend(self, entries: Iterable[tuple[str, str]]) -> str:
        x = self.width - self.right + 12
        return "".join(f'<rect x="{x}" y="{self.top + 16 * i}" width="10" height="10" fill="{colour}"/>'
                       f'<text x="{x + 15}" y="{self.top + 16 * i + 9}" font-size="11" fill="#333">{_xml(_clip(name, 18))}</text>'
                       for i, (name, colour) in enumerate(entries))

    def svg(self, body: list[str]) -> str:
        subtitle = (f'<text x="{self.left}" y="34" font-size="11" fill="#666">{_xml(self.subtitle)}</text>'
                    if self.subtitle else "")
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
                f'viewBox="0 0 {self.width} {self.height}" {_FONT}>'
                f'<rect width="{self.width}" height="{self.height}" rx="6" fill="#ffffff"/>'
                f'<text x="{self.left}" y="19" font-size="13" font-weight="bold" fill="#222">{_xml(self.title)}</text>'
                f'{subtitle}{"".join(self._grid)}{"".join(body)}</svg>')


def _line_panel(title: str, subtitle: str, times: Sequence[datetime], values: Sequence[float | None], *,
                colour: str) -> tuple[_Frame, list[str]]:
    frame = _Frame(240, 210, title, left=52, subtitle=subtitle)
    known = [v for v in values if v is not None]
    y = frame.y_axis(min(known, default=0.0), max(known, default=1.0))
    x = frame.run_x(len(values))
    body = [frame.ends_axis(times[0], times[-1]), _polyline(x, y, values, colour)]
    if not known:
        body.append(f'<text x="{frame.left + frame.plot_width / 2}" y="{frame.top + frame.plot_height / 2}" '
                    f'font-size="12" text-anchor="middle" fill="#777">undefined (fewer than 2 clusters)</text>')
    return frame, body


def _side_by_side(panels: list[tuple[_Frame, list[str]]]) -> str:
    width, height = sum(f.width for f, _ in panels), max(f.height for f, _ in panels)
    inner, x = [], 0
    for frame, body in panels:
        inner.append(f'<g transform="translate({x},0)">{frame.svg(body)}</g>')
        x += frame.width
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'{_FONT}>{"".join(inner)}</svg>')


def _polyline(x: Any, y: Any, values: Sequence[float | None], colour: str) -> str:
    """A line through the known values (gaps where a value is None), with a dot on each."""
    segments: list[list[str]] = [[]]
    dots = []
    for i, value in enumerate(values):
        if value is None:
            segments.append([])
            continue
        segments[-1].append(f"{x(i):.1f},{y(value):.1f}")
        dots.append(f"M{x(i):.1f} {y(value):.1f}h0")
    lines = "".join(f'<polyline points="{" ".join(s)}" fill="none" stroke="{colour}" stroke-width="2"/>'
                    for s in segments if len(s) > 1)
    marks = (f'<path d="{"".join(dots)}" stroke="{colour}" stroke-width="5" stroke-linecap="round" fill="none"/>'
             if dots and len(dots) <= 60 else "")
    return lines + marks


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values covering [low, high]; a flat series (or one flat at float precision) gets a band
    around its value."""
    if high - low <= max(abs(low) * 1e-9, 1e-200):
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first, last = math.floor(low / step), math.ceil(high / step)
    first -= first * step > low  # `low / step` rounded to 0 (a subnormal `low`): one step further out
    last += last * step < high
    return [k * step for k in range(first, max(last, first + 1) + 1)]


def _latest_runs_table(runs: Sequence[RunPoint]) -> str:
    header = "| run | finished | documents | clusters | noise | " + " | ".join(label for _, label, _ in METRICS) + " |"
    rows = [f"| `{_code(r.run_id[:8])}` | {_stamp(r.at)} | {r.num_documents:,} | {len(r.sizes)} | {r.num_noise:,} | "
            + " | ".join(_number(r.metrics.get(key)) for key, _, _ in METRICS) + " |" for r in reversed(runs)]
    return "\n".join([header, "|" + "---|" * (5 + len(METRICS)), *rows])


def _bounded(markdown: str) -> str:
    size = len(markdown.encode())
    if size > MAX_MARKDOWN_BYTES:
        raise ValueError(f"a chart page of {size} bytes exceeds MAX_MARKDOWN_BYTES ({MAX_MARKDOWN_BYTES})")
    return markdown


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def _number(value: Any) -> str:
    if value is None:
        return "n/a"
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1e6:
        return f"{value / 1e6:.3g}M"
    if abs(value) >= 10_000:
        return f"{value / 1e3:.3g}k"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _instant(value: Any) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _stamp(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def _day(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _xml(text: str) -> str:
    return html.escape(text, quote=True)


def _code(text: str) -> str:
    """Text inside a markdown code span: one line, no backtick to close it, no pipe to split a table."""
    return " ".join(text.split()).replace("`", "'").replace("|", "¦")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cluster(cluster: int) -> str:
    return "noise" if cluster == NOISE else str(cluster)
