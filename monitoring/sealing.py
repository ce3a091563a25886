"""Secrets kept so they can be used again (a webhook's signing secret, a Slack URL): Fernet, with a key derived
from SECRET_KEY. Not a hash: the worker must sign with the secret, and a URL must be called.

Rotating SECRET_KEY makes the stored secrets unreadable: unseal raises, the delivery fails permanently and
says so, and the channel's secret is set again from its page (docs/alerts.md).
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.utils.crypto import salted_hmac

_SALT = "watchkeeper.sealing.channel-secrets"


class Unsealable(ValueError):
    """The sealed text was not made with this SECRET_KEY (rotated), or was altered."""


def _fernet() -> Fernet:
    key = salted_hmac(_SALT, "fernet-key", secret=settings.SECRET_KEY, algorithm="sha256").digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def unseal(sealed: str) -> str:
    try:
        return _fernet().decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise Unsealable("The stored secret cannot be read with this SECRET_KEY; set it again.") from None
