"""`manage.py seed_demo` builds the demo from real models, and a second run changes nothing."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from monitoring import selectors
from monitoring.blobs import runner_for
from monitoring.models import (
    Alert,
    AuditEvent,
    Dataset,
    Deployment,
    DriftReport,
    EvaluationRun,
    Membership,
    MetricPoint,
    ModelVersion,
    Prediction,
    Role,
    Rollout,
)

SLUGS = ["digits-mlp", "tumour-logreg", "wine-forest"]
# Fewer days and rows than the real demo keep the test quick; the stories (a rollout 8 days ago,
# a drift episode over the last 6) still fit in 12 days.
ARGS = ["--days", "12", "--per-day", "80"]


def _counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (Deployment, ModelVersion, Dataset, Prediction, EvaluationRun, MetricPoint, DriftReport, Alert,
                      AuditEvent, User, Membership)
    }


def _seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *ARGS, *args, stdout=out)
    return out.getvalue()


def _assert_real_guard_history(rollout: Rollout) -> None:
    """The seeded rollout's checks are the worker's own, on traffic tagged by the version that served it: the
    required guard waits for rows, then passes at each stage, and each stage's share of the rows went to v2."""
    checks = list(rollout.checks.order_by("at", "id"))
    assert {check.guard for check in checks} >= {"class_shift", "score_shift", "estimated_accuracy", "labelled_accuracy"}
    assert all(rollout.started_at < check.at <= rollout.ended_at for check in checks)
    class_shift = [check for check in checks if check.guard == "class_shift"]
    assert class_shift[0].verdict == "wait" and class_shift[-1].verdict == "pass"
    assert {check.stage for check in class_shift if check.verdict == "pass"} == {0, 1}
    assert not [check for check in checks if check.verdict == "breach"]
    first_pass = next(check for check in class_shift if check.verdict == "pass")
    assert first_pass.n_candidate >= 200 and 0.05 < first_pass.n_candidate / (first_pass.n_candidate + first_pass.n_active) < 0.16
    advances = AuditEvent.objects.filter(action__in=["rollout.advance", "rollout.complete"], object_id=str(rollout.pk))
    assert [(event.action, event.actor_label) for event in advances.order_by("id")] == [
        ("rollout.advance", "worker"), ("rollout.complete", "worker")]


def _open_alerts(slug: str) -> set[str]:
    return set(
        Alert.objects.filter(deployment__slug=slug, status__in=[Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED])
        .values_list("kind", flat=True)
    )


