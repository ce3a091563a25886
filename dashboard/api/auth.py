"""The API's ways in.

- Ingestion (predictions, labels): a per-deployment token, `Authorization: Bearer wk_<prefix>_<secret>`.
  Machines send data; a token can do nothing else and only for its own deployment. A personal or team service
  token whose user has the operator role on the deployment may send data too (IngestionToken).
- Management (everything else): a personal access token (`wkp_…`, acts as its owner) or a team service token
  (`wks_…`, acts as its own member of one team) as `Authorization: Bearer`, or else the dashboard's Django
  session, with CSRF checks on writes (a bearer request carries no cookie, so it needs none).
  Every action needs a user with a role, checked through dashboard/access.py.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from ninja.errors import AuthenticationError
from ninja.security import HttpBearer, SessionAuth

from dashboard import logs
from dashboard.access import get_deployment_for
from monitoring import services
from monitoring.models import ApiToken, Deployment, MachineToken, Role


class TokenRejected(AuthenticationError):
    www_authenticate = 'Bearer realm="watchkeeper"'

    def __init__(self, message: str):
        super().__init__(status_code=401, message=message)


class DeploymentToken(HttpBearer):
    """A live ApiToken from the bearer header; a clear 401 otherwise."""

    missing = "This endpoint needs the deployment's API token: 'Authorization: Bearer wk_<prefix>_<secret>'."

    def __call__(self, request: HttpRequest) -> ApiToken:
        scheme, _, raw = request.headers.get(self.header, "").partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise TokenRejected(self.missing)
        return self.authenticate(request, raw.strip())

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken:
        api_token = services.token_authenticate(raw=token)
        if api_token is None:
            raise TokenRejected("The API token is not valid, or it has been revoked.")
        logs.bind(user=f"wk_{api_token.prefix}")  # the public prefix only, for the log lines that follow
        return api_token


class IngestionToken(DeploymentToken):
    """The deployment's ingestion token (wk_), or a personal (wkp_) or team service (wks_) token: its user's role
    on the deployment in the URL is checked by deployment_for_token (operator at least)."""

    missing = ("This endpoint needs 'Authorization: Bearer <token>': the deployment's ingestion token (wk_…), or a "
               "personal (wkp_…) or team service (wks_…) token with the operator role.")

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | MachineToken:  # type: ignore[override]
        if token.startswith(f"{services.TOKEN_PREFIX}_"):
            return super().authenticate(request, token)
        machine_token = services.machine_token_authenticate(raw=token)
        if machine_token is None:
            raise TokenRejected("The token is not valid, or it has expired or been revoked. Send the deployment's "
                                "ingestion token (wk_…), or a personal (wkp_…) or service (wks_…) token with the operator role.")
        request.machine_token = machine_token  # type: ignore[attr-defined]
        return machine_token


class DashboardSession(SessionAuth):
    """The logged-in dashboard user (CSRF checked on unsafe methods by SessionAuth)."""

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        if request.user.is_authenticated and request.user.is_active:
            return request.user
        raise AuthenticationError(message="Log in to the dashboard first: management endpoints use the session cookie.")


class MachineBearer(HttpBearer):
    """A personal or service token from the bearer header. No header: None, so the session is tried next."""

    def __call__(self, request: HttpRequest) -> Any:
        header = request.headers.get(self.header, "")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        raw = raw.strip()
        if scheme.lower() != "bearer" or not raw:
            raise TokenRejected("Send 'Authorization: Bearer <token>' with a personal (wkp_…) or service (wks_…) token.")
        return self.authenticate(request, raw)

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        if token.startswith(f"{services.TOKEN_PREFIX}_"):
            raise TokenRejected("This is a deployment's ingestion token: it only sends predictions and labels. "
                                "Management endpoints take a personal (wkp_…) or team service (wks_…) token.")
        machine_token = services.machine_token_authenticate(raw=token)
        if machine_token is None:
            raise TokenRejected("The token is not valid, or it has expired or been revoked.")
        request.machine_token = machine_token  # type: ignore[attr-defined]
        logs.bind(user=machine_token.display)
        return machine_token.user


token_auth = DeploymentToken()
ingestion_auth = IngestionToken()
session_auth = DashboardSession()
# Management endpoints: a bearer token when one is sent, the session cookie otherwise.
management_auth = [MachineBearer(), session_auth]


def machine_token_of(request: HttpRequest) -> MachineToken | None:
    return getattr(request, "machine_token", None)


def require_session(request: HttpRequest, what: str) -> None:
    """Refuse a token where only a person at the dashboard should act (a token minting tokens would outlive
    its own expiry and revocation)."""
    if machine_token_of(request) is not None:
        raise PermissionDenied(f"{what} needs a logged-in dashboard session, not a token.")


def deployment_for_token(request: HttpRequest, slug: str) -> Deployment:
    """The ingestion token's own deployment, if it is the one in the URL; for a personal or service token, the
    deployment in the URL if its user is an operator there (404 outside the team, 403 below operator)."""
    token: ApiToken | MachineToken = request.auth  # type: ignore[attr-defined]
    if isinstance(token, MachineToken):
        return get_deployment_for(token.user, slug, need=Role.OPERATOR)
    if token.deployment.slug != slug:
        raise PermissionDenied("This API token belongs to another deployment.")
    return token.deployment


def user_of(request: HttpRequest) -> AbstractBaseUser:
    return request.auth  # type: ignore[attr-defined]
