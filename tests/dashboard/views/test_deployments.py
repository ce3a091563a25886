"""dashboard/views/deployments.py: the deployment page's charts, per-class results, times and empty states."""

from __future__ import annotations

import json
import zoneinfo
from datetime import timedelta

from django.conf import settings
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone

from monitoring import services
from monitoring.models import (
    AuditEvent,
    EvaluationRun,
)
from tests.conftest import CLASSES, FEATURES
from tests.dashboard.views.helpers import _evaluate

# ---------------------------------------------------------------- charts, static files, empty states


def test_the_deployment_page_embeds_charts_once_there_are_evaluations(client, viewer, deployment):
    now = timezone.now()
    for hours, accuracy in [(30, 0.93), (20, 0.95), (10, 0.94)]:
        _evaluate(deployment, deployment.active_version(), accuracy=accuracy, at=now - timedelta(hours=hours))
    client.force_login(viewer)

    page = client.get(reverse("deployment", args=["tumour"])).content.decode()

    assert 'data-chart="metrics"' in page and 'id="chart-metrics-figure"' in page
    assert 'data-chart="latency"' in page
    assert static("plotly/plotly.min.js") in page  # under its hashed name


def test_the_quality_chart_follows_the_serving_versions_not_candidates(client, viewer, candidate):
    deployment = candidate.deployment
    now = timezone.now()
    _evaluate(deployment, deployment.versions.get(number=1), accuracy=0.95, at=now - timedelta(hours=2))
    _evaluate(deployment, candidate, accuracy=0.80, at=now - timedelta(hours=1))
    client.force_login(viewer)

    figure = json.loads(client.get(reverse("deployment", args=["tumour"])).context["charts"]["metrics"])

    assert {number for trace in figure["data"] for number in trace["customdata"]} == {1}
    assert 0.80 not in [y for trace in figure["data"] for y in trace["y"]]


def test_a_new_deployment_page_shows_empty_states(client, team, operator):
    services.deployment_create(team=team, name="Fresh", slug="fresh", feature_names=FEATURES, class_labels=CLASSES, by=operator)
    client.force_login(operator)

    response = client.get(reverse("deployment", args=["fresh"]))

    page = response.content.decode()
    assert response.status_code == 200
    assert 'data-empty="versions"' in page and "Upload an ONNX classifier" in page
    assert f"Drift is checked every {settings.DRIFT_INTERVAL_MINUTES} minutes once traffic arrives" in page
    assert 'data-empty="metrics"' in page and 'data-empty="jobs"' in page and 'data-empty="tokens"' in page
    assert 'data-empty="alerts"' in page
    assert 'data-chart=' not in page
    assert client.get(reverse("audit", args=["fresh"])).status_code == 200


