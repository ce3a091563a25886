"""Logins: which address a failed attempt counts against, and the page a locked-out client sees (django-axes
calls both; see the AXES_ settings)."""

from __future__ import annotations

import logging

from axes.handlers.cache import AxesCacheHandler
from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth import user_login_failed
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.views import PasswordChangeView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


def client_ip(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or, behind TRUSTED_PROXY_COUNT proxies, the address the outermost of
    them saw. Each proxy appends the address it received from, so the n-th entry from the right of
    X-Forwarded-For is the one our outermost proxy wrote; entries left of it are whatever the client sent."""
    remote = request.META.get("REMOTE_ADDR", "")
    count = settings.TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < count:
        return remote  # not through all our proxies: the connection itself is the client
    return forwarded[-count]


def lockout_response(request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None) -> HttpResponse:
    """429 with the wait. Every attempt while locked out restarts the cool-off (axes' default), so the wait
    counted from this response is exact."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    response = render(request, "registration/locked_out.html", {"minutes": minutes}, status=429)
    response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return response


class LimitedPasswordChangeForm(PasswordChangeForm):
    """A wrong old password counts as a failed login: else the form is a password oracle with no limit."""

    def clean_old_password(self) -> str:
        try:
            return super().clean_old_password()
        except Exception:
            user_login_failed.send(
                sender=type(self), credentials={"username": self.user.get_username()}, request=self.request
            )
            raise

    def __init__(self, user, *args, request: HttpRequest, **kwargs):
        super().__init__(user, *args, **kwargs)
        self.request = request


class LimitedPasswordChangeView(PasswordChangeView):
    form_class = LimitedPasswordChangeForm

    def get_form_kwargs(self) -> dict:
        return super().get_form_kwargs() | {"request": self.request}

    def post(self, request, *args, **kwargs):
        if not AxesProxyHandler.is_allowed(request, {"username": request.user.get_username()}):
            return lockout_response(request, None, None)
        return super().post(request, *args, **kwargs)


class LoginFailureCounts(AxesCacheHandler):
    """axes' cache handler (the counts in Redis), except that while Redis is away a login is not a 500: its
    failure is not counted and nobody is locked out for the outage (docs/operations.md, "Faults survived").
    Logged-in sessions live in Postgres, so only the counting is lost."""

    def get_failures(self, request, credentials: dict | None = None) -> int:
        try:
            return super().get_failures(request, credentials)
        except RedisError as exc:
            logger.warning("login failures not read (Redis unreachable: %s); this attempt is not limited", exc)
            return 0

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs) -> None:
        try:
            super().user_login_failed(sender, credentials, request, **kwargs)
        except RedisError as exc:
            logger.warning("a failed login was not counted (Redis unreachable: %s)", exc)

    def user_logged_in(self, sender, request, user, **kwargs) -> None:
        try:
            super().user_logged_in(sender, request, user, **kwargs)
        except RedisError as exc:
            logger.warning("a login's failure count was not read (Redis unreachable: %s)", exc)
