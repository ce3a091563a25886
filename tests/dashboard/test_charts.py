"""Chart builders: series in, Plotly figure JSON out (no database)."""

from __future__ import annotations

import json
import zoneinfo
from datetime import UTC, datetime, timedelta

import numpy as np
import plotly.graph_objects as go

from dashboard import charts

TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")


def _series(values: list[float], start: datetime = datetime(2025, 3, 1, tzinfo=UTC)) -> dict[str, list]:
    return {
        "at": [start + timedelta(minutes=i) for i in range(len(values))],
        "value": list(values),
        "version": [1] * len(values),
    }


def test_a_long_series_is_downsampled_to_at_most_2000_points_keeping_its_extremes():
    values = np.sin(np.linspace(0, 60, 50_000)).tolist()
    values[31_337] = -5.0  # a single dip below any threshold must survive

    keep = charts.downsample_indices(values)

    assert len(keep) <= charts.MAX_POINTS
    assert keep == sorted(keep)
    assert 31_337 in keep
    assert max(values[i] for i in keep) == max(values)


def test_a_short_series_is_kept_whole():
    assert charts.downsample_indices([0.1, 0.2, 0.3]) == [0, 1, 2]


def test_the_metrics_chart_draws_every_series_with_its_floor_in_the_viewers_zone():
    figure = json.loads(
        charts.metrics_chart(
            production={"accuracy": _series([0.91] * 5000), "f1_macro": _series([])},
            evaluation_set={"accuracy": _series([0.95, 0.96]), "f1_macro": _series([0.94, 0.95])},
            thresholds={"accuracy": 0.9},
            tz=TOKYO,
        )
    )

    names = [trace["name"] for trace in figure["data"]]
    assert names == ["Accuracy · production", "Accuracy · evaluation set", "F1 (macro) · evaluation set"]
    assert all(len(trace["x"]) <= charts.MAX_POINTS for trace in figure["data"])
    assert figure["data"][1]["x"][0] == "2025-03-01 09:00:00"  # 00:00 UTC is 09:00 in Tokyo
    assert [shape["y0"] for shape in figure["layout"]["shapes"]] == [0.9]


def test_a_chart_without_data_is_none_so_the_page_shows_an_empty_state():
    assert charts.metrics_chart(production={}, evaluation_set={"accuracy": _series([])}, thresholds={}, tz=UTC) is None
    assert charts.latency_chart(series_by_name={"latency_p95_ms": _series([])}, tz=UTC) is None
    assert charts.drift_share_chart(series={"at": [], "share": [], "drifted": []}, tz=UTC) is None
    assert charts.drift_features_chart(features=[]) is None


def test_feature_names_cannot_break_out_of_the_script_element():
    features = [{"feature": "</script><script>alert(1)</script>", "test": "ks", "statistic": 0.3,
                 "p_value": 0.01, "threshold": 0.05, "drifted": True}]

    text = charts.drift_features_chart(features=features)

    assert "<" not in text and ">" not in text
    assert json.loads(text)["data"][0]["y"] == ["</script><script>alert(1)</script>"]


def test_the_feature_chart_puts_the_largest_statistic_on_top_and_marks_drift_red():
    features = [
        {"feature": "small", "test": "ks", "statistic": 0.05, "p_value": 0.5, "threshold": 0.01, "drifted": False},
        {"feature": "big", "test": "ks", "statistic": 0.6, "p_value": 1e-12, "threshold": 0.01, "drifted": True},
    ]

    trace = json.loads(charts.drift_features_chart(features=features))["data"][0]

    assert trace["y"] == ["small", "big"]  # Plotly draws the last category at the top
    assert trace["marker"]["color"][-1] == charts.RED


# ---------------------------------------------------------------- time axis, version links, drift tooltips


def test_a_single_point_on_a_30_day_chart_is_drawn_on_a_30_day_axis():
    end = datetime(2025, 3, 31, tzinfo=UTC)
    figure = json.loads(charts.metrics_chart(
        production={}, evaluation_set={"accuracy": _series([0.95], start=end - timedelta(days=2))}, thresholds={},
        tz=TOKYO, x_range=(end - timedelta(days=30), end),
    ))

    assert figure["layout"]["xaxis"]["range"] == ["2025-03-01 09:00:00", "2025-03-31 09:00:00"]  # in Tokyo time
    assert figure["layout"]["xaxis"]["autorange"] is False