def test_times_are_shown_in_the_zone_from_the_tz_cookie(client, viewer, deployment):
    client.force_login(viewer)
    client.cookies["tz"] = "Asia/Tokyo"

    page = client.get(reverse("audit", args=["tumour"])).content.decode()

    assert "Asia/Tokyo" in page
    created = AuditEvent.objects.filter(deployment=deployment).first().at
    assert timezone.localtime(created, timezone=zoneinfo.ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M:%S") in page


def test_the_deployment_page_shows_per_class_results_of_a_real_evaluation(client, viewer, deployment):
    from workers.evaluation import evaluate_version

    evaluate_version(version=deployment.active_version(), source=EvaluationRun.Source.EVALUATION_SET, latency=False)

    client.force_login(viewer)
    page = client.get(reverse("deployment", args=["tumour"])).content.decode()

    metrics = EvaluationRun.objects.get().metrics
    assert 'data-table="per-class"' in page
    assert f"<td>{metrics['per_class']['support'][1]}</td>" in page
    assert f"{metrics['per_class']['f1'][0]:.3f}" in page


def test_single_row_latencies_a_few_microseconds_apart_read_differently():
    from dashboard.views.deployments import VERSION_COLUMNS, _compare

    latency = next(c for c in VERSION_COLUMNS if c.key == "latency_p95_ms")
    active, candidate = _compare(0.0123, None, latency), _compare(0.0071, 0.0123, latency)

    # Two decimals of milliseconds read "0.01" for both.
    assert (active.value, candidate.value, candidate.delta, candidate.better) == ("12", "7", "-5", True)
    assert "µs" in latency.label


def test_the_quality_chart_draws_one_declared_production_window_at_a_time(client, viewer, deployment):
    v1, now = deployment.active_version(), timezone.now()
    for days, accuracy in [(7, 0.73), (1, 0.58)]:
        run = EvaluationRun.objects.create(
            deployment=deployment, version=v1, measured_at=now,
            source=EvaluationRun.Source.PRODUCTION if days == 7 else EvaluationRun.Source.PRODUCTION_DAY,
            window_start=now - timedelta(days=days), window_end=now,
        )
        services.evaluation_complete(run=run, metrics={"n_rows": 50, "accuracy": accuracy}, raise_alerts=False)
    client.force_login(viewer)

    def drawn(query: str) -> dict[str, list]:
        response = client.get(reverse("deployment", args=["tumour"]) + query)
        return {trace["name"]: trace["y"] for trace in json.loads(response.context["charts"]["metrics"])["data"]}

    assert drawn("") == {"Accuracy · labelled production, 7 d": [0.73]}
    assert drawn("?window=day") == {"Accuracy · labelled production, 24 h": [0.58]}
    page = client.get(reverse("deployment", args=["tumour"])).content.decode()
    assert "labelled production, 7 days · 50 rows" in page  # the headline says which rows it is


# ---------------------------------------------------------------- time range, shared links


def test_a_custom_range_in_the_url_draws_only_its_points_on_an_axis_spanning_it(client, viewer, deployment):
    tokyo = zoneinfo.ZoneInfo("Asia/Tokyo")
    start = timezone.now().astimezone(tokyo).replace(second=0, microsecond=0) - timedelta(days=10)
    end = start + timedelta(days=3)
    for days_after, accuracy in [(-1, 0.91), (1, 0.93), (2, 0.95), (4, 0.97)]:  # two inside the range
        _evaluate(deployment, deployment.active_version(), accuracy=accuracy, at=start + timedelta(days=days_after))
    client.force_login(viewer)
    client.cookies["tz"] = "Asia/Tokyo"
    query = f"?from={start:%Y-%m-%dT%H:%M}&to={end:%Y-%m-%dT%H:%M}&refresh=5m"

    response = client.get(reverse("deployment", args=["tumour"]) + query)

    figure = json.loads(response.context["charts"]["metrics"])
    assert [trace["y"] for trace in figure["data"]] == [[0.93, 0.95], [0.92, 0.94]]  # accuracy, F1: days 1 and 2 only
    assert figure["layout"]["xaxis"]["range"] == [f"{start:%Y-%m-%d %H:%M:%S}", f"{end:%Y-%m-%d %H:%M:%S}"]
    page = response.content.decode()
    assert f'value="{start:%Y-%m-%dT%H:%M}"' in page and 'data-refresh-seconds="300"' in page
    # The presets and window links keep the refresh; a preset replaces the custom range.
    assert "?days=7&amp;refresh=5m&amp;window=evaluation#health" in page


def test_a_bad_range_is_a_400_that_says_what_to_send_and_still_shows_the_last_30_days(client, viewer, deployment):
    _evaluate(deployment, deployment.active_version(), accuracy=0.93, at=timezone.now() - timedelta(days=2))
    client.force_login(viewer)

    response = client.get(reverse("deployment", args=["tumour"]) + "?from=2026-07-02T09:00&to=2026-07-01T09:00")

    assert response.status_code == 400
    assert "&#x27;from&#x27; must be before &#x27;to&#x27;. The charts show the last 30 days instead." in response.content.decode()
    assert response.context["range"].days == 30 and response.context["charts"]["metrics"] is not None


def test_version_markers_link_to_each_version(client, viewer, approver, candidate):
    deployment = candidate.deployment
    services.version_approve(version=candidate, by=approver, comment="ok")
    _evaluate(deployment, candidate, accuracy=0.95, at=timezone.now())
    client.force_login(viewer)

    figure = json.loads(client.get(reverse("deployment", args=["tumour"])).context["charts"]["metrics"])

    url = reverse("version", args=["tumour", candidate.number])
    assert f'<a href="{url}" target="_self">v{candidate.number}</a>' in [a["text"] for a in figure["layout"]["annotations"]]
