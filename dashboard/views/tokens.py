"""Ingestion tokens: the list with examples of sending data, creating one (its secret is shown once, in the
response, with the examples filled in) and revoking one."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from dashboard.access import OPERATE, get_deployment_for
from dashboard.forms import TokenForm
from dashboard.snippets import Snippets, ingestion_snippets
from dashboard.views.common import report
from monitoring import services
from monitoring.models import Deployment


def _tokens_url(slug: str) -> str:
    return reverse("tokens", args=[slug])


def _snippets(request: HttpRequest, deployment: Deployment, token: str | None) -> Snippets:
    return ingestion_snippets(
        deployment=deployment, base_url=request.build_absolute_uri("/"), token=token, at=timezone.now()
    )


@login_required
def token_list(request: HttpRequest, slug: str) -> HttpResponse:
    """Operators only, as in the API: a token's prefix, owner and last use are an ingestion credential's metadata."""
    deployment = get_deployment_for(request.user, slug, need=OPERATE)
    tokens = deployment.api_tokens.select_related("created_by").order_by(
        F("revoked_at").asc(nulls_first=True), "-created_at"
    )
    context = {
        "deployment": deployment,
        "tokens": list(tokens),
        "can_operate": True,
        "token_form": TokenForm(),
        "snippets": _snippets(request, deployment, None),
    }
    return render(request, "deployments/tokens.html", context)


@never_cache  # the response carries the only copy of the secret
@login_required
@require_POST
def token_create(request: HttpRequest, slug: str) -> HttpResponse:
    deployment = get_deployment_for(request.user, slug, need=OPERATE)
    form = TokenForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A token needs a name of at most 100 characters.")
        return redirect(_tokens_url(slug))
    try:
        token, plaintext = services.token_create(deployment=deployment, name=form.cleaned_data["name"], by=request.user)
    except services.ServiceError as exc:
        report(request, exc)
        return redirect(_tokens_url(slug))
    # Rendered, not redirected: the secret is never stored, not even in the session.
    context = {
        "deployment": deployment, "token": token, "plaintext": plaintext,
        "snippets": _snippets(request, deployment, plaintext),
    }
    return render(request, "deployments/token_created.html", context)


@login_required
@require_POST
def token_revoke(request: HttpRequest, slug: str, token_id: int) -> HttpResponse:
    deployment = get_deployment_for(request.user, slug, need=OPERATE)
    token = get_object_or_404(deployment.api_tokens, pk=token_id)
    try:
        services.token_revoke(token=token, by=request.user)
    except services.ServiceError as exc:
        report(request, exc)
    else:
        messages.success(request, f"Token “{token.name}” (wk_{token.prefix}_…) is revoked.")
    return redirect(_tokens_url(slug))
