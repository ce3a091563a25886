"""Plotly figure builders: selector series in, figure JSON out. No queries here.

Times are converted to the viewer's zone on the server and handed to Plotly as naive
wall-clock strings, because Plotly.js ignores UTC offsets; tables and charts then agree.
Each builder returns None when there is nothing to draw, so the template can show an empty state.

Figures are built as plain dicts in Plotly's figure schema and written by plotly.io without validation: building
graph objects validated every point of every trace one Python call at a time, most of a chart page's server time
(bench/pages.py). tests/dashboard/test_charts.py validates every builder's figure against the schema instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from html import escape

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

# A trace never carries more than this many points, whatever the time range: beyond it a
# 1000-px-wide chart cannot show more detail, and the page stays light.
MAX_POINTS = 2000

METRIC_LABELS = {
    "accuracy": "Accuracy",
    "f1_macro": "F1 (macro)",
    "precision_macro": "Precision (macro)",
    "recall_macro": "Recall (macro)",
    "roc_auc": "ROC-AUC",
}
LATENCY_LABELS = {"latency_p50_ms": "p50", "latency_p95_ms": "p95", "latency_p99_ms": "p99"}

# Plotly.js takes a template as an object, not by name: the "none" template, expanded once.
TEMPLATE = pio.templates["none"].to_plotly_json()

BLUE, TEAL, RED, GREY, INK = "#2563eb", "#0d9488", "#dc2626", "#9ca3af", "#1f2937"
METRIC_COLOURS = {"accuracy": BLUE, "f1_macro": TEAL, "roc_auc": "#7c3aed"}
LATENCY_COLOURS = {"latency_p50_ms": TEAL, "latency_p95_ms": BLUE, "latency_p99_ms": "#7c3aed"}
# Told apart by dash as well as colour: three blues read as one line in print and to colour-blind readers.
LATENCY_DASHES = {"latency_p50_ms": "solid", "latency_p95_ms": "dash", "latency_p99_ms": "dot"}


# The overview's sparkline, drawn as an inline SVG polyline (no Plotly on that page: it stays light).
SPARKLINE_SIZE = (96, 24)


def sparkline_points(values: Sequence[float], *, floor: float | None = None) -> tuple[str, float | None]:
    """(SVG polyline points in a 96 × 24 box, the floor's y in that box or None), scaled to the values' own
    range (accuracy moves in the second decimal; a 0-1 axis would draw every line flat). A dip below the
    floor stays visible: the scale includes the floor when it is near the values."""
    if len(values) < 2:
        return "", None
    width, height = SPARKLINE_SIZE
    keep = downsample_indices(values, max_points=2 * width)
    picked = [float(values[i]) for i in keep]
    low, high = min(picked), max(picked)
    if floor is not None and low - 0.1 <= floor <= high + 0.1:
        low, high = min(low, floor), max(high, floor)
    span = (high - low) or 1.0
    step = width / (len(picked) - 1)

    def y(value: float) -> float:
        return round(height - 2 - (value - low) / span * (height - 4), 1)  # 2 px clear at top and bottom

    points = " ".join(f"{round(i * step, 1)},{y(v)}" for i, v in enumerate(picked))
    return points, (y(floor) if floor is not None and low <= floor <= high else None)


def downsample_indices(values: Sequence[float], max_points: int = MAX_POINTS) -> list[int]:
    """Indices to keep so at most `max_points` remain: each bucket keeps its minimum and maximum.

    Min/max rather than a mean, because a single dip below a threshold is what the chart is for. A bucket of
    NaN only (no value, a gap) keeps its first and last index. Vectorised: a year of hourly points is 8,760 values
    per trace, and a loop over 1,000 buckets was a third of the deployment page's time (bench/pages.py).
    """
    n = len(values)
    if n <= max_points:
        return list(range(n))
    array = np.asarray(values, dtype=np.float64)
    starts = np.unique(np.linspace(0, n, max_points // 2 + 1).astype(int)[:-1])
    lengths = np.diff(np.append(starts, n))
    bucket = np.repeat(np.arange(len(starts)), lengths)
    missing = np.isnan(array)
    low = np.where(missing, np.inf, array)
    high = np.where(missing, -np.inf, array)
    # The first index in each bucket where the value equals the bucket's minimum (maximum).
    is_min = low == np.repeat(np.minimum.reduceat(low, starts), lengths)
    is_max = high == np.repeat(np.maximum.reduceat(high, starts), lengths)
    first_min = np.flatnonzero(is_min)[np.unique(bucket[is_min], return_index=True)[1]]
    first_max = np.flatnonzero(is_max)[np.unique(bucket[is_max], return_index=True)[1]]
    empty = np.minimum.reduceat(missing, starts).astype(bool)
    gaps = np.concatenate([starts[empty], (starts + lengths - 1)[empty]])
    return sorted({int(i) for i in np.concatenate([first_min, first_max, gaps])})


DAY_SECONDS = 86_400


def _utc_offset(seconds: float, tz: tzinfo) -> float:
    offset = datetime.fromtimestamp(seconds, tz).utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


def local_times(at: Sequence[datetime], tz: tzinfo) -> list[str]:
    """Each moment as wall-clock time in `tz`, "YYYY-MM-DD HH:MM:SS".

    The zone's offset is looked up per UTC day, not per point: a day whose first and last second share an offset
    has it throughout (no zone changes its clock twice in a day), and only the points of a day with a change are
    looked up one by one. A year's chart is 14,000 points, and astimezone with strftime on each was a quarter of
    its page's time (bench/pages.py)."""
    if not at:
        return []
    seconds = np.floor(np.fromiter((moment.timestamp() for moment in at), dtype=np.float64, count=len(at)))
    days, day_of = np.unique(np.floor_divide(seconds, DAY_SECONDS), return_inverse=True)
    first = np.array([_utc_offset(day * DAY_SECONDS, tz) for day in days])
    last = np.array([_utc_offset(day * DAY_SECONDS + DAY_SECONDS - 1, tz) for day in days])
    offsets = first[day_of]
    for day in np.flatnonzero(first != last):
        for i in np.flatnonzero(day_of == day):
            offsets[i] = _utc_offset(seconds[i], tz)
    wall = (seconds + offsets).astype(np.int64).astype("datetime64[s]")
    return [text.replace("T", " ") for text in np.datetime_as_string(wall).tolist()]


def _pick(items: Sequence, indices: list[int]) -> list:
    return [items[i] for i in indices]


# A version marker: when a version started serving, its label, and the page it links to ("" for none).
Rollout = tuple[datetime, str, str]


def _rollout_marks(rollouts: Sequence[Rollout], tz: tzinfo) -> tuple[list[dict], list[dict]]:
    """A faint vertical line where a version started serving, labelled at the top with a link to the version."""
    shapes, annotations = [], []
    for moment, label, url in rollouts:
        x = local_times([moment], tz)[0]
        shapes.append({
            "type": "line", "xref": "x", "x0": x, "x1": x, "yref": "paper", "y0": 0, "y1": 1,
            "line": {"color": GREY, "width": 1, "dash": "dot"},
        })
        # target=_self: Plotly opens annotation links in a new tab unless told otherwise.
        text = f'<a href="{escape(url)}" target="_self">{escape(label)}</a>' if url else escape(label)
        annotations.append({
            "xref": "x", "x": x, "xanchor": "left", "yref": "paper", "y": 1, "yanchor": "top",
            "text": text, "showarrow": False, "font": {"size": 10, "color": BLUE if url else "#6b7280"},
        })
    return shapes, annotations


def time_axis(x_range: tuple[datetime, datetime] | None, tz: tzinfo) -> dict:
    """A date axis over the chosen range, whatever the data cover: one point on a 30-day chart is drawn in its
    place among 30 days, not at the centre of a 2-millisecond axis."""
    axis = {"type": "date", "gridcolor": "#eef0f3", "linecolor": "#d0d5dd", "showline": True}
    if x_range is not None:
        axis["range"] = local_times(list(x_range), tz)
        axis["autorange"] = False
    return axis


def _layout(*, height: int = 260, y_title: str = "", **overrides) -> dict:
    layout = {
        "template": TEMPLATE,
        "height": height,
        "margin": {"l": 52, "r": 16, "t": 30, "b": 40},
        "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12, "color": INK},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "xaxis": time_axis(None, UTC),
        "yaxis": {"gridcolor": "#eef0f3", "zeroline": False, "title": {"text": y_title, "standoff": 6}},
        "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom", "font": {"size": 11}},
        "hovermode": "x unified",
        "hoverlabel": {"font": {"size": 11}},
    }
    # No empty shape or annotation lists: the figure stays what Plotly's own objects would write.
    layout.update({key: value for key, value in overrides.items() if value != []})
    return layout


