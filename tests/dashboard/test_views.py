"""The dashboard's pages and actions, through Django's test client against the real services."""

from __future__ import annotations

import json
import zoneinfo
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.templatetags.static import static
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from monitoring import services
from monitoring.models import (
    Alert,
    ApiToken,
    AuditEvent,
    DriftReport,
    EvaluationRun,
    MaintenanceJob,
    ModelVersion,
)
from tests.conftest import CLASSES, FEATURES, trained_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def candidate(deployment, operator) -> ModelVersion:
    onnx_bytes, recipe = trained_model(C=0.05)
    return services.version_register(deployment=deployment, data=onnx_bytes, recipe=recipe, by=operator)


def _evaluate(deployment, version, *, accuracy: float, at, source=EvaluationRun.Source.EVALUATION_SET) -> EvaluationRun:
    run = EvaluationRun.objects.create(
        deployment=deployment, version=version, source=source, dataset=deployment.evaluation_dataset, measured_at=at
    )
    metrics = {"n_rows": 219, "accuracy": accuracy, "f1_macro": accuracy - 0.01, "roc_auc": 0.99, "latency_p95_ms": 0.12}
    return services.evaluation_complete(run=run, metrics=metrics)


def _blobs() -> set[Path]:
    root = Path(settings.MEDIA_ROOT)
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def _audit_count(**filters) -> int:
    return AuditEvent.objects.filter(**filters).count()


# ---------------------------------------------------------------- login


