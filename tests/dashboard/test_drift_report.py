"""The drift report page: every feature with its test and verdict, histograms, the multivariate verdict,
drift over time and performance, for people who may see the deployment only."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from monitoring.blobs import runner_for
from tests.conftest import breast_cancer_split
from tests.workers.conftest import holdout, ingest_traffic
from workers.drift_check import check_drift

pytestmark = pytest.mark.django_db


def _check(deployment, X, *, prefix: str, end):
    start = end - timedelta(minutes=len(X) + 1)
    ingest_traffic(deployment, X, predicted=runner_for(deployment.active_version()).predict(X).labels, start=start, prefix=prefix)
    return check_drift(deployment=deployment, window_start=start, window_end=end)


def test_the_report_explains_each_feature_and_the_multivariate_verdict(client, viewer, deployment):
    X, _ = holdout()
    shifted = X[:150].copy()
    shifted[:, 3] += 3 * breast_cancer_split()[0][:, 3].std()  # one feature moves a lot
    now = timezone.now()
    _check(deployment, X[150:], prefix="before", end=now - timedelta(hours=6))
    report = _check(deployment, shifted, prefix="after", end=now)
    client.force_login(viewer)

    page = client.get(reverse("drift-report", args=[deployment.slug, report.pk])).content.decode()

    rows = re.findall(r'<tr class="[^"]*" data-feature="([^"]+)"', page)
    assert rows[0] == "f3" and len(rows) == len(deployment.feature_names)  # the feature that moved most is first
    assert "KS" in page and "p &le;" in page  # the test and its corrected threshold
    assert page.count("data-histogram=") == 24 and "The 24 features that moved most are drawn" in page  # a capped page
    assert 'data-chart="hist-1"' in page and 'data-chart="drift-series"' in page and 'data-chart="drift-features"' in page
    assert "data-auc" in page and "What gives the current window away" in page
    assert 'data-performance="estimated"' in page and "estimated</span>" in page


def test_the_report_is_hidden_from_outsiders(client, outsider, deployment):
    X, _ = holdout()
    report = _check(deployment, X[:100], prefix="n", end=timezone.now())
    client.force_login(outsider)

    assert client.get(reverse("drift-report", args=[deployment.slug, report.pk])).status_code == 404


def test_the_drift_chart_points_open_their_reports_which_link_to_their_neighbours(client, viewer, deployment):
    X, _ = holdout()
    now = timezone.now()
    reports = [_check(deployment, X[i * 60:(i + 1) * 60], prefix=f"w{i}", end=now - timedelta(hours=12 - 4 * i)) for i in range(3)]
    client.force_login(viewer)

    figure = json.loads(client.get(reverse("deployment", args=[deployment.slug])).context["charts"]["drift"])
    (trace,) = figure["data"]
    urls = [row[trace["meta"]["link"]] for row in trace["customdata"]]
    assert urls == [reverse("drift-report", args=[deployment.slug, r.pk]) for r in reports]  # oldest first

    middle = client.get(urls[1]).content.decode()
    assert f'href="{urls[0]}" data-nav="previous"' in middle and f'href="{urls[2]}" data-nav="next"' in middle
    first = client.get(urls[0]).content.decode()
    assert 'aria-disabled="true" data-nav="previous"' in first and f'href="{urls[1]}" data-nav="next"' in first


def test_the_drift_report_list_is_newest_first_and_hidden_from_outsiders(client, viewer, outsider, deployment):
    X, _ = holdout()
    now = timezone.now()
    older = _check(deployment, X[:60], prefix="a", end=now - timedelta(hours=5))
    newer = _check(deployment, X[60:120], prefix="b", end=now)
    client.force_login(viewer)

    page = client.get(reverse("drift-reports", args=[deployment.slug])).content.decode()

    assert re.findall(r'data-report="(\d+)"', page) == [str(newer.pk), str(older.pk)]
    client.force_login(outsider)
    assert client.get(reverse("drift-reports", args=[deployment.slug])).status_code == 404


def test_a_deployment_without_drift_checks_lists_none_and_says_when_they_come(client, viewer, deployment):
    client.force_login(viewer)

    page = client.get(reverse("drift-reports", args=[deployment.slug])).content.decode()

    assert 'data-empty="drift-reports"' in page and "once traffic arrives" in page