def test_version_markers_link_to_the_version_in_the_same_tab():
    at = datetime(2025, 3, 1, 12, tzinfo=UTC)
    figure = json.loads(charts.latency_chart(
        series_by_name={"latency_p95_ms": _series([0.02, 0.03])}, tz=UTC, rollouts=[(at, "v2", "/d/tumour/versions/2/compare")],
    ))

    (annotation,) = figure["layout"]["annotations"]
    assert annotation["text"] == '<a href="/d/tumour/versions/2/compare" target="_self">v2</a>'
    assert figure["layout"]["shapes"][0]["x0"] == "2025-03-01 12:00:00"


def test_latency_percentiles_differ_in_colour_and_in_dash():
    figure = json.loads(charts.latency_chart(
        series_by_name={name: _series([0.02, 0.03]) for name in charts.LATENCY_LABELS}, tz=UTC
    ))

    lines = [(trace["line"]["color"], trace["line"]["dash"]) for trace in figure["data"]]
    assert len({colour for colour, _ in lines}) == 3 and len({dash for _, dash in lines}) == 3


def test_a_p_value_tests_verdict_compares_its_p_with_the_p_threshold_not_its_statistic():
    text = charts.drift_decision(test="ks", statistic=0.31, p_value=0.0004, threshold=0.0017)

    assert text == "KS p 4.0e-04 ≤ threshold p 0.0017 (statistic 0.31)"


def test_a_distance_tests_verdict_compares_the_distance_with_the_distance_threshold():
    assert charts.drift_decision(test="psi", statistic=0.12, p_value=None, threshold=0.2) == "PSI 0.12 < threshold 0.2"


def _feature_series(tests: list[str]) -> dict[str, list]:
    n = len(tests)
    return {
        "at": [datetime(2025, 3, 1, tzinfo=UTC) + timedelta(hours=i) for i in range(n)],
        "statistic": [0.3] * n, "p_value": [0.001 if t == "ks" else None for t in tests], "threshold": [0.05 if t == "ks" else 0.2 for t in tests],
        "moved": [0.1 * (i + 1) for i in range(n)], "drifted": [True] * n, "test": tests, "report": list(range(10, 10 + n)),
    }


def test_the_drift_over_time_tooltip_compares_like_with_like_and_points_open_their_report():
    figure = json.loads(charts.drift_feature_series_chart(
        series={"f0": _feature_series(["ks", "ks"]), "f1": _feature_series(["psi"])}, tz=UTC, features=["f0", "f1"],
        report_urls={10: "/d/t/drift/10/", 11: "/d/t/drift/11/"},
    ))

    ks, psi = figure["data"]
    assert [row[0] for row in ks["customdata"]] == ["KS p 0.001 ≤ threshold p 0.05 (statistic 0.3)"] * 2
    assert psi["customdata"][0][0] == "PSI 0.3 ≥ threshold 0.2"
    assert ks["y"] == [0.1, 0.2]  # one scale for every test: how much each feature moved
    assert [row[ks["meta"]["link"]] for row in ks["customdata"]] == ["/d/t/drift/10/", "/d/t/drift/11/"]


def test_the_pareto_axes_fit_every_point_with_room_for_its_label():
    sizes, scores = [12.0, 48.0, 50.0], [0.90, 0.95, 0.97]

    (x_low, x_high), (y_low, y_high) = charts.pareto_ranges(sizes=sizes, scores=scores)

    assert 10 ** x_low < min(sizes) and 10 ** x_high > max(sizes)
    assert y_low < min(scores) and y_high > max(scores) + 0.005  # the "v3" label above the top point fits


def test_the_pareto_axes_of_a_single_point_are_not_a_sliver():
    (x_low, x_high), (y_low, y_high) = charts.pareto_ranges(sizes=[30.0], scores=[0.95])

    assert x_high - x_low >= 0.2 and y_high - y_low >= 0.02