@pytest.mark.parametrize(
    "url",
    ["/", "/alerts", "/d/tumour/", "/d/tumour/audit", "/d/tumour/versions/new", "/d/tumour/drift/1/", "/jobs/1/progress"],
)
def test_every_page_sends_anonymous_visitors_to_the_login_page(client, deployment, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_a_user_logs_in_and_lands_on_the_overview(client, viewer, deployment):
    response = client.post(reverse("login"), {"username": "vera", "password": "correct-horse-battery"}, follow=True)

    assert response.redirect_chain[-1][0] == reverse("overview")
    assert b"Tumour classifier" in response.content


def test_actions_refuse_a_post_without_a_csrf_token(approver, candidate):
    client = Client(enforce_csrf_checks=True)
    client.force_login(approver)

    response = client.post(reverse("version-approve", args=["tumour", candidate.number]), {"comment": "ok"})

    assert response.status_code == 403
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.CANDIDATE


# ---------------------------------------------------------------- visibility


def test_the_overview_lists_only_the_users_deployments(client, viewer, deployment, outsider):
    other_team = outsider.memberships.get().team
    services.deployment_create(
        team=other_team, name="Secret fraud model", feature_names=["a", "b"], class_labels=["0", "1"], by=outsider
    )
    client.force_login(viewer)

    response = client.get(reverse("overview"))

    assert response.status_code == 200
    assert [s.deployment.slug for s in response.context["summaries"]] == ["tumour"]
    assert b"Tumour classifier" in response.content
    assert b"Secret fraud model" not in response.content


def test_an_outsider_gets_404_for_another_teams_deployment(client, outsider, deployment):
    client.force_login(outsider)

    for url in ["/d/tumour/", "/d/tumour/audit", "/d/tumour/versions/new"]:
        assert client.get(url).status_code == 404


def test_an_outsider_cannot_approve_and_nothing_changes(client, outsider, candidate):
    client.force_login(outsider)
    before = _audit_count()

    response = client.post(reverse("version-approve", args=["tumour", candidate.number]), {"comment": "mine now"})

    assert response.status_code == 404
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.CANDIDATE
    assert _audit_count() == before


def test_an_outsider_cannot_read_a_jobs_progress(client, outsider, deployment):
    job = MaintenanceJob.objects.create(
        deployment=deployment, source_version=deployment.active_version(), kind=MaintenanceJob.Kind.COMPRESS_INT8
    )
    client.force_login(outsider)

    assert client.get(reverse("job-progress", args=[job.pk])).status_code == 404


# ---------------------------------------------------------------- approval


def test_a_viewer_cannot_approve_a_candidate_and_nothing_changes(client, viewer, candidate):
    client.force_login(viewer)
    before = _audit_count()

    response = client.post(reverse("version-approve", args=["tumour", candidate.number]), {"comment": "lgtm"})

    assert response.status_code == 403
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.CANDIDATE
    assert candidate.deployment.active_version().number == 1
    assert _audit_count() == before


def test_an_operator_cannot_approve_or_roll_back(client, operator, candidate):
    client.force_login(operator)
    before = _audit_count()

    assert client.post(reverse("version-approve", args=["tumour", candidate.number])).status_code == 403
    assert client.post(reverse("rollback", args=["tumour"])).status_code == 403
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.CANDIDATE
    assert _audit_count() == before


def test_approving_needs_a_post(client, approver, candidate):
    client.force_login(approver)

    response = client.get(reverse("version-approve", args=["tumour", candidate.number]))

    assert response.status_code == 405
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.CANDIDATE


def test_an_approver_approves_a_candidate_and_the_audit_log_records_it(client, approver, candidate):
    client.force_login(approver)

    response = client.post(
        reverse("version-approve", args=["tumour", candidate.number]), {"comment": "Better recall"}, follow=True
    )

    assert response.status_code == 200
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.ACTIVE
    assert candidate.decided_by == approver
    assert candidate.deployment.versions.get(number=1).status == ModelVersion.Status.RETIRED
    event = AuditEvent.objects.get(action="version.approve", object_id=str(candidate.pk))
    assert (event.actor, event.comment) == (approver, "Better recall")
    assert event.after["active_version"] == candidate.number
    assert f"v{candidate.number} is now the active version." in response.content.decode()

    audit_page = client.get(reverse("audit", args=["tumour"])).content.decode()
    assert "version.approve" in audit_page and "Better recall" in audit_page


def test_approving_a_version_that_is_not_a_candidate_shows_the_services_message(client, approver, deployment):
    client.force_login(approver)

    response = client.post(reverse("version-approve", args=["tumour", 1]), follow=True)

    assert "v1 is active; only a candidate can be approved." in response.content.decode()
    assert deployment.active_version().number == 1


def test_an_approver_rejects_a_candidate_with_a_comment(client, approver, candidate):
    client.force_login(approver)

    client.post(reverse("version-reject", args=["tumour", candidate.number]), {"comment": "Worse F1"})

    candidate.refresh_from_db()
    assert (candidate.status, candidate.decision_comment) == (ModelVersion.Status.REJECTED, "Worse F1")
    assert candidate.deployment.active_version().number == 1


def test_an_approver_rolls_back_to_the_previous_version(client, approver, candidate):
    services.version_approve(version=candidate, by=approver)
    client.force_login(approver)

    response = client.post(reverse("rollback", args=["tumour"]), {"comment": "latency regression"}, follow=True)

    assert candidate.deployment.active_version().number == 1
    assert "Rolled back: v1 is serving again." in response.content.decode()
    assert AuditEvent.objects.filter(action="deployment.rollback", comment="latency regression").exists()


def test_the_deployment_page_shows_candidate_deltas_and_buttons_only_to_approvers(client, approver, viewer, candidate):
    deployment = candidate.deployment
    now = timezone.now()
    _evaluate(deployment, deployment.versions.get(number=1), accuracy=0.95, at=now - timedelta(hours=1))
    _evaluate(deployment, candidate, accuracy=0.97, at=now - timedelta(minutes=30))

    client.force_login(viewer)
    page = client.get(reverse("deployment", args=["tumour"])).content.decode()
    assert 'data-action="approve"' not in page and 'data-action="reject"' not in page
    assert "awaiting an approver" in page

    client.force_login(approver)
    page = client.get(reverse("deployment", args=["tumour"])).content.decode()
    assert 'data-action="approve"' in page and 'data-action="reject"' in page
    assert "+0.020" in page  # accuracy of the candidate against the active version


def test_the_rollback_button_appears_once_there_is_an_earlier_version(client, approver, candidate):
    client.force_login(approver)
    assert 'data-action="rollback"' not in client.get("/d/tumour/").content.decode()

    services.version_approve(version=candidate, by=approver)

    assert 'data-action="rollback"' in client.get("/d/tumour/").content.decode()


# ---------------------------------------------------------------- uploads


def test_uploading_a_text_file_shows_the_error_and_stores_nothing(client, operator, deployment, tmp_path):
    client.force_login(operator)
    blobs_before, versions_before, audit_before = _blobs(), deployment.versions.count(), _audit_count()
    text = tmp_path / "model.onnx"
    text.write_text("this is not a model\n")

    with text.open("rb") as handle:
        response = client.post(reverse("version-new", args=["tumour"]), {"file": handle, "notes": "oops"})

    assert response.status_code == 422
    errors = response.context["form"].non_field_errors()
    assert errors and "ONNX" in errors[0]
    assert escape(errors[0]) in response.content.decode()
    assert deployment.versions.count() == versions_before
    assert _blobs() == blobs_before
    assert _audit_count() == audit_before


def test_an_operator_uploads_a_real_model_as_a_candidate(client, operator, deployment, tmp_path):
    client.force_login(operator)
    path = tmp_path / "v2.onnx"
    path.write_bytes(trained_model(C=0.5)[0])

    with path.open("rb") as handle:
        response = client.post(reverse("version-new", args=["tumour"]), {"file": handle, "notes": "C=0.5"})

    assert response.status_code == 302
    version = deployment.versions.get(number=2)
    assert (version.status, version.notes, version.created_by) == (ModelVersion.Status.CANDIDATE, "C=0.5", operator)


def test_a_viewer_cannot_open_the_upload_form(client, viewer, deployment):
    client.force_login(viewer)

    assert client.get(reverse("version-new", args=["tumour"])).status_code == 403


# ---------------------------------------------------------------- jobs, alerts, tokens


def test_job_progress_is_reported_as_json(client, viewer, deployment):
    job = MaintenanceJob.objects.create(
        deployment=deployment, source_version=deployment.active_version(), kind=MaintenanceJob.Kind.COMPRESS_INT8,
        status=MaintenanceJob.Status.RUNNING, progress=40, progress_message="Quantizing",
    )
    client.force_login(viewer)

    response = client.get(reverse("job-progress", args=[job.pk]))

    assert response.status_code == 200
    assert response.json() == {
        "id": job.pk, "status": "running", "status_label": "Running", "progress": 40, "message": "Quantizing",
        "error": "", "finished": False, "candidate": None,
    }
    page = client.get(reverse("deployment", args=["tumour"])).content.decode()
    assert f'data-job-id="{job.pk}" data-job-status="running"' in page


def test_queueing_a_job_that_cannot_run_shows_the_services_message(client, operator, deployment):
    version = services.version_register(deployment=deployment, data=trained_model(C=0.3)[0], by=operator)  # no recipe
    client.force_login(operator)

    response = client.post(
        reverse("job-queue", args=["tumour"]), {"version": version.number, "kind": "retrain"}, follow=True
    )

    assert "has no training recipe" in response.content.decode()
    assert not MaintenanceJob.objects.exists()


def test_a_viewer_cannot_queue_a_job(client, viewer, deployment):
    client.force_login(viewer)

    response = client.post(reverse("job-queue", args=["tumour"]), {"version": 1, "kind": "compress_int8"})

    assert response.status_code == 403
    assert not MaintenanceJob.objects.exists()


def test_an_operator_acknowledges_an_alert(client, operator, deployment):
    alert, _ = services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="drift", title="Data drift")
    client.force_login(operator)

    response = client.post(reverse("alert-status", args=[alert.pk]), {"status": "acknowledged", "next": "/alerts"})

    assert response["Location"] == "/alerts"
    alert.refresh_from_db()
    assert alert.status == Alert.Status.ACKNOWLEDGED


