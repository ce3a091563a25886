"""Small helpers the dashboard's views share."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from monitoring.services import ServiceError


def redirect_back(request: HttpRequest, fallback: str) -> HttpResponseRedirect:
    """Back to the page the form was on (its `next` field), if that is one of ours; else `fallback`."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return redirect(target)
    return redirect(fallback)


def report(request: HttpRequest, exc: ServiceError) -> None:
    """Show a service's refusal as it wrote it, with the first few details it gave."""
    details = "; ".join(e.get("message", "") for e in exc.errors[:3] if e.get("message"))
    messages.error(request, f"{exc.message} {details}".strip() if details and details != exc.message else exc.message)


def version_url(slug: str, number: int) -> str:
    """Where a reference to "v3" links: the version's own page (lineage, decisions, files, its compare page)."""
    return reverse("version", args=[slug, number])
