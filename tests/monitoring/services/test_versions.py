"""services/versions.py: registering an upload (checked before stored), approving, rejecting and rolling back."""

from __future__ import annotations

import pytest

from monitoring import services
from monitoring.models import AuditEvent, ModelVersion
from monitoring.services import Conflict, ValidationFailed
from tests.conftest import trained_model
from tests.monitoring.services.version_helpers import blob_files, candidate, five_feature_model, two_input_model

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
    services.version_approve(version=candidate(deployment, operator), by=approver, comment="ship it")

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
        services.deployment_rollback(deployment=deployment, by=approver, comment="regressed")
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
        decide(version=active, by=approver, comment="why not")

    active.refresh_from_db()
    assert active.status == ModelVersion.Status.ACTIVE
    assert AuditEvent.objects.count() == audits_before


@pytest.mark.django_db(transaction=True)
def test_each_decision_holds_its_own_transaction_outside_a_test_transaction(deployment, operator, approver):
    """Views call these in autocommit mode; the row lock each one takes needs the service's own transaction."""
    services.version_approve(version=candidate(deployment, operator), by=approver, comment="ship it")
    services.deployment_rollback(deployment=deployment, by=approver, comment="v2 misbehaves")
    services.version_reject(version=candidate(deployment, operator), by=approver, comment="not better")

    assert dict(deployment.versions.values_list("number", "status")) == {
        1: ModelVersion.Status.ACTIVE,
        2: ModelVersion.Status.RETIRED,
        3: ModelVersion.Status.REJECTED,
    }


# ---------------------------------------------------------------- reasons


def _state(deployment) -> tuple:
    return (
        sorted(deployment.versions.values_list("number", "status", "decision_comment", "retired_reason")),
        AuditEvent.objects.count(),
        deployment.serving_periods.count(),
    )


@pytest.mark.parametrize("reason", ["", "   \n "], ids=["empty", "blank"])
@pytest.mark.parametrize("decide", [services.version_approve, services.version_reject], ids=["approve", "reject"])
def test_a_decision_without_a_reason_is_refused_and_nothing_is_written(deployment, operator, approver, decide, reason):
    v2 = candidate(deployment, operator)
    before = _state(deployment)

    with pytest.raises(ValidationFailed, match=r"Say why you (approve|reject) v2") as failure:
        decide(version=v2, by=approver, comment=reason)

    assert failure.value.errors == [{"field": "comment", "message": "a reason is required"}]
    assert _state(deployment) == before


def test_a_rollback_without_a_reason_is_refused_naming_its_target_and_nothing_is_written(deployment, operator, approver):
    services.version_approve(version=candidate(deployment, operator), by=approver, comment="ship it")
    before = _state(deployment)

    with pytest.raises(ValidationFailed, match="Say why you roll back to v1"):
        services.deployment_rollback(deployment=deployment, by=approver, comment=" ")

    assert _state(deployment) == before
    assert deployment.active_version().number == 2


def test_a_rollbacks_audit_entry_names_the_version_it_restores_and_the_one_it_retires(deployment, operator, approver):
    services.version_approve(version=candidate(deployment, operator), by=approver, comment="ship it")

    services.deployment_rollback(deployment=deployment, by=approver, comment="latency regression")

    event = AuditEvent.objects.get(action="deployment.rollback")
    assert (event.before, event.after) == ({"active_version": 2}, {"active_version": 1})
    assert (event.object_type, event.object_id) == ("ModelVersion", str(deployment.versions.get(number=1).pk))
    assert event.comment == "latency regression"


# ---------------------------------------------------------------- tags


def test_tags_are_added_sorted_once_and_removed_each_change_audited(deployment, operator):
    v1 = deployment.versions.get(number=1)

    services.version_tag_add(version=v1, tag="eu-2026-q4", by=operator)
    services.version_tag_add(version=v1, tag="baseline", by=operator)
    services.version_tag_add(version=v1, tag="baseline", by=operator)  # already there: no change
    v1.refresh_from_db()
    assert v1.tags == ["baseline", "eu-2026-q4"]
    assert AuditEvent.objects.filter(action="version.tag").count() == 2

    services.version_tag_remove(version=v1, tag="baseline", by=operator)

    v1.refresh_from_db()
    assert v1.tags == ["eu-2026-q4"]
    event = AuditEvent.objects.get(action="version.untag")
    assert (event.before, event.after, event.actor) == ({"tags": ["baseline", "eu-2026-q4"]}, {"tags": ["eu-2026-q4"]}, operator)


@pytest.mark.parametrize("tag", ["", "has space", "-leading-dash", "x" * 41, "<script>"])
def test_a_malformed_tag_is_refused_and_nothing_is_written(deployment, operator, tag):
    v1 = deployment.versions.get(number=1)
    audits = AuditEvent.objects.count()

    with pytest.raises(ValidationFailed, match="is not a tag"):
        services.version_tag_add(version=v1, tag=tag, by=operator)

    v1.refresh_from_db()
    assert v1.tags == [] and AuditEvent.objects.count() == audits


def test_removing_a_tag_the_version_does_not_have_is_refused(deployment, operator):
    v1 = deployment.versions.get(number=1)
    audits = AuditEvent.objects.count()

    with pytest.raises(services.NotFound, match="v1 has no tag 'gone'"):
        services.version_tag_remove(version=v1, tag="gone", by=operator)

    assert AuditEvent.objects.count() == audits