def test_a_viewer_cannot_resolve_an_alert(client, viewer, deployment):
    alert, _ = services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="drift", title="Data drift")
    client.force_login(viewer)

    assert client.post(reverse("alert-status", args=[alert.pk]), {"status": "resolved"}).status_code == 403
    alert.refresh_from_db()
    assert alert.status == Alert.Status.OPEN


def test_the_alerts_page_links_a_drift_alert_to_its_report(client, viewer, deployment, outsider):
    report = DriftReport.objects.create(
        deployment=deployment, window_start=timezone.now() - timedelta(hours=24), window_end=timezone.now(),
        n_reference=350, n_current=500, n_drifted=1, share_drifted=1 / 30, drifted=False,
        features=[{"feature": "f3", "test": "ks", "statistic": 0.4, "p_value": 1e-9, "threshold": 0.05 / 30, "drifted": True}],
    )
    services.alert_raise(
        deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="drift", title="f3 drifted", drift_report=report
    )
    client.force_login(viewer)

    page = client.get(reverse("alerts")).content.decode()

    assert "f3 drifted" in page
    assert reverse("drift-report", args=["tumour", report.pk]) in page
    deployment_page = client.get(reverse("deployment", args=["tumour"])).content.decode()
    assert 'class="row-drifted"' in deployment_page and 'data-chart="drift"' in deployment_page
    report_page = client.get(reverse("drift-report", args=["tumour", report.pk]))
    assert report_page.status_code == 200
    assert 'data-chart="drift-features"' in report_page.content.decode()
    client.force_login(outsider)
    assert client.get(reverse("drift-report", args=["tumour", report.pk])).status_code == 404
    assert "f3 drifted" not in client.get(reverse("alerts")).content.decode()


