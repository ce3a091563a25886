"""dashboard/views/setup.py: creating a deployment from the dashboard, its floors and drift settings; the token
page's examples, and the empty states that lead to the next step."""

from __future__ import annotations

import onnx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import resolve, reverse

from dashboard.middleware import UPLOAD_ROUTES
from monitoring import services
from monitoring.models import AuditEvent, Deployment, ModelVersion
from tests.conftest import CLASSES, FEATURES, trained_model
from tests.dashboard.views.helpers import _blobs

pytestmark = pytest.mark.django_db


def _onnx(data: bytes, name: str = "model.onnx") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def _without_metadata(data: bytes) -> bytes:
    """The same classifier without the feature names and classes estimator_to_onnx writes as metadata."""
    model = onnx.load_model_from_string(data)
    del model.metadata_props[:]
    return model.SerializeToString()


def _nothing_written(before_events: int, before_blobs: set) -> None:
    assert not Deployment.objects.filter(slug="fraud").exists()
    assert AuditEvent.objects.count() == before_events
    assert _blobs() == before_blobs


# ---------------------------------------------------------------- creating a deployment


def test_an_operator_creates_a_deployment_whose_schema_is_read_from_its_onnx_model(client, operator, team):
    client.force_login(operator)
    onnx_bytes, recipe = trained_model()

    response = client.post(reverse("deployment-new"), {
        "name": "Fraud", "team": team.slug, "description": "card payments",
        "file": _onnx(onnx_bytes), "recipe": SimpleUploadedFile("recipe.skops", recipe),
    })

    assert response.status_code == 302 and response["Location"] == reverse("deployment", args=["fraud"])
    deployment = Deployment.objects.get(slug="fraud")
    assert (deployment.team, deployment.feature_names, deployment.class_labels) == (team, FEATURES, CLASSES)
    v1 = deployment.versions.get()
    assert (v1.number, v1.status, v1.created_by, bool(v1.recipe_sha256)) == (1, ModelVersion.Status.ACTIVE, operator, True)
    assert list(deployment.audit_events.order_by("id").values_list("action", flat=True)) == [
        "deployment.create", "version.register"]
    page = client.get(response["Location"]).content.decode()
    assert "Next, upload its reference and evaluation datasets." in page


def test_a_model_that_does_not_name_its_features_takes_the_typed_names(client, operator, team):
    client.force_login(operator)
    typed = [f"x{i}" for i in range(30)]

    response = client.post(reverse("deployment-new"), {
        "name": "Fraud", "team": team.slug, "file": _onnx(_without_metadata(trained_model()[0])),
        "feature_names": "\n".join(", ".join(typed[i:i + 10]) for i in range(0, 30, 10)),
    })

    assert response.status_code == 302, response.content.decode()
    deployment = Deployment.objects.get(slug="fraud")
    assert deployment.feature_names == typed
    assert deployment.class_labels == CLASSES  # from the graph's classifier node
    assert deployment.versions.get().status == ModelVersion.Status.ACTIVE


def test_a_typed_schema_needs_no_model(client, operator, team):
    client.force_login(operator)

    response = client.post(reverse("deployment-new"), {
        "name": "Fraud", "team": team.slug, "feature_names": "amount, age_days", "class_labels": "legit, fraud",
    })

    assert response.status_code == 302
    deployment = Deployment.objects.get(slug="fraud")
    assert (deployment.feature_names, deployment.class_labels) == (["amount", "age_days"], ["legit", "fraud"])
    assert not deployment.versions.exists()
    page = client.get(response["Location"]).content.decode()
    assert reverse("version-new", args=["fraud"]) in page  # the versions table's empty state: upload one