def test_a_sparkline_fills_its_box_and_places_the_floor():
    points, floor_y = charts.sparkline_points([0.95, 0.93, 0.97], floor=0.9)

    xy = [tuple(map(float, p.split(","))) for p in points.split()]
    assert [x for x, _ in xy] == [0.0, 48.0, 96.0]
    assert all(2 <= y <= 22 for _, y in xy) and floor_y == 22.0  # the floor is the lowest value drawn
    assert charts.sparkline_points([0.9], floor=None) == ("", None)  # one point is no line


def _year_hourly(dip_at: int) -> tuple[dict[str, list], float]:
    """A year of hourly points (8,760) with one dip: what the deployment page's custom year range reads."""
    values = (0.9 + 0.02 * np.sin(np.arange(365 * 24) / 24)).tolist()
    values[dip_at] = 0.41
    start = datetime(2025, 1, 1, tzinfo=UTC)
    return {
        "at": [start + timedelta(hours=i) for i in range(len(values))],
        "value": values,
        "version": [1 + i // 2190 for i in range(len(values))],
    }, values[dip_at]


def _traces(figure_json: str) -> list[dict]:
    return json.loads(figure_json)["data"]


def test_a_year_of_hourly_points_is_drawn_in_at_most_2000_per_trace_with_its_dip():
    series, dip = _year_hourly(dip_at=5_000)

    figure = charts.metrics_chart(
        production={"accuracy": series, "f1_macro": series}, evaluation_set={"accuracy": series},
        thresholds={"accuracy": 0.85}, tz=TOKYO,
    )
    latency = charts.latency_chart(series_by_name={"latency_p95_ms": series}, tz=TOKYO)

    traces = _traces(figure) + _traces(latency)
    assert len(traces) == 4
    for trace in traces:
        assert len(trace["x"]) == len(trace["y"]) <= charts.MAX_POINTS
        assert len(trace["x"]) > charts.MAX_POINTS // 2  # downsampled to the budget, not far below it
    assert dip in _traces(figure)[0]["y"]
    assert dip * 1000 in _traces(latency)[0]["y"]  # µs: the dip survives the unit change too
    dip_time = series["at"][5_000].astimezone(TOKYO).strftime("%Y-%m-%d %H:%M:%S")
    assert _traces(figure)[0]["x"][_traces(figure)[0]["y"].index(dip)] == dip_time


def test_a_year_of_drift_checks_keeps_its_drifted_check_and_its_report_link():
    n = 365 * 24
    start = datetime(2025, 1, 1, tzinfo=UTC)
    share = [0.1] * n
    share[7_000] = 0.9
    series = {"at": [start + timedelta(hours=i) for i in range(n)], "share": share,
              "drifted": [s > 0.5 for s in share], "report": list(range(n))}

    trace = _traces(charts.drift_share_chart(series=series, tz=UTC, report_urls=[f"/r/{i}" for i in range(n)]))[0]

    assert len(trace["y"]) <= charts.MAX_POINTS
    i = trace["y"].index(0.9)
    assert trace["customdata"][i] == ["drifted", "/r/7000"]
    assert trace["marker"]["color"][i] == charts.RED


def test_a_long_rollouts_guard_chart_is_downsampled_keeping_its_breach_and_its_gaps():
    from monitoring.selectors.rollouts import GuardSeries

    n = 10_000  # a check a minute for a week
    start = datetime(2025, 1, 1, tzinfo=UTC)
    values: list[float | None] = [0.01] * n
    values[4_321] = 0.2  # the breach
    values[100:200] = [None] * 100  # waiting for rows
    series = GuardSeries("class_shift", 0.1, [start + timedelta(minutes=i) for i in range(n)], values,
                         ["pass"] * 4_321 + ["breach"] + ["pass"] * (n - 4_322))

    trace = _traces(charts.rollout_guards_chart(series=[series], tz=UTC))[0]

    assert len(trace["y"]) <= charts.MAX_POINTS
    i = trace["y"].index(2.0)
    assert trace["customdata"][i] == [0.2, 0.1, "breach"]
    assert None in trace["y"]


def _every_kind_of_figure() -> dict[str, str]:
    from monitoring.selectors.rollouts import GuardSeries

    start = datetime(2025, 1, 1, tzinfo=UTC)
    series = _series([0.9, 0.8, 0.95] * 1000, start)  # long enough to be downsampled
    shares = {"at": series["at"], "share": [v - 0.5 for v in series["value"]], "drifted": [v < 0.85 for v in series["value"]],
              "report": list(range(len(series["at"])))}
    features = [
        {"feature": f"f{i}", "test": "ks" if i % 2 else "psi", "statistic": 0.1 * i, "p_value": 0.01 * i if i % 2 else None,
         "threshold": 0.05, "moved": 0.02 * i, "drifted": i % 3 == 0,
         "histogram": {"edges": [0, 1, 2], "reference": [0.5, 0.5], "current": [0.4, 0.6]} if i % 2
         else {"categories": ["a", "b"], "reference": [0.5, 0.5], "current": [0.6, 0.4]}}
        for i in range(4)
    ]
    checks = {f["feature"]: {"at": series["at"][:3], "statistic": [0.1] * 3, "p_value": [0.2] * 3, "threshold": [0.05] * 3,
                             "moved": [0.1, 0.2, 0.3], "drifted": [False, True, False], "test": ["ks"] * 3, "report": [1, 2, 3]}
              for f in features}
    guards = GuardSeries("class_shift", 0.1, series["at"][:3], [0.01, None, 0.2], ["pass", "waiting", "breach"])
    rollouts = [(start, "v1", "/d/x/v/1"), (start + timedelta(hours=5), "v2", "")]
    return {
        "metrics": charts.metrics_chart(production={"accuracy": series}, evaluation_set={"f1_macro": series},
                                        thresholds={"accuracy": 0.85}, tz=TOKYO, rollouts=rollouts,
                                        x_range=(start, start + timedelta(days=3))),
        "metrics, bare": charts.metrics_chart(production={"accuracy": series}, evaluation_set={}, thresholds={}, tz=UTC),
        "latency": charts.latency_chart(series_by_name={"latency_p95_ms": series}, tz=TOKYO, rollouts=rollouts),
        "drift share": charts.drift_share_chart(series=shares, tz=TOKYO, report_urls=[f"/r/{i}" for i in shares["report"]]),
        "drift share, dataset line": charts.drift_share_chart(series=shares, tz=UTC, dataset_share=0.5),
        "features": charts.drift_features_chart(features=features),
        "histogram, numeric": charts.drift_histogram_chart(feature=features[1]),
        "histogram, categories": charts.drift_histogram_chart(feature=features[0]),
        "feature series": charts.drift_feature_series_chart(series=checks, tz=TOKYO, features=list(checks),
                                                            report_urls={2: "/r/2"}),
        "guards": charts.rollout_guards_chart(series=[guards], tz=TOKYO),
    }


def test_every_figure_is_one_plotly_accepts_unchanged():
    # The builders write figure dicts unvalidated (for speed): Plotly's own objects must take each as it is, and
    # write it back the same (an unknown property or a misspelt value raises here).
    for kind, figure_json in _every_kind_of_figure().items():
        figure = json.loads(figure_json)
        assert json.loads(go.Figure(figure).to_json()) == figure, kind


def test_wall_clock_times_match_a_per_point_conversion_across_clock_changes():
    # Every 17 minutes for two years: both DST changes each year, half-hour (Lord Howe) and odd (St John's) offsets.
    at = [datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=17 * i, microseconds=250) for i in range(62_000)]
    for name in ("Europe/London", "America/Sao_Paulo", "Australia/Lord_Howe", "America/St_Johns", "Asia/Tokyo", "UTC"):
        tz = zoneinfo.ZoneInfo(name)
        assert charts.local_times(at, tz) == [m.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") for m in at], name
    assert charts.local_times([datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC)], UTC) == ["1969-12-31 23:59:59"]
    assert charts.local_times([], TOKYO) == []
