"""{% decision_button decision %}: a decision's button and its confirmation dialog (static/js/dialogs.js opens it;
without JavaScript the button is a link to the decision's own form page)."""

from __future__ import annotations

import re

from django import template

from dashboard import decisions
from dashboard.decisions import Decision
from monitoring import services
from monitoring.models import Deployment, ModelVersion

register = template.Library()


@register.inclusion_tag("versions/_decision.html", takes_context=True)
def decision_button(context, decision: Decision | None, *, small: bool = True) -> dict:
    request = context.get("request")
    return {
        "decision": decision,
        "small": small,
        "csrf_token": context.get("csrf_token"),
        "next": request.get_full_path() if request is not None else "",
        # One dialog per decision on a page: named after its URL ("decide-d-tumour-versions-2-approve").
        "dialog_id": "decide-" + re.sub(r"[^A-Za-z0-9]+", "-", decision.url).strip("-") if decision else "",
    }


@register.simple_tag
def approve_decision(version: ModelVersion, active: ModelVersion | object | None = decisions.ACTIVE_UNKNOWN) -> Decision:
    """`{% approve_decision v active %}` with the active version the page already holds (None: none serves)."""
    return decisions.approve_decision(version, active)


@register.simple_tag
def rollout_decision(version: ModelVersion, plan=None) -> Decision:
    """`{% rollout_decision v rollout_plan %}` with the plan the page already holds (else it is looked up)."""
    plan = plan or services.rollout_plan_of(version.deployment)
    return decisions.rollout_decision(version, plan.stages)


@register.simple_tag
def reject_decision(version: ModelVersion) -> Decision:
    return decisions.reject_decision(version)


@register.simple_tag
def rollback_decision(deployment: Deployment) -> Decision | None:
    return decisions.rollback_decision(deployment)
