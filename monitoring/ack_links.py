"""Acknowledge links in notifications: a signed, expiring token naming an alert group.

The token only proves the link came from one of our notifications; acknowledging still needs a logged-in user
with the operator role on the deployment (dashboard/views/alerting.py). TimestampSigner with its own salt, so a
token signed for anything else (sessions, password resets) is not accepted here.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core import signing

_SALT = "watchkeeper.alert-group.acknowledge"


class AckLinkInvalid(ValueError):
    """Tampered with, or not one of ours."""


class AckLinkExpired(ValueError):
    pass


def ack_token(group_id: int) -> str:
    return signing.TimestampSigner(salt=_SALT).sign(f"g{group_id}")


def ack_token_group_id(token: str) -> int:
    """The group a token names; AckLinkExpired or AckLinkInvalid otherwise."""
    max_age = timedelta(hours=settings.ALERT_ACK_LINK_MAX_AGE_HOURS)
    try:
        value = signing.TimestampSigner(salt=_SALT).unsign(token, max_age=max_age)
    except signing.SignatureExpired:
        raise AckLinkExpired("This acknowledge link has expired.") from None
    except signing.BadSignature:
        raise AckLinkInvalid("This acknowledge link is not valid: it was changed or cut short.") from None
    if not value.startswith("g") or not value[1:].isdigit():
        raise AckLinkInvalid("This acknowledge link is not valid.")
    return int(value[1:])
