"""The write path: versions and their rollout, the audit log, ingestion, tokens and users, against real Postgres."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from onnx import TensorProto, helper
from sklearn.linear_model import LogisticRegression

from monitoring import services
from monitoring.models import ApiToken, AuditEvent, Membership, ModelVersion, Role
from monitoring.services import Conflict, ValidationFailed
from tests.conftest import CLASSES, FEATURES, breast_cancer_split, trained_model
from workers.training import estimator_to_onnx


def blob_files() -> set[Path]:
    root = Path(settings.MEDIA_ROOT) / "blobs"
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


def two_input_model() -> bytes:
    """A valid ONNX graph that takes two tensors (halves of the features) and concatenates them."""
    left = helper.make_tensor_value_info("left", TensorProto.FLOAT, [None, 15])
    right = helper.make_tensor_value_info("right", TensorProto.FLOAT, [None, 15])
    joined = helper.make_tensor_value_info("joined", TensorProto.FLOAT, [None, 30])
    graph = helper.make_graph([helper.make_node("Concat", ["left", "right"], ["joined"], axis=1)], "two_inputs", [left, right], [joined])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def five_feature_model() -> bytes:
    X, y, _, _ = breast_cancer_split()
    estimator = LogisticRegression(max_iter=2000).fit(X[:, :5], y)
    return estimator_to_onnx(estimator, feature_names=FEATURES[:5], class_labels=CLASSES)


def candidate(deployment, by) -> ModelVersion:
    onnx_bytes, recipe = trained_model(C=0.5)
    return services.version_register(deployment=deployment, data=onnx_bytes, recipe=recipe, by=by, notes="C=0.5")


# ---------------------------------------------------------------- version_register


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"feature,label\n1.0,0\n", "not a valid ONNX model"),
        (five_feature_model(), "takes 5 features but the deployment's schema has 30"),
        (two_input_model(), "exactly one input tensor; it takes 2 (left, right)"),
    ],
    ids=["text", "wrong-feature-count", "two-inputs"],
)
def test_it_rejects_a_model_that_does_not_fit_and_stores_nothing(deployment, operator, data, message):
    blobs_before = blob_files()
    versions_before = list(deployment.versions.values_list("pk", flat=True))
    audits_before = AuditEvent.objects.count()

    with pytest.raises(ValidationFailed) as failure:
        services.version_register(deployment=deployment, data=data, by=operator)

    assert message in failure.value.message
    assert failure.value.errors[0]["field"] == "file"
    assert list(deployment.versions.values_list("pk", flat=True)) == versions_before
    assert blob_files() == blobs_before
    assert AuditEvent.objects.count() == audits_before


def test_it_rejects_a_recipe_that_is_not_a_skops_file_and_stores_nothing(deployment, operator):
    onnx_bytes, _ = trained_model(C=0.5)
    blobs_before = blob_files()

    with pytest.raises(ValidationFailed) as failure:
        services.version_register(deployment=deployment, data=onnx_bytes, recipe=b"import os", by=operator)

    assert "not a skops file" in failure.value.message
    assert deployment.versions.count() == 1
    assert blob_files() == blobs_before


def test_the_first_version_is_active_and_later_ones_are_candidates(deployment, operator):
    v2 = candidate(deployment, operator)

    assert deployment.versions.get(number=1).status == ModelVersion.Status.ACTIVE
    assert (v2.number, v2.status, v2.notes) == (2, ModelVersion.Status.CANDIDATE, "C=0.5")
    assert services.blob_read(v2.sha256) == trained_model(C=0.5)[0]
    event = AuditEvent.objects.filter(action="version.register", object_id=str(v2.pk)).get()
    assert event.actor == operator and event.after["status"] == "candidate"


# ---------------------------------------------------------------- approval and rollback


def test_approving_a_candidate_makes_it_active_and_retires_the_old_one(deployment, operator, approver):
    v2 = candidate(deployment, operator)

    services.version_approve(version=v2, by=approver, comment="better recall")

    states = dict(deployment.versions.values_list("number", "status"))
    assert states == {1: ModelVersion.Status.RETIRED, 2: ModelVersion.Status.ACTIVE}
    v2.refresh_from_db()
    assert (v2.decided_by, v2.decision_comment) == (approver, "better recall")
    event = AuditEvent.objects.get(action="version.approve")
    assert event.actor == approver and event.deployment == deployment and event.comment == "better recall"
    assert event.before["status"] == "candidate" and event.before["active_version"] == 1
    assert event.after["status"] == "active" and event.after["active_version"] == 2


def test_rollback_restores_the_previous_version(deployment, operator, approver):
    services.version_approve(version=candidate(deployment, operator), by=approver)

    restored = services.deployment_rollback(deployment=deployment, by=approver, comment="v2 misbehaves")

    assert restored.number == 1
    assert dict(deployment.versions.values_list("number", "status")) == {
        1: ModelVersion.Status.ACTIVE,
        2: ModelVersion.Status.RETIRED,
    }
    event = AuditEvent.objects.get(action="deployment.rollback")
    assert (event.before, event.after, event.comment) == ({"active_version": 2}, {"active_version": 1}, "v2 misbehaves")


def test_rollback_without_an_earlier_version_is_a_conflict(deployment, approver):
    with pytest.raises(Conflict, match="nothing to roll back to"):
        services.deployment_rollback(deployment=deployment, by=approver)
    assert deployment.active_version().number == 1


def test_rejecting_a_candidate_leaves_the_active_version_serving(deployment, operator, approver):
    v2 = candidate(deployment, operator)

    services.version_reject(version=v2, by=approver, comment="worse on the holdout")

    assert dict(deployment.versions.values_list("number", "status")) == {
        1: ModelVersion.Status.ACTIVE,
        2: ModelVersion.Status.REJECTED,
    }
    event = AuditEvent.objects.get(action="version.reject")
    assert (event.before["status"], event.after["status"]) == ("candidate", "rejected")


@pytest.mark.parametrize("decide", [services.version_approve, services.version_reject])
def test_only_a_candidate_can_be_decided(deployment, approver, decide):
    active = deployment.versions.get(number=1)
    audits_before = AuditEvent.objects.count()

    with pytest.raises(Conflict, match="v1 is active; only a candidate"):
        decide(version=active, by=approver)

    active.refresh_from_db()
    assert active.status == ModelVersion.Status.ACTIVE
    assert AuditEvent.objects.count() == audits_before


# ---------------------------------------------------------------- the audit log


def test_audit_events_cannot_be_changed_through_the_orm(deployment):
    event = AuditEvent.objects.filter(deployment=deployment).first()
    event.comment = "rewritten"

    with pytest.raises(RuntimeError, match="append-only"):
        event.save()
    with pytest.raises(RuntimeError, match="append-only"):
        event.delete()

    event.refresh_from_db()
    assert event.comment == ""


def test_the_database_refuses_to_update_or_delete_audit_events(deployment):
    event = AuditEvent.objects.filter(deployment=deployment).first()

    with pytest.raises(DatabaseError, match="append-only: UPDATE refused"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE monitoring_auditevent SET comment = 'rewritten' WHERE id = %s", [event.pk])
    with pytest.raises(DatabaseError, match="append-only: UPDATE refused"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(comment="rewritten")
    with pytest.raises(DatabaseError, match="append-only: DELETE refused"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM monitoring_auditevent WHERE id = %s", [event.pk])

    event.refresh_from_db()
    assert event.comment == ""


# ---------------------------------------------------------------- tokens


def test_a_token_is_stored_hashed_and_authenticates(deployment, operator):
    token, plaintext = services.token_create(deployment=deployment, name="scorer", by=operator)

    prefix, secret = plaintext.split("_")[1], plaintext.split("_", 2)[2]
    row = ApiToken.objects.filter(pk=token.pk).values().get()
    assert not any(secret in str(value) for value in row.values())
    assert row["prefix"] == prefix and len(row["secret_sha256"]) == 64
    assert services.token_authenticate(raw=plaintext) == token
    assert ApiToken.objects.get(pk=token.pk).last_used_at is not None


def test_a_wrong_secret_or_a_revoked_token_does_not_authenticate(deployment, operator):
    token, plaintext = services.token_create(deployment=deployment, name="scorer", by=operator)

    assert services.token_authenticate(raw=plaintext[:-2] + "xx") is None
    assert services.token_authenticate(raw="not-a-token") is None

    services.token_revoke(token=token, by=operator)

    assert services.token_authenticate(raw=plaintext) is None
    assert AuditEvent.objects.filter(action="token.revoke", object_id=str(token.pk)).exists()


# ---------------------------------------------------------------- users


def test_a_user_is_created_in_a_team_with_a_role(team):
    user = services.user_create(username="nina", password="a long enough passphrase", team=team, role=Role.OPERATOR)

    assert user.check_password("a long enough passphrase")
    assert Membership.objects.get(user=user).role == Role.OPERATOR
    assert AuditEvent.objects.get(action="user.create").after == {"username": "nina", "team": team.slug, "role": "operator"}


def test_a_weak_password_creates_no_user(team):
    with pytest.raises(ValidationFailed, match="too weak"):
        services.user_create(username="nina", password="short", team=team, role=Role.VIEWER)

    assert not Membership.objects.filter(user__username="nina").exists()
    assert not AuditEvent.objects.filter(action="user.create").exists()
