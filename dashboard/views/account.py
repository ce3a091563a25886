"""Your account: personal access tokens for the management API (list, create, revoke). Their secret is shown
once, in the response that creates one."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from dashboard.views.common import report
from monitoring import services
from monitoring.models import MachineToken
from monitoring.services.machine_tokens import MAX_DAYS, PERSONAL_DEFAULT_DAYS

EXPIRY_CHOICES = [7, 30, PERSONAL_DEFAULT_DAYS, 180, MAX_DAYS - 1]


def _own_tokens(request: HttpRequest):
    return MachineToken.objects.filter(user=request.user, kind=MachineToken.Kind.PERSONAL)


@login_required
def personal_tokens(request: HttpRequest) -> HttpResponse:
    tokens = _own_tokens(request).order_by(F("revoked_at").asc(nulls_first=True), "-created_at")
    context = {"tokens": list(tokens), "now": timezone.now(), "expiry_choices": EXPIRY_CHOICES,
               "default_days": PERSONAL_DEFAULT_DAYS}
    return render(request, "account/tokens.html", context)


@never_cache  # the response carries the only copy of the secret
@login_required
@require_POST
def personal_token_create(request: HttpRequest) -> HttpResponse:
    try:
        days = int(request.POST.get("expires_in_days") or PERSONAL_DEFAULT_DAYS)
        token, plaintext = services.personal_token_create(
            user=request.user, name=request.POST.get("name", "")[:100], expires_in_days=days
        )
    except ValueError:
        messages.error(request, "Choose when the token expires, in days.")
        return redirect("account-tokens")
    except services.ServiceError as exc:
        report(request, exc)
        return redirect("account-tokens")
    return render(request, "account/token_created.html", {"token": token, "plaintext": plaintext})


@login_required
@require_POST
def personal_token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(_own_tokens(request), pk=token_id)
    services.machine_token_revoke(token=token, by=request.user)
    messages.success(request, f"Revoked {token.display}_…: requests with it now get 401.")
    return redirect("account-tokens")
