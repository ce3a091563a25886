"""Chart builders: series in, Plotly figure JSON out (no database)."""

from __future__ import annotations

import json
import zoneinfo
from datetime import UTC, datetime, timedelta

import numpy as np

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
