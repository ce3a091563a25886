"""Model signatures (the serving contract, section 4): Ed25519 over b"watchkeeper-model-v1\\n" + sha256 hex."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from watchkeeper_client.errors import ModelRejected

SIGNED_PREFIX = b"watchkeeper-model-v1\n"


@dataclass(frozen=True)
class SigningKey:
    public_key: Ed25519PublicKey
    key_id: str  # the first 16 hex of sha256(raw public key)

    @classmethod
    def from_raw(cls, raw: bytes) -> SigningKey:
        if len(raw) != 32:
            raise ValueError(f"an Ed25519 public key is 32 bytes, not {len(raw)}")
        return cls(Ed25519PublicKey.from_public_bytes(raw), hashlib.sha256(raw).hexdigest()[:16])

    @classmethod
    def parse(cls, value: str | bytes | Ed25519PublicKey) -> SigningKey:
        """A pinned key as the caller has it: PEM text, base64 of the 32 raw bytes, the raw bytes, or a key."""
        if isinstance(value, Ed25519PublicKey):
            return cls.from_raw(value.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
        if isinstance(value, bytes) and len(value) == 32:
            return cls.from_raw(value)
        text = value.decode("ascii") if isinstance(value, bytes) else value
        if "BEGIN PUBLIC KEY" in text:
            key = serialization.load_pem_public_key(text.encode("ascii"))
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError("the pinned PEM key is not an Ed25519 key")
            return cls.parse(key)
        try:
            return cls.from_raw(base64.b64decode(text.strip(), validate=True))
        except binascii.Error:
            raise ValueError("a pinned signing key is PEM text or base64 of the 32 raw bytes") from None

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> SigningKey:
        """The key served at /api/v1/signing-key, checked against the key id served beside it."""
        if document.get("algorithm") != "ed25519":
            raise ModelRejected(f"the server signs with {document.get('algorithm')!r}; this client knows ed25519")
        key = cls.from_raw(base64.b64decode(document["public_key"], validate=True))
        if key.key_id != document.get("key_id"):
            raise ModelRejected("the server's signing key does not match its own key id")
        return key

    def verify(self, *, sha256_hex: str, signature_b64: str, key_id: str) -> None:
        if key_id != self.key_id:
            raise ModelRejected(f"the model is signed with key {key_id}, not the trusted key {self.key_id}")
        try:
            signature = base64.b64decode(signature_b64, validate=True)
            self.public_key.verify(signature, SIGNED_PREFIX + sha256_hex.lower().encode("ascii"))
        except (InvalidSignature, binascii.Error, ValueError):
            raise ModelRejected("the model's signature does not verify with the trusted key") from None


def check_model_bytes(data: bytes, *, sha256_hex: str, size: int | None, key: SigningKey, signature_b64: str,
                      key_id: str) -> None:
    """Refuse the bytes unless they are the ones the server signed (ModelRejected says which check failed)."""
    if size is not None and len(data) != size:
        raise ModelRejected(f"the model is {len(data)} bytes, not the {size} announced")
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256_hex.lower():
        raise ModelRejected(f"the model's sha256 is {actual[:16]}…, not the {sha256_hex[:16]}… announced")
    key.verify(sha256_hex=sha256_hex, signature_b64=signature_b64, key_id=key_id)