def _to_json(figure: go.Figure | dict) -> str:
    """Figure JSON that is safe inside a <script type="application/json"> element.

    Feature names and the like come from users, so "</script>" must not survive (as in json_script).
    """
    text = figure.to_json() if isinstance(figure, go.Figure) else pio.to_json(figure, validate=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _figure_json(traces: list[dict], layout: dict) -> str:
    return _to_json({"data": traces, "layout": layout})


def _series_trace(series: dict[str, list], *, name: str, tz: tzinfo, colour: str, dash: str, fmt: str) -> dict:
    keep = downsample_indices(series["value"])
    # Lists, not numpy arrays: the figure JSON stays plain numbers whatever the Plotly version (6 and later
    # write a numpy array as base64 typed data; 5 writes the same lists for either).
    return {
        "type": "scatter",
        "x": local_times(_pick(series["at"], keep), tz),
        "y": _pick(series["value"], keep),
        "customdata": _pick(series["version"], keep),
        "name": name,
        "mode": "lines+markers",
        "line": {"color": colour, "width": 2, "dash": dash},
        "marker": {"size": 5},
        "hovertemplate": f"%{{y:{fmt}}} (v%{{customdata}})<extra>{name}</extra>",
    }


def metrics_chart(
    *,
    production: dict[str, dict[str, list]],
    evaluation_set: dict[str, dict[str, list]],
    thresholds: dict[str, float],
    tz: tzinfo,
    rollouts: Sequence[Rollout] = (),
    production_label: str = "production",
    x_range: tuple[datetime, datetime] | None = None,
) -> str | None:
    """Quality over time: solid lines on one labelled production window (`production_label` names it),
    dotted on the evaluation set.

    `rollouts` marks when each version went live, so a step in the lines can be read against it.
    """
    traces = []
    for series_by_name, dash, suffix in (
        (production, "solid", production_label),
        (evaluation_set, "dot", "evaluation set"),
    ):
        for name, series in series_by_name.items():
            if series["value"]:
                label = f"{METRIC_LABELS.get(name, name)} · {suffix}"
                colour = METRIC_COLOURS.get(name, GREY)
                traces.append(_series_trace(series, name=label, tz=tz, colour=colour, dash=dash, fmt=".3f"))
    if not traces:
        return None
    shapes, annotations = _rollout_marks(rollouts, tz)
    drawn = set(production) | set(evaluation_set)
    for name, floor in thresholds.items():
        if name not in drawn:
            continue
        shapes.append({
            "type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": floor, "y1": floor,
            "line": {"color": RED, "width": 1, "dash": "dash"},
        })
        annotations.append({
            # On the left: the latest points, on the right, are the ones a reader must see unobstructed.
            "xref": "paper", "x": 0.005, "xanchor": "left", "yref": "y", "y": floor, "yanchor": "bottom",
            "text": f"{METRIC_LABELS.get(name, name)} floor {floor:g}", "showarrow": False,
            "font": {"size": 10, "color": RED},
        })
    layout = _layout(y_title="score", shapes=shapes, annotations=annotations, xaxis=time_axis(x_range, tz))
    layout["yaxis"]["tickformat"] = ".2f"
    return _figure_json(traces, layout)


def latency_chart(
    *,
    series_by_name: dict[str, dict[str, list]],
    tz: tzinfo,
    rollouts: Sequence[Rollout] = (),
    x_range: tuple[datetime, datetime] | None = None,
) -> str | None:
    """Inference latency percentiles in microseconds per single-row call, as each scheduled evaluation
    measures them on the worker over the evaluation set (the versions table uses the same unit)."""
    traces = [
        _series_trace(
            {**series, "value": [value * 1000.0 for value in series["value"]]},
            name=LATENCY_LABELS.get(name, name), tz=tz, colour=LATENCY_COLOURS.get(name, GREY),
            dash=LATENCY_DASHES.get(name, "solid"), fmt=",.0f",
        )
        for name, series in series_by_name.items()
        if series["value"]
    ]
    if not traces:
        return None
    shapes, annotations = _rollout_marks(rollouts, tz)
    layout = _layout(y_title="µs per call", shapes=shapes, annotations=annotations, xaxis=time_axis(x_range, tz))
    layout["yaxis"]["rangemode"] = "tozero"
    return _figure_json(traces, layout)


def drift_share_chart(
    *,
    series: dict[str, list],
    tz: tzinfo,
    dataset_share: float | None = None,
    report_urls: Sequence[str] = (),
    x_range: tuple[datetime, datetime] | None = None,
) -> str | None:
    """Share of drifted features per drift check; checks whose verdict was "drifted" are red. With `report_urls`
    (one per check), clicking a point opens that check's report (static/js/app.js follows `meta.link`)."""
    if not series["at"]:
        return None
    keep = downsample_indices(series["share"])
    drifted = _pick(series["drifted"], keep)
    trace = {
        "type": "scatter",
        "x": local_times(_pick(series["at"], keep), tz),
        "y": _pick(series["share"], keep),
        "name": "drifted features",
        "mode": "lines+markers",
        "line": {"color": GREY, "width": 1.5},
        "marker": {"size": 7, "color": [RED if d else BLUE for d in drifted]},
        "customdata": [
            ["drifted" if d else "stable", url]
            for d, url in zip(drifted, _pick(report_urls, keep) if report_urls else [""] * len(drifted))
        ],
        "hovertemplate": "%{y:.0%} of features (%{customdata[0]})" + ("; click for the report" if report_urls else "")
        + "<extra></extra>",
    }
    if report_urls:
        trace["meta"] = {"link": 1}
    shapes, annotations = [], []
    if dataset_share is not None:
        shapes.append({
            "type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": dataset_share, "y1": dataset_share,
            "line": {"color": RED, "width": 1, "dash": "dash"},
        })
        annotations.append({
            "xref": "paper", "x": 0.005, "xanchor": "left", "yref": "y", "y": dataset_share, "yanchor": "bottom",
            "text": "dataset drift", "showarrow": False, "font": {"size": 10, "color": RED},
        })
    layout = _layout(
        y_title="share of features", showlegend=False, shapes=shapes, annotations=annotations,
        xaxis=time_axis(x_range, tz),
    )
    layout["yaxis"].update({"tickformat": ".0%", "range": [-0.02, 1.02]})
    return _figure_json([trace], layout)


# A bar per feature stays readable up to this many; the report table below lists every feature.
MAX_FEATURE_BARS = 60


def drift_features_chart(*, features: list[dict]) -> str | None:
    """How much each feature moved in one drift report (Jensen-Shannon distance on reference-quantile bins, one
    scale for every test), largest on top, drifted features in red."""
    if not features:
        return None
    rows = sorted(features, key=lambda f: f.get("moved", f["statistic"]), reverse=True)[:MAX_FEATURE_BARS]
    rows.reverse()  # Plotly draws the first category at the bottom
    trace = {
        "type": "bar",
        "x": [f.get("moved", f["statistic"]) for f in rows],
        "y": [str(f["feature"]) for f in rows],
        "orientation": "h",
        "marker": {"color": [RED if f["drifted"] else "#93c5fd" for f in rows]},
        "customdata": [
            drift_decision(test=f["test"], statistic=f["statistic"], p_value=f.get("p_value"), threshold=f["threshold"])
            for f in rows
        ],
        "hovertemplate": "%{y}: moved %{x:.3f}; %{customdata}<extra></extra>",
    }
    layout = _layout(height=max(220, 18 * len(rows) + 70), showlegend=False, hovermode="closest")
    layout["xaxis"] = {"gridcolor": "#eef0f3", "title": {"text": "how much it moved (Jensen-Shannon)"}, "rangemode": "tozero"}
    layout["yaxis"] = {"automargin": True, "tickfont": {"size": 11}}
    layout["margin"] = {"l": 8, "r": 16, "t": 10, "b": 40}
    return _figure_json([trace], layout)


def pareto_chart(*, versions: Sequence, trials: Sequence[dict] = (), highlight: int | None = None) -> str | None:
    """Size against evaluation-set F1 for every version (and the search's tried settings, if any); the versions
    on the size × latency × F1 Pareto front are drawn solid and joined. None when no version has an F1 yet."""
    from monitoring.comparison import pareto_front

    scored = [v for v in versions if v.f1_macro is not None]
    if not scored:
        return None
    front = set(pareto_front([(v.size_bytes, v.latency_p50_ms or 0.0, v.f1_macro) for v in scored]))
    figure = go.Figure()
    if trials:
        figure.add_trace(go.Scatter(
            x=[t["size_bytes"] / 1024 for t in trials if t["size_bytes"]],
            y=[t["f1_macro"] for t in trials if t["size_bytes"]],
            mode="markers", name="tried by the search", marker={"color": GREY, "symbol": "x", "size": 8},
            text=[f"{t['method']} {t['params']}" + ("" if t["kept"] else " (outside tolerance)") for t in trials if t["size_bytes"]],
            hovertemplate="%{text}<br>%{x:.1f} KiB, F1 %{y:.3f}<extra></extra>",
        ))
    on_front = sorted((v for i, v in enumerate(scored) if i in front), key=lambda v: v.size_bytes)
    figure.add_trace(go.Scatter(
        x=[v.size_bytes / 1024 for v in on_front], y=[v.f1_macro for v in on_front], mode="lines",
        name="Pareto front", line={"color": TEAL, "dash": "dot"}, hoverinfo="skip",
    ))
    figure.add_trace(go.Scatter(
        x=[v.size_bytes / 1024 for v in scored], y=[v.f1_macro for v in scored], mode="markers+text",
        name="versions", text=[f"v{v.number}" for v in scored], textposition="top center",
        marker={
            "size": [14 if v.number == highlight else 10 for v in scored],
            "color": [BLUE if i in front else "white" for i in range(len(scored))],
            "line": {"color": [RED if v.number == highlight else BLUE for v in scored], "width": 2},
        },
        customdata=[[v.origin, v.status, v.latency_p50_ms or 0.0] for v in scored],
        hovertemplate="%{text} (%{customdata[0]}, %{customdata[1]})<br>%{x:.1f} KiB, F1 %{y:.3f}, "
        "p50 %{customdata[2]:.3f} ms<extra></extra>",
    ))
    sizes = [v.size_bytes / 1024 for v in scored] + [t["size_bytes"] / 1024 for t in trials if t["size_bytes"]]
    scores = [v.f1_macro for v in scored] + [t["f1_macro"] for t in trials if t["size_bytes"]]
    x_range, y_range = pareto_ranges(sizes=sizes, scores=scores)
    figure.update_layout(**_layout(height=320, y_title="F1 (macro), evaluation set"))
    figure.update_xaxes(title_text="Model size (KiB, log scale)", type="log", range=x_range, autorange=False)
    figure.update_yaxes(range=y_range, autorange=False)
    return _to_json(figure)


def pareto_ranges(*, sizes: Sequence[float], scores: Sequence[float]) -> tuple[list[float], list[float]]:
    """Axes that fit every point with a margin, and room above the highest for its "v3" label: Plotly's
    autorange ignores text labels, and on a log axis of two near-equal sizes it zooms to a sliver.

    The x range is in log10 units, as Plotly takes it for a log axis."""
    logs = [float(np.log10(max(size, 1e-3))) for size in sizes]
    low, high = min(logs), max(logs)
    pad = max(0.15 * (high - low), 0.1)  # at least a quarter of a decade across, so one point is not alone
    y_low, y_high = min(scores), max(scores)
    y_pad = max(0.1 * (y_high - y_low), 0.01)
    return [low - pad, high + pad], [y_low - y_pad, min(y_high + 2.5 * y_pad, 1.0 + 2.5 * y_pad)]
def drift_histogram_chart(*, feature: dict) -> str | None:
    """Reference and current shares of one feature, overlaid: bins for numeric features, bars per category."""
    histogram = feature.get("histogram") or {}
    if not histogram.get("reference") and not histogram.get("current"):
        return None
    if "categories" in histogram:
        x = histogram["categories"]
        x_axis = {"type": "category", "title": {"text": feature["feature"]}}
        width = None
    else:
        edges = histogram["edges"]
        x = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
        x_axis = {"type": "linear", "gridcolor": "#eef0f3", "title": {"text": feature["feature"]}}
        width = [b - a for a, b in zip(edges[:-1], edges[1:])]
    traces = [
        {"type": "bar", "x": x, "y": histogram[side], "name": side, "marker": {"color": colour}, "opacity": 0.55,
         "hovertemplate": f"{side}: %{{y:.1%}} at %{{x}}<extra></extra>", **({"width": width} if width else {})}
        for side, colour in (("reference", GREY), ("current", RED if feature["drifted"] else BLUE))
    ]
    layout = _layout(height=200, y_title="share", barmode="overlay", bargap=0, hovermode="closest")
    layout["xaxis"] = x_axis
    layout["yaxis"]["tickformat"] = ".0%"
    layout["margin"] = {"l": 48, "r": 8, "t": 24, "b": 36}
    return _figure_json(traces, layout)


# Lines on one drift-over-time chart: more stop being readable; the report table lists every feature.
MAX_SERIES_LINES = 8


def _figure(value: float) -> str:
    return f"{value:.1e}" if value and abs(value) < 0.001 else f"{value:.3g}"


def drift_decision(*, test: str, statistic: float, p_value: float | None, threshold: float) -> str:
    """How one feature's verdict was reached, comparing like with like: a p-value test's p against its p-value
    threshold (after correction), a distance against its distance threshold; never a statistic against a p."""
    name = test.upper() if test in ("ks", "psi") else test.capitalize()
    if p_value is not None:
        verdict = "≤" if p_value <= threshold else ">"
        return f"{name} p {_figure(p_value)} {verdict} threshold p {_figure(threshold)} (statistic {_figure(statistic)})"
    verdict = "≥" if statistic >= threshold else "<"
    return f"{name} {_figure(statistic)} {verdict} threshold {_figure(threshold)}"


def drift_feature_series_chart(
    *, series: dict[str, dict[str, list]], tz: tzinfo, features: list[str], report_urls: dict[int, str] | None = None
) -> str | None:
    """How much each named feature moved per check, over time (Jensen-Shannon distance on reference-quantile bins:
    one scale for every test, so lines of KS- and PSI-tested features can share an axis); checks where it drifted
    are red. The tooltip states the deciding test against its own threshold. With `report_urls` ({report id: url}),
    clicking a point opens that check's report."""
    traces = []
    for name in features[:MAX_SERIES_LINES]:
        s = series.get(name)
        if not s or not s["at"]:
            continue
        keep = downsample_indices(s["moved"])
        drifted = _pick(s["drifted"], keep)
        decisions = [
            drift_decision(test=s["test"][i], statistic=s["statistic"][i], p_value=s["p_value"][i], threshold=s["threshold"][i])
            for i in keep
        ]
        urls = [(report_urls or {}).get(s["report"][i], "") for i in keep]
        traces.append({
            "type": "scatter",
            "x": local_times(_pick(s["at"], keep), tz),
            "y": _pick(s["moved"], keep),
            "name": name,
            "mode": "lines+markers",
            "line": {"width": 1.5},
            "marker": {"size": 6, "color": [RED if d else BLUE for d in drifted]},
            "customdata": [[decision, "drifted" if d else "stable", url] for decision, d, url in zip(decisions, drifted, urls)],
            "hovertemplate": "%{fullData.name}: moved %{y:.3f}; %{customdata[0]} (%{customdata[1]})<extra></extra>",
            **({"meta": {"link": 2}} if report_urls else {}),
        })
    if not traces:
        return None
    layout = _layout(y_title="moved (Jensen-Shannon)", hovermode="closest")
    layout["yaxis"]["rangemode"] = "tozero"
    return _figure_json(traces, layout)


GUARD_COLOURS = {"class_shift": BLUE, "score_shift": TEAL, "estimated_accuracy": "#7c3aed", "labelled_accuracy": "#d97706",
                 "latency_p95": "#db2777", "error_rate": "#65a30d"}


def rollout_guards_chart(*, series: Sequence, tz: tzinfo) -> str | None:
    """Each guard's value as a share of its threshold over a rollout: above 1 (the dashed line) is a breach if
    its test agrees. Checks that waited for rows have no value and leave a gap."""
    traces = []
    for s in series:
        ratios = [None if v is None or not s.threshold else v / s.threshold for v in s.value]
        if all(r is None for r in ratios):
            continue
        # A long rollout checks every few minutes for days: MAX_POINTS per guard, its breaches kept.
        keep = downsample_indices([np.nan if r is None else r for r in ratios])
        traces.append({
            "type": "scatter",
            "x": local_times(_pick(s.at, keep), tz), "y": _pick(ratios, keep), "name": s.guard.replace("_", " "),
            "mode": "lines+markers", "line": {"color": GUARD_COLOURS.get(s.guard, GREY), "width": 2}, "marker": {"size": 5},
            "customdata": [[s.value[i], s.threshold, s.verdict[i]] for i in keep],
            "hovertemplate": "%{customdata[0]:.3f} vs %{customdata[1]} (%{customdata[2]})<extra>" + s.guard + "</extra>",
        })
    if not traces:
        return None
    # The threshold across the whole plot, as Plotly's add_hline draws it.
    threshold = {"type": "line", "xref": "x domain", "x0": 0, "x1": 1, "yref": "y", "y0": 1.0, "y1": 1.0,
                 "line": {"color": "#dc2626", "width": 1, "dash": "dash"}}
    return _figure_json(traces, _layout(y_title="value / threshold", shapes=[threshold]))
