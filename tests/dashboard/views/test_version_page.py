"""The version page (views/versions.py: version_detail, version_download, version_tag): who may see and change
what, and what it says."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from monitoring import services
from monitoring.models import EvaluationRun, MaintenanceJob, ModelVersion
from tests.conftest import trained_model
from tests.dashboard.views.helpers import _audit_count, _evaluate

pytestmark = pytest.mark.django_db


@pytest.fixture
def distilled(deployment, operator) -> ModelVersion:
    """v2, made by a distillation job of v1 with its own settings."""
    v1 = deployment.versions.get(number=1)
    job = MaintenanceJob.objects.create(
        deployment=deployment, source_version=v1, kind=MaintenanceJob.Kind.DISTILL, requested_by=operator,
        params={"hidden_units": 32}, status=MaintenanceJob.Status.SUCCEEDED, progress=100,
    )
    version = services.version_register(
        deployment=deployment, data=trained_model(C=0.05)[0], by=None, origin="distill", parent=v1, job=job,
        notes="student of v1",
    )
    MaintenanceJob.objects.filter(pk=job.pk).update(candidate=version)
    return version


def test_a_viewer_sees_the_lineage_settings_sha256_and_compare_link_of_a_job_made_version(client, viewer, distilled):
    client.force_login(viewer)

    response = client.get(reverse("version", args=["tumour", 2]))

    assert response.status_code == 200
    page = response.content.decode()
    assert "v2 of Tumour classifier" in page
    assert 'href="/d/tumour/versions/1/"' in page  # its parent, linked
    assert "Distil into a small student" in page and "queued by oscar" in page
    # Only the kind's own settings, labelled; the one left empty shows the default the job used.
    assert "<dt>Student hidden units</dt><dd>32</dd>" in page and "<dt>Temperature</dt><dd>2 (default)</dd>" in page
    assert "F1 tolerance" not in page and "{" not in response.context["lineage"].job_settings.__repr__()
    assert distilled.sha256 in page and 'href="/d/tumour/versions/2/model.onnx"' in page
    assert 'href="/d/tumour/versions/2/compare"' in page
    assert 'data-action="approve"' not in page  # a viewer decides nothing
    assert 'data-form="tag"' not in page


def test_an_approver_gets_the_decision_buttons_with_their_dialogs(client, approver, distilled):
    client.force_login(approver)

    page = client.get(reverse("version", args=["tumour", 2])).content.decode()

    assert page.count("<dialog") == 3 and ">Approve v2</a>" in page and ">Reject v2</a>" in page
    assert ">Roll out v2</a>" in page and reverse("rollout-start", args=["tumour", 2]) in page
    assert 'textarea name="comment" rows="3" maxlength="2000" required' in page


def test_an_outsider_gets_404_for_the_page_the_file_and_the_tags(client, outsider, distilled):
    client.force_login(outsider)
    before = _audit_count()

    assert client.get(reverse("version", args=["tumour", 2])).status_code == 404
    assert client.get(reverse("version-model", args=["tumour", 2])).status_code == 404
    assert client.post(reverse("version-tag-add", args=["tumour", 2]), {"tag": "x"}).status_code == 404
    distilled.refresh_from_db()
    assert distilled.tags == [] and _audit_count() == before


def test_someone_logged_out_is_sent_to_log_in_for_the_file(client, distilled):
    response = client.get(reverse("version-model", args=["tumour", 2]))

    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_a_viewer_downloads_the_model_and_its_sha256_matches(client, viewer, distilled):
    client.force_login(viewer)

    response = client.get(reverse("version-model", args=["tumour", 2]))

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="tumour-v2.onnx"'
    assert hashlib.sha256(response.content).hexdigest() == distilled.sha256 == response["X-Content-SHA256"]


def test_the_recipe_of_a_version_without_one_is_404_and_with_one_is_served(client, viewer, deployment, distilled):
    client.force_login(viewer)

    assert client.get(reverse("version-recipe", args=["tumour", 2])).status_code == 404
    v1 = deployment.versions.get(number=1)
    response = client.get(reverse("version-recipe", args=["tumour", 1]))
    assert response.status_code == 200 and hashlib.sha256(response.content).hexdigest() == v1.recipe_sha256


def test_an_operator_adds_and_removes_a_tag_and_the_audit_log_names_the_version(client, operator, deployment):
    client.force_login(operator)

    client.post(reverse("version-tag-add", args=["tumour", 1]), {"tag": "baseline"})
    v1 = deployment.versions.get(number=1)
    assert v1.tags == ["baseline"]
    assert 'data-tag="baseline"' in client.get(reverse("version", args=["tumour", 1])).content.decode()

    client.post(reverse("version-tag-remove", args=["tumour", 1]), {"tag": "baseline"})
    v1.refresh_from_db()
    assert v1.tags == []
    audit = client.get(reverse("audit", args=["tumour"]) + "?kind=version").content.decode()
    assert audit.count('<a href="/d/tumour/versions/1/">v1 of Tumour classifier</a>') >= 2


def test_a_viewer_cannot_tag_and_nothing_is_written(client, viewer, deployment):
    client.force_login(viewer)
    before = _audit_count()

    assert client.post(reverse("version-tag-add", args=["tumour", 1]), {"tag": "baseline"}).status_code == 403
    assert deployment.versions.get(number=1).tags == [] and _audit_count() == before


def test_a_malformed_tag_is_refused_with_what_to_type_and_nothing_is_written(client, operator, deployment):
    client.force_login(operator)
    before = _audit_count()

    response = client.post(reverse("version-tag-add", args=["tumour", 1]), {"tag": "two words"}, follow=True)

    assert "is not a tag: use 1 to 40 letters" in response.content.decode()
    assert deployment.versions.get(number=1).tags == [] and _audit_count() == before


def test_after_a_rollback_the_retired_version_shows_the_rollback_reason_not_its_approval(client, approver, viewer, distilled):
    services.version_approve(version=distilled, by=approver, comment="smaller and as accurate")
    services.deployment_rollback(deployment=distilled.deployment, by=approver, comment="latency regression")
    client.force_login(viewer)

    page = client.get(reverse("version", args=["tumour", 2])).content.decode()

    assert "rolled back to v1: latency regression" in page
    assert "<td>Approved</td><td>alice</td><td class=\"small\">smaller and as accurate</td>" in page  # the history
    assert "Retired: rolled back to v1" in page
    v1_page = client.get(reverse("version", args=["tumour", 1])).content.decode()
    assert "Retired: replaced by v2" in v1_page and "Restored by a rollback from v2" in v1_page


def test_the_chart_shows_only_what_the_version_scored_while_it_served(client, approver, viewer, deployment, distilled):
    now = timezone.now()
    v1 = deployment.versions.get(number=1)
    _evaluate(deployment, distilled, accuracy=0.91, at=now - timedelta(minutes=5))  # a candidate: not served yet
    services.version_approve(version=distilled, by=approver, comment="ship it")
    _evaluate(deployment, v1, accuracy=0.95, at=now + timedelta(minutes=1))  # v1 retired: not serving
    _evaluate(deployment, distilled, accuracy=0.93, at=now + timedelta(minutes=2))

    from monitoring import selectors

    series = selectors.version_metric_series(version=distilled, names=["accuracy"], source=EvaluationRun.Source.EVALUATION_SET)
    assert series["accuracy"]["value"] == [0.93]
    assert selectors.version_metric_series(version=v1, names=["accuracy"], source=EvaluationRun.Source.EVALUATION_SET)["accuracy"]["value"] == []
    client.force_login(viewer)
    assert client.get(reverse("version", args=["tumour", 2])).context["chart"] is not None


def test_a_candidate_that_never_served_says_what_to_do_next(client, viewer, distilled):
    client.force_login(viewer)

    page = client.get(reverse("version", args=["tumour", 2])).content.decode()

    assert "v2 has not served." in page and "Compare it with the active version" in page
    assert "an approver can put it in production" in page


def test_the_versions_table_links_each_version_to_its_page(client, viewer, distilled):
    client.force_login(viewer)

    page = client.get(reverse("deployment", args=["tumour"])).content.decode()

    assert '<a class="strong" href="/d/tumour/versions/2/" data-link="version">v2</a>' in page
    assert 'of <a href="/d/tumour/versions/1/">v1</a>' in page


def test_an_alert_about_a_version_links_to_its_page(client, viewer, deployment):
    from monitoring.models import Alert

    alert, _ = services.alert_raise(
        deployment=deployment, kind=Alert.Kind.METRIC_BELOW_THRESHOLD, dedup_key="accuracy", title="accuracy 0.81 is below 0.90",
        figures={"metric": "accuracy", "value": 0.81, "floor": 0.9, "version": 1},
    )
    client.force_login(viewer)

    page = client.get(reverse("alert-detail", args=[alert.pk])).content.decode()

    assert '<a href="/d/tumour/versions/1/" data-link="version">v1 of Tumour classifier →</a>' in page


def test_a_running_jobs_progress_says_how_long_it_has_run(client, viewer, deployment):
    job = MaintenanceJob.objects.create(
        deployment=deployment, source_version=deployment.versions.get(number=1), kind=MaintenanceJob.Kind.FIND_SMALLER,
        status=MaintenanceJob.Status.RUNNING, progress=40, started_at=timezone.now() - timedelta(seconds=185),
        progress_message="Trying distillation at T=2, 32 hidden units, 12 of 12", params={"tolerance": 0.5},
    )
    client.force_login(viewer)

    state = client.get(reverse("job-progress", args=[job.pk])).json()
    page = client.get(reverse("deployment", args=["tumour"])).content.decode()

    assert state["elapsed"].startswith("3 min 0")
    assert "40% · Trying distillation at T=2, 32 hidden units, 12 of 12 · 3 min 0" in page
    assert "F1 tolerance 0.5 F1 points" in page and "{&#x27;tolerance" not in page


def test_the_training_rows_are_dated_in_the_viewers_zone(client, viewer, distilled):
    ModelVersion.objects.filter(pk=distilled.pk).update(training_rows={
        "reference_dataset": None, "production_start": "2026-11-01T00:00:00+00:00",
        "production_end": "2026-11-24T00:00:00+00:00", "n_rows": 1200,
    })
    client.force_login(viewer)
    client.cookies["tz"] = "Asia/Tokyo"

    page = client.get(reverse("version", args=["tumour", 2])).content.decode()

    assert "production traffic from 2026-11-01 09:00 to 2026-11-24 09:00 JST, 1,200 rows in all" in page