@pytest.mark.django_db
def test_it_seeds_three_real_deployments_with_history_and_a_second_run_changes_nothing():
    output = _seed("--demo-passwords")  # as docker/demo.sh does

    assert [d.slug for d in Deployment.objects.order_by("slug")] == SLUGS
    for deployment in Deployment.objects.all():
        active = deployment.active_version()
        assert active is not None and active.recipe_sha256
        assert deployment.reference_dataset is not None and deployment.evaluation_dataset.has_labels
        production = deployment.evaluations.filter(
            source=EvaluationRun.Source.PRODUCTION, status=EvaluationRun.Status.SUCCEEDED
        )
        assert production.count() == 11  # every day but the last, whose labels have not arrived
        assert deployment.evaluations.filter(source=EvaluationRun.Source.EVALUATION_SET, version=active).exists()
        assert deployment.drift_reports.count() == 12
        predictions = deployment.predictions
        assert predictions.count() > 12 * 40
        assert predictions.filter(label_index__isnull=False).count() > 0.7 * predictions.count()
        last_day = deployment.drift_reports.first()
        assert not predictions.filter(timestamp__gte=last_day.window_start, label_index__isnull=False).exists()
        assert production.order_by("measured_at").first().metrics["accuracy"] > 0.9
        # The traffic was predicted by the real ONNX model that served it.
        batch = deployment.prediction_batches.filter(version=active).order_by("-t_max").first()
        served = selectors.production_window(deployment=deployment, start=batch.t_min, end=batch.t_max, limit=50)
        rerun = runner_for(active).predict(served.X)
        assert list(rerun.labels) == list(served.predicted)
        assert f"{deployment.slug}: 12 days" in output

    tumour = Deployment.objects.get(slug="tumour-logreg")
    v1, v2, good, bad = tumour.versions.order_by("number")
    assert (v1.status, v2.status, v2.parent, v2.decided_by.username) == ("retired", "active", v1, "demo")
    assert AuditEvent.objects.filter(deployment=tumour, action="rollout.start", comment=v2.decision_comment).exists()
    served = tumour.evaluations.filter(source=EvaluationRun.Source.PRODUCTION).values_list("version__number", flat=True)
    assert set(served) == {1, 2}
    assert v1.activated_at < v2.activated_at < tumour.drift_reports.first().window_start
    # The history shows a finished staged rollout of v2, and the plan has short stages for a live canary.
    (past,) = tumour.rollouts.all()
    assert (past.state, past.candidate, past.baseline, past.ended_at) == ("completed", v2, v1, v2.activated_at)
    assert past.watch_until is None and past.started_at < past.ended_at < past.started_at + timedelta(hours=1)
    assert [stage["min_minutes"] for stage in tumour.rollout_plan.stages] == [2, 2, 0]
    _assert_real_guard_history(past)
    # Two candidates wait for the demo approver, registered by someone else (four eyes): a good one, and one
    # that predicts a single class on the evaluation set.
    assert (good.status, bad.status, good.created_by.username, bad.created_by.username) == (
        "candidate", "candidate", "operator", "operator")
    window = selectors.production_window(deployment=tumour, start=past.started_at, end=past.ended_at, limit=300)
    for version, classes in ((good, {"benign", "malignant"}), (bad, {"benign"})):
        assert version.evaluations.filter(source=EvaluationRun.Source.EVALUATION_SET).exists()
        assert set(runner_for(version).predict(window.X).labels) == classes

    wine = Deployment.objects.get(slug="wine-forest")
    # One incident, four views of it, each under its own kind (issue 12 groups them into one notification).
    assert _open_alerts("wine-forest") == {
        Alert.Kind.DATA_DRIFT, Alert.Kind.PREDICTION_DRIFT, Alert.Kind.CONCEPT_DRIFT, Alert.Kind.METRIC_BELOW_THRESHOLD
    }
    latest_drift = wine.drift_reports.first()
    assert latest_drift.drifted and not wine.drift_reports.order_by("window_end").first().drifted
    assert {"alcohol", "color_intensity", "proline"} <= {f["feature"] for f in latest_drift.features if f["drifted"]}
    early, late = (
        wine.evaluations.filter(source=EvaluationRun.Source.PRODUCTION).order_by(order).first().metrics["accuracy"]
        for order in ("measured_at", "-measured_at")
    )
    assert late < early - 0.15
    # The tumour deployment's two candidates wait for review (an info alert each); nothing else is wrong, and
    # v2, rolled out, no longer waits.
    assert _open_alerts("digits-mlp") == set() and _open_alerts("tumour-logreg") == {Alert.Kind.CANDIDATE_WAITING}
    waiting = Alert.objects.filter(deployment__slug="tumour-logreg", status=Alert.Status.OPEN)
    assert sorted(alert.figures["version"] for alert in waiting) == [3, 4]

    demo = User.objects.get(username="demo")
    assert demo.check_password("demo") and not demo.is_superuser
    assert {m.user.username: m.role for m in Membership.objects.filter(team__name="ML Platform")} == {
        "demo": Role.APPROVER, "operator": Role.OPERATOR, "viewer": Role.VIEWER
    }
    assert "Log in as demo / demo" in output

    before = _counts()
    again = _seed("--password", "wine-tumour-digits-42")

    assert _counts() == before
    assert again.count("already seeded") == 3
    assert User.objects.get(username="demo").check_password("wine-tumour-digits-42")


@pytest.mark.django_db
def test_it_refuses_a_history_too_short_for_the_story():
    with pytest.raises(CommandError, match="at least 10 days"):
        call_command("seed_demo", "--days", "3", stdout=io.StringIO())
    assert not Deployment.objects.exists()
