"""The decisions an approver takes on versions (approve, reject, roll back), as their buttons, confirmation
dialogs and no-JavaScript form pages show them: one place for the words, so the button, the dialog and the
audit entry name the same version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from django.urls import reverse

from monitoring.models import Deployment, ModelVersion


@dataclass(frozen=True)
class Decision:
    """A decision an approver can take on a version, as its button, its dialog and its no-JS form page show it."""

    kind: str  # "approve", "reject", "rollback": the button's data-action
    url: str
    title: str  # the dialog's heading: "Approve v3 of Digits MLP?"
    button: str  # "Approve v3", "Roll back to v2"
    consequence: str  # what happens, in one sentence
    danger: bool = False
    # A rollout's stages, prefilled from the deployment's plan and editable for this rollout only:
    # [{"share": "10", "minutes": 30, "predictions": 500}] (share in per cent, as the form shows it).
    stage_rows: tuple[dict, ...] = ()


ACTIVE_UNKNOWN = object()


def approve_decision(version: ModelVersion, active: ModelVersion | object | None = ACTIVE_UNKNOWN) -> Decision:
    """`active`: the deployment's active version when the caller has it (the versions table draws a button per
    candidate, and looking it up for each was a query per row)."""
    deployment = version.deployment
    serving = deployment.active_version() if active is ACTIVE_UNKNOWN else cast("ModelVersion | None", active)
    replaced = f" v{serving.number} stops serving and is kept for a rollback." if serving is not None else ""
    return Decision(
        "approve", reverse("version-approve", args=[deployment.slug, version.number]),
        f"Approve v{version.number} of {deployment.name}?", f"Approve v{version.number}",
        f"v{version.number} starts serving now.{replaced}",
    )


def rollout_decision(version: ModelVersion, stages: list[dict]) -> Decision:
    """`stages`: the deployment's plan (services.rollout_plan_of), which the dialog offers to change."""
    deployment = version.deployment
    return Decision(
        "rollout-start", reverse("rollout-start", args=[deployment.slug, version.number]),
        f"Roll out v{version.number} of {deployment.name}?", f"Roll out v{version.number}",
        f"v{version.number} serves a share of instances, stage by stage, by the deployment's plan; the guards decide "
        "each stage, and a breach puts every instance back on the active version.",
        stage_rows=tuple(stage_rows(stages)),
    )


def stage_rows(stages: list[dict]) -> list[dict]:
    """A plan's stages as the stage inputs show them (share in per cent)."""
    return [{"share": f"{stage['share'] * 100:g}", "minutes": stage.get("min_minutes", 0),
             "predictions": stage.get("min_predictions", 0)} for stage in stages]


def reject_decision(version: ModelVersion) -> Decision:
    deployment = version.deployment
    return Decision(
        "reject", reverse("version-reject", args=[deployment.slug, version.number]),
        f"Reject v{version.number} of {deployment.name}?", f"Reject v{version.number}",
        f"v{version.number} can no longer be approved; its file and evaluations are kept.", danger=True,
    )


def rollback_decision(deployment: Deployment) -> Decision | None:
    active, target = deployment.active_version(), deployment.rollback_target()
    if active is None or target is None:
        return None
    return Decision(
        "rollback", reverse("rollback", args=[deployment.slug]),
        f"Roll {deployment.name} back to v{target.number}?", f"Roll back to v{target.number}",
        f"v{active.number} stops serving now and v{target.number}, which served before it, serves again.", danger=True,
    )