def test_an_operator_creates_a_token_and_sees_its_secret_once(client, operator, deployment):
    client.force_login(operator)

    response = client.post(reverse("token-create", args=["tumour"]), {"name": "ingest"})

    token = ApiToken.objects.get(deployment=deployment)
    plaintext = response.context["plaintext"]
    assert plaintext.startswith(f"wk_{token.prefix}_")
    assert services.token_authenticate(raw=plaintext) == token
    assert plaintext in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert plaintext not in client.get(reverse("deployment", args=["tumour"])).content.decode()


def test_an_operator_revokes_a_token(client, operator, deployment):
    token, plaintext = services.token_create(deployment=deployment, name="old", by=operator)
    client.force_login(operator)

    client.post(reverse("token-revoke", args=["tumour", token.pk]))

    assert services.token_authenticate(raw=plaintext) is None


# ---------------------------------------------------------------- charts, static files, empty states


def test_the_deployment_page_embeds_charts_once_there_are_evaluations(client, viewer, deployment):
    now = timezone.now()
    for hours, accuracy in [(30, 0.93), (20, 0.95), (10, 0.94)]:
        _evaluate(deployment, deployment.active_version(), accuracy=accuracy, at=now - timedelta(hours=hours))
    client.force_login(viewer)

    page = client.get(reverse("deployment", args=["tumour"])).content.decode()

    assert 'data-chart="metrics"' in page and 'id="chart-metrics-figure"' in page
    assert 'data-chart="latency"' in page
    assert "/static/plotly/plotly.min.js" in page


def test_the_quality_chart_follows_the_serving_versions_not_candidates(client, viewer, candidate):
    deployment = candidate.deployment
    now = timezone.now()
    _evaluate(deployment, deployment.versions.get(number=1), accuracy=0.95, at=now - timedelta(hours=2))
    _evaluate(deployment, candidate, accuracy=0.80, at=now - timedelta(hours=1))
    client.force_login(viewer)

    figure = json.loads(client.get(reverse("deployment", args=["tumour"])).context["charts"]["metrics"])

    assert {number for trace in figure["data"] for number in trace["customdata"]} == {1}
    assert 0.80 not in [y for trace in figure["data"] for y in trace["y"]]


def test_plotly_js_is_served_locally_from_the_installed_package(client):
    response = client.get(static("plotly/plotly.min.js"))

    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert len(body) > 1_000_000
    assert b"plotly" in body[:2000].lower()


def test_our_css_and_js_are_served(client):
    assert client.get(static("css/app.css")).status_code == 200
    assert client.get(static("js/app.js")).status_code == 200


def test_the_overview_explains_how_to_start_when_there_are_no_deployments(client, viewer):
    client.force_login(viewer)

    page = client.get(reverse("overview")).content.decode()

    assert "No deployments yet" in page
    assert "manage.py create_deployment" in page and "/api/docs" in page


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
