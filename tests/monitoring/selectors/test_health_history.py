"""The health history shows what served: a version's points only while it served, no maintenance job's runs,
and one production window length per line (issue 16, wrong answer 1)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring import selectors, services
from monitoring.models import EvaluationRun, MaintenanceJob, MetricPoint, ServingPeriod
from tests.conftest import trained_model

pytestmark = pytest.mark.django_db

Source = EvaluationRun.Source


def _run(version, *, accuracy, at, source=Source.EVALUATION_SET, window_days=None, job=None) -> EvaluationRun:
    window = {}
    if window_days is not None:
        window = {"window_start": at - timedelta(days=window_days), "window_end": at}
    run = EvaluationRun.objects.create(
        deployment=version.deployment, version=version, source=source, measured_at=at, job=job, **window
    )
    return services.evaluation_complete(run=run, metrics={"n_rows": 100, "accuracy": accuracy}, raise_alerts=False)


def _accuracy(deployment, source=Source.EVALUATION_SET, window_days=None) -> list[tuple[int, float]]:
    series = selectors.serving_metric_series(
        deployment=deployment, names=["accuracy"], source=source, window_days=window_days
    )["accuracy"]
    return list(zip(series["version"], series["value"]))


def _candidate(deployment, operator):
    onnx_bytes, recipe = trained_model(C=0.5)
    return services.version_register(deployment=deployment, data=onnx_bytes, recipe=recipe, by=operator)


def test_a_candidate_scores_only_once_it_serves_and_the_old_version_stops_when_replaced(deployment, operator, approver):
    v1 = deployment.active_version()
    v2 = _candidate(deployment, operator)
    now = timezone.now()
    _run(v1, accuracy=0.95, at=now - timedelta(hours=3))
    _run(v2, accuracy=0.80, at=now - timedelta(hours=2))  # scored as a candidate: its compare page's business

    services.version_approve(version=v2, by=approver, comment="ship it")
    later = timezone.now()
    _run(v2, accuracy=0.97, at=later)
    _run(v1, accuracy=0.94, at=later)  # a retired version re-scored: not what served

    assert _accuracy(deployment) == [(1, 0.95), (2, 0.97)]


def test_after_a_rollback_the_restored_version_serves_again_and_the_rolled_back_one_does_not(
    deployment, operator, approver
):
    v1 = deployment.active_version()
    v2 = _candidate(deployment, operator)
    services.version_approve(version=v2, by=approver, comment="ship it")
    _run(v2, accuracy=0.70, at=timezone.now())
    services.deployment_rollback(deployment=deployment, by=approver, comment="v2 misbehaves")
    after = timezone.now()
    _run(v1, accuracy=0.95, at=after)
    _run(v2, accuracy=0.71, at=after)

    assert _accuracy(deployment) == [(2, 0.70), (1, 0.95)]
    periods = list(ServingPeriod.objects.filter(deployment=deployment).values_list("version__number", "ended_at"))
    assert [number for number, _ in periods] == [1, 2, 1]
    assert [ended is None for _, ended in periods] == [False, False, True]


def test_a_maintenance_jobs_evaluations_never_reach_the_health_line_or_the_headline(deployment):
    v1 = deployment.active_version()
    now = timezone.now()
    scheduled = _run(v1, accuracy=0.993, at=now - timedelta(hours=1), source=Source.PRODUCTION, window_days=7)
    job = MaintenanceJob.objects.create(deployment=deployment, source_version=v1, kind=MaintenanceJob.Kind.COMPRESS_INT8)
    _run(v1, accuracy=0.981, at=now, source=Source.PRODUCTION, window_days=7, job=job)

    assert _accuracy(deployment, Source.PRODUCTION, window_days=7) == [(1, 0.993)]
    summary = selectors.deployment_summary(deployment=deployment)
    assert summary.latest_metrics["accuracy"] == 0.993
    assert selectors.headline_run(version=v1) == scheduled
    assert summary.latest_rows == "labelled production, 7 days · 100 rows"


def test_windows_of_different_lengths_never_share_a_line(deployment):
    v1 = deployment.active_version()
    now = timezone.now()
    _run(v1, accuracy=0.58, at=now - timedelta(days=2), source=Source.PRODUCTION, window_days=1)  # an old daily point
    _run(v1, accuracy=0.73, at=now - timedelta(days=1), source=Source.PRODUCTION, window_days=7)

    assert _accuracy(deployment, Source.PRODUCTION, window_days=7) == [(1, 0.73)]
    assert _accuracy(deployment, Source.PRODUCTION, window_days=1) == [(1, 0.58)]


def test_the_headline_falls_back_to_the_evaluation_set_and_says_so(deployment):
    _run(deployment.active_version(), accuracy=0.96, at=timezone.now())

    summary = selectors.deployment_summary(deployment=deployment)

    assert summary.latest_metrics["accuracy"] == 0.96
    assert summary.latest_rows == "evaluation set · 100 rows"


def _minutely(version, *, values: list[float], start) -> None:
    """A scheduled evaluation-set run a minute, with its accuracy point."""
    runs = EvaluationRun.objects.bulk_create(
        EvaluationRun(deployment=version.deployment, version=version, source=Source.EVALUATION_SET,
                      status=EvaluationRun.Status.SUCCEEDED, measured_at=start + timedelta(minutes=i))
        for i in range(len(values))
    )
    MetricPoint.objects.bulk_create(
        MetricPoint(deployment=version.deployment, version=version, run=run, source=run.source, name="accuracy",
                    value=value, at=run.measured_at)
        for run, value in zip(runs, values)
    )


def test_a_long_series_is_cut_to_its_lowest_and_highest_point_per_bucket_in_the_database(deployment):
    v1 = deployment.active_version()
    start = v1.serving_periods.get().started_at + timedelta(minutes=1)
    values = [0.9 + 0.01 * ((i * 7) % 5) for i in range(600)]
    values[417], values[123] = 0.42, 0.99  # a dip below any floor, and the best figure
    _minutely(v1, values=values, start=start)
    job = MaintenanceJob.objects.create(deployment=deployment, source_version=v1, kind=MaintenanceJob.Kind.COMPRESS_INT8)
    _run(v1, accuracy=0.01, at=start + timedelta(minutes=300, seconds=30), job=job)  # a job's: never drawn
    until = start + timedelta(minutes=600)

    def series(buckets: int | None) -> dict[str, list]:
        return selectors.serving_metric_series(
            deployment=deployment, names=["accuracy"], source=Source.EVALUATION_SET, since=start, until=until,
            buckets=buckets,
        )["accuracy"]

    whole, cut = series(None), series(30)

    assert whole["value"] == values
    assert len(cut["value"]) <= 60 and len(cut["value"]) >= 30
    assert cut["at"] == sorted(cut["at"]) and cut["version"] == [1] * len(cut["value"])
    assert min(cut["value"]) == 0.42 and max(cut["value"]) == 0.99
    assert cut["at"][cut["value"].index(0.42)] == start + timedelta(minutes=417)
    kept = dict(zip(whole["at"], whole["value"]))
    assert all(kept[at] == value for at, value in zip(cut["at"], cut["value"]))  # real points, not averages
    assert series(1000) == whole  # buckets finer than the points: every point stays
