"""Ingestion tokens: create one (its secret is shown once, in the response) and revoke one."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from dashboard.access import OPERATE, get_deployment_for
from dashboard.forms import TokenForm
from dashboard.views.common import report
from monitoring import services


def _tokens_url(slug: str) -> str:
    return reverse("deployment", args=[slug]) + "#tokens"


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
    return render(request, "deployments/token_created.html", {"deployment": deployment, "token": token, "plaintext": plaintext})


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