def test_a_file_that_is_not_onnx_is_refused_and_nothing_is_written(client, operator, team):
    client.force_login(operator)
    events, blobs = AuditEvent.objects.count(), _blobs()

    response = client.post(reverse("deployment-new"), {
        "name": "Fraud", "team": team.slug, "file": _onnx(b"PK\x03\x04 not a model"),
    })

    assert response.status_code == 422
    assert "The file is not a valid ONNX model" in response.content.decode()
    _nothing_written(events, blobs)


def test_typed_features_that_differ_from_the_models_are_refused_and_nothing_is_written(client, operator, team):
    client.force_login(operator)
    events, blobs = AuditEvent.objects.count(), _blobs()

    response = client.post(reverse("deployment-new"), {
        "name": "Fraud", "team": team.slug, "file": _onnx(trained_model()[0]),
        "feature_names": ", ".join(f"x{i}" for i in range(30)),
    })

    assert response.status_code == 422
    assert "differ from the ones typed. Leave them empty to use the model&#x27;s." in response.content.decode()
    _nothing_written(events, blobs)


def test_a_model_without_feature_names_needs_them_typed_and_says_how_many(client, operator, team):
    client.force_login(operator)
    events, blobs = AuditEvent.objects.count(), _blobs()

    response = client.post(reverse("deployment-new"), {
        "name": "Fraud", "team": team.slug, "file": _onnx(_without_metadata(trained_model()[0])),
        "feature_names": "only, three, names",
    })

    assert response.status_code == 422
    assert "The model takes 30 features; 3 names were typed." in response.content.decode()
    _nothing_written(events, blobs)


def test_neither_a_model_nor_a_typed_schema_is_a_400_saying_what_to_give(client, operator, team):
    client.force_login(operator)

    response = client.post(reverse("deployment-new"), {"name": "Fraud", "team": team.slug, "feature_names": "a, b"})

    assert response.status_code == 400
    assert "Upload an ONNX model to read the schema from it, or type the feature names and the class labels." in (
        response.content.decode())
    assert not Deployment.objects.filter(slug="fraud").exists()


def test_a_taken_name_is_a_409_and_the_existing_deployment_is_untouched(client, operator, deployment):
    client.force_login(operator)
    events = AuditEvent.objects.count()

    response = client.post(reverse("deployment-new"), {
        "name": "Tumour", "team": deployment.team.slug, "feature_names": "a, b", "class_labels": "x, y",
    })

    assert response.status_code == 409
    assert "already exists" in response.content.decode()
    deployment.refresh_from_db()
    assert deployment.feature_names == FEATURES and AuditEvent.objects.count() == events


def test_a_viewer_cannot_create_a_deployment_in_their_team(client, viewer, team):
    client.force_login(viewer)

    response = client.post(reverse("deployment-new"), {
        "name": "Fraud", "team": team.slug, "feature_names": "a, b", "class_labels": "x, y",
    })

    assert response.status_code == 403
    assert not Deployment.objects.filter(slug="fraud").exists()
    # And the page says why instead of offering a form that cannot work.
    page = client.get(reverse("deployment-new")).content.decode()
    assert 'data-empty="teams"' in page and 'data-form="deployment-new"' not in page


def test_an_outsider_cannot_create_a_deployment_in_another_team(client, outsider, team):
    client.force_login(outsider)

    response = client.post(reverse("deployment-new"), {
        "name": "Fraud", "team": team.slug, "feature_names": "a, b", "class_labels": "x, y",
    })

    assert response.status_code == 404
    assert not Deployment.objects.filter(slug="fraud").exists()


def test_the_create_page_offers_only_the_teams_where_the_user_operates(client, outsider, operator, team):
    client.force_login(operator)

    choices = client.get(reverse("deployment-new")).context["form"].fields["team"].choices

    assert choices == [(team.slug, team.name)]


def test_the_model_upload_on_the_create_page_has_the_model_cap(settings, client, operator, team):
    assert UPLOAD_ROUTES[resolve(reverse("deployment-new")).route] == "MAX_MODEL_UPLOAD_BYTES"
    settings.MAX_MODEL_UPLOAD_BYTES = 20_000
    client.force_login(operator)

    response = client.post(reverse("deployment-new"), {
        "name": "Fraud", "team": team.slug, "file": _onnx(b"\x08" * 40_000),
    })

    assert response.status_code == 413
    assert not Deployment.objects.filter(slug="fraud").exists()


