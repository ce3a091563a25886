"""Ed25519 signatures over model versions' sha256 (docs/serving.md): the serving process checks, with the
public key from /api/v1/signing-key, that the bytes it downloaded are the ones this instance registered.

Pure functions over `cryptography` keys, plus one cached loader of the key file named by SIGNING_KEY_FILE.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings

# The contract's domain separation: a signature over a model's digest can never be replayed as anything else.
MESSAGE_PREFIX = b"watchkeeper-model-v1\n"


class SigningKeyMissing(Exception):
    """SIGNING_KEY_FILE is unset, unreadable, or not an Ed25519 private key in PKCS8 PEM."""


@dataclass(frozen=True)
class PublicKeyInfo:
    key_id: str  # first 16 hex of sha256(raw public key)
    raw: bytes  # the 32 raw bytes
    pem: str  # SubjectPublicKeyInfo


def signed_message(sha256_hex: str) -> bytes:
    return MESSAGE_PREFIX + sha256_hex.lower().encode("ascii")


def public_key_info(public_key: Ed25519PublicKey) -> PublicKeyInfo:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return PublicKeyInfo(key_id=hashlib.sha256(raw).hexdigest()[:16], raw=raw, pem=pem.decode("ascii"))


def sign_digest(private_key: Ed25519PrivateKey, sha256_hex: str) -> str:
    """The base64 (standard alphabet) signature of a model's sha256."""
    return base64.b64encode(private_key.sign(signed_message(sha256_hex))).decode("ascii")


def signature_valid(public_key: Ed25519PublicKey, sha256_hex: str, signature_b64: str) -> bool:
    try:
        public_key.verify(base64.b64decode(signature_b64, validate=True), signed_message(sha256_hex))
    except (InvalidSignature, ValueError):
        return False
    return True


def private_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def key_file_create(path: Path) -> bool:
    """Write a new key to `path` (mode 0600) unless a file is there already; True if it wrote one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as file:
        file.write(private_key_pem(Ed25519PrivateKey.generate()))
    return True


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningKeyMissing(f"SIGNING_KEY_FILE ({path}) could not be read as a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyMissing(f"SIGNING_KEY_FILE ({path}) holds a {type(key).__name__}, not an Ed25519 key.")
    return key


def signing_key() -> Ed25519PrivateKey:
    """The instance's private key, read once per file version (a rotated file is picked up by its mtime)."""
    path = getattr(settings, "SIGNING_KEY_FILE", "")
    if not path:
        raise SigningKeyMissing("SIGNING_KEY_FILE is not set: create a key (manage.py signing_key_create) and point it there.")
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError as exc:
        raise SigningKeyMissing(f"SIGNING_KEY_FILE ({path}) cannot be read: {exc.strerror}.") from None
    return _load(str(path), mtime)
