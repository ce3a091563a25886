"""The API's two ways in.

- Ingestion (predictions, labels): a per-deployment token, `Authorization: Bearer wk_<prefix>_<secret>`.
  Machines send data; a token can do nothing else and only for its own deployment.
- Management (everything else): the dashboard's Django session, with CSRF checks on writes.
  Every action needs a user with a role, checked through dashboard/access.py.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from ninja.errors import AuthenticationError
from ninja.security import HttpBearer, SessionAuth

from monitoring import services
from monitoring.models import ApiToken, Deployment


class TokenRejected(AuthenticationError):
    www_authenticate = 'Bearer realm="watchkeeper"'

    def __init__(self, message: str):
        super().__init__(status_code=401, message=message)


class DeploymentToken(HttpBearer):
    """A live ApiToken from the bearer header; a clear 401 otherwise."""

    def __call__(self, request: HttpRequest) -> ApiToken:
        scheme, _, raw = request.headers.get(self.header, "").partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise TokenRejected("This endpoint needs the deployment's API token: 'Authorization: Bearer wk_<prefix>_<secret>'.")
        return self.authenticate(request, raw.strip())

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken:
        api_token = services.token_authenticate(raw=token)
        if api_token is None:
            raise TokenRejected("The API token is not valid, or it has been revoked.")
        return api_token


class DashboardSession(SessionAuth):
    """The logged-in dashboard user (CSRF checked on unsafe methods by SessionAuth)."""

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        if request.user.is_authenticated and request.user.is_active:
            return request.user
        raise AuthenticationError(message="Log in to the dashboard first: management endpoints use the session cookie.")


token_auth = DeploymentToken()
session_auth = DashboardSession()


def deployment_for_token(request: HttpRequest, slug: str) -> Deployment:
    """The token's own deployment, if it is the one in the URL."""
    token: ApiToken = request.auth  # type: ignore[attr-defined]
    if token.deployment.slug != slug:
        raise PermissionDenied("This API token belongs to another deployment.")
    return token.deployment


def user_of(request: HttpRequest) -> AbstractBaseUser:
    return request.auth  # type: ignore[attr-defined]