# ---------------------------------------------------------------- metric floors and drift settings


def test_an_approver_sets_the_metric_floors_and_the_change_is_audited(client, approver, deployment):
    client.force_login(approver)

    response = client.post(reverse("deployment-thresholds", args=["tumour"]), {"accuracy": "0.93", "roc_auc": "0.97"})

    assert response.status_code == 302
    deployment.refresh_from_db()
    assert deployment.metric_thresholds == {"accuracy": 0.93, "roc_auc": 0.97}
    event = AuditEvent.objects.get(action="deployment.thresholds_configure")
    assert event.actor == approver
    assert (event.before, event.after) == ({"metric_thresholds": {"accuracy": 0.9}},
                                           {"metric_thresholds": {"accuracy": 0.93, "roc_auc": 0.97}})
    page = client.get(reverse("deployment-settings", args=["tumour"])).content.decode()
    assert 'value="0.93"' in page and "Metric floors saved" in page


def test_clearing_a_floor_removes_it(client, approver, deployment):
    client.force_login(approver)

    client.post(reverse("deployment-thresholds", args=["tumour"]), {"accuracy": ""})

    deployment.refresh_from_db()
    assert deployment.metric_thresholds == {}


def test_a_floor_out_of_range_is_refused_and_nothing_changes(client, approver, deployment):
    client.force_login(approver)
    events = AuditEvent.objects.count()

    response = client.post(reverse("deployment-thresholds", args=["tumour"]), {"accuracy": "93", "f1_macro": "0.8"})

    assert response.status_code == 422
    assert "The floor for accuracy is a number from 0 to 1, e.g. 0.9." in response.content.decode()
    deployment.refresh_from_db()
    assert deployment.metric_thresholds == {"accuracy": 0.9} and AuditEvent.objects.count() == events


def test_a_floor_that_is_not_a_number_is_a_400_and_nothing_changes(client, approver, deployment):
    client.force_login(approver)

    response = client.post(reverse("deployment-thresholds", args=["tumour"]), {"accuracy": "high"})

    assert response.status_code == 400
    assert "Enter a number." in response.content.decode()
    deployment.refresh_from_db()
    assert deployment.metric_thresholds == {"accuracy": 0.9}


def test_an_operator_cannot_change_the_floors(client, operator, deployment):
    client.force_login(operator)

    response = client.post(reverse("deployment-thresholds", args=["tumour"]), {"accuracy": "0.1"})

    assert response.status_code == 403
    deployment.refresh_from_db()
    assert deployment.metric_thresholds == {"accuracy": 0.9}
    # The page shows them, without a form.
    page = client.get(reverse("deployment-settings", args=["tumour"])).content.decode()
    assert "Accuracy below 0.9" in page and 'data-form="floors"' not in page and 'data-form="drift"' not in page


def test_an_approver_sets_the_drift_settings(client, approver, deployment):
    client.force_login(approver)

    response = client.post(reverse("deployment-drift", args=["tumour"]), {
        "p_value": "0.01", "correction": "bh", "test": "psi", "threshold": "0.25", "window_rows": "5000",
        "interval_minutes": "120", "features": '{"f3": {"test": "wasserstein", "threshold": 0.2}}',
    })

    assert response.status_code == 302
    deployment.refresh_from_db()
    assert deployment.drift_config == {
        "p_value": 0.01, "threshold": 0.25, "correction": "bh", "test": "psi",
        "features": {"f3": {"test": "wasserstein", "threshold": 0.2}},
    }
    assert (deployment.drift_window_rows, deployment.drift_interval_minutes) == (5000, 120)
    assert AuditEvent.objects.filter(action="deployment.drift_configure", actor=approver).count() == 1
    page = client.get(reverse("deployment-settings", args=["tumour"])).content.decode()
    assert "In effect: the psi test at" in page and "the newest 5,000 rows" in page


def test_drift_rules_for_a_feature_the_deployment_lacks_are_refused_and_nothing_changes(client, approver, deployment):
    client.force_login(approver)
    events = AuditEvent.objects.count()

    response = client.post(reverse("deployment-drift", args=["tumour"]), {
        "correction": "bonferroni", "features": '{"income": {"test": "psi"}}',
    })

    assert response.status_code == 422
    assert "Drift settings name unknown features: [&#x27;income&#x27;]." in response.content.decode()
    deployment.refresh_from_db()
    assert deployment.drift_config == {} and AuditEvent.objects.count() == events


def test_a_distance_test_on_the_wrong_kind_is_refused_in_words(client, approver, deployment):
    client.force_login(approver)

    response = client.post(reverse("deployment-drift", args=["tumour"]), {
        "correction": "bonferroni", "features": '{"f1": {"kind": "categorical", "test": "ks"}}',
    })

    assert response.status_code == 422
    assert "features.f1: the ks test does not apply to a categorical feature." in response.content.decode()
    deployment.refresh_from_db()
    assert deployment.drift_config == {}


def test_an_empty_drift_form_goes_back_to_the_defaults(client, approver, deployment):
    services.deployment_drift_configure(deployment=deployment, config={"test": "psi"}, window_rows=10, by=approver)
    client.force_login(approver)

    client.post(reverse("deployment-drift", args=["tumour"]), {"correction": "bonferroni"})

    deployment.refresh_from_db()
    assert (deployment.drift_config, deployment.drift_window_rows) == ({}, None)


# ---------------------------------------------------------------- datasets page and empty states


def test_the_dataset_page_preselects_the_kind_it_was_linked_with_and_shows_a_header_that_fits(client, operator, deployment):
    client.force_login(operator)

    response = client.get(reverse("dataset-new", args=["tumour"]) + "?kind=evaluation")

    assert response.context["form"]["kind"].value() == "evaluation"
    assert ",".join([*FEATURES, "label"]) in response.content.decode()


def test_a_deployment_without_datasets_links_to_uploading_each(client, operator, team):
    deployment = services.deployment_create(
        team=team, name="Fraud", feature_names=["a", "b"], class_labels=["x", "y"], by=operator
    )
    client.force_login(operator)

    page = client.get(reverse("deployment", args=[deployment.slug])).content.decode()

    assert reverse("dataset-new", args=["fraud"]) + "?kind=evaluation" in page
    assert reverse("dataset-new", args=["fraud"]) + "?kind=reference" in page
    assert reverse("tokens", args=["fraud"]) in page


def test_the_overview_without_deployments_links_to_creating_one(client, operator):
    client.force_login(operator)

    page = client.get(reverse("overview")).content.decode()

    assert 'data-empty="deployments"' in page and reverse("deployment-new") in page


def test_the_overview_does_not_offer_creating_to_someone_who_cannot(client, viewer):
    client.force_login(viewer)

    page = client.get(reverse("overview")).content.decode()

    assert 'data-empty="deployments"' in page and reverse("deployment-new") not in page


def test_the_alert_and_candidate_counts_link_to_what_they_count(client, viewer, deployment):
    services.alert_raise(deployment=deployment, kind="data_drift", dedup_key="drift", title="Drift")
    client.force_login(viewer)

    overview = client.get(reverse("overview")).content.decode()
    page = client.get(reverse("deployment", args=["tumour"])).content.decode()

    assert f'href="{reverse("alerts")}" data-stat="open-alerts"' in overview
    assert f'href="{reverse("alerts")}?deployment=tumour" data-stat="open-alerts"' in page
    assert 'href="#versions" data-stat="candidates"' in page
