"""A real HTTP hop between the client and the live server, for the faults a test needs: the server down
(the port refuses connections) and back, a model file altered in transit, a forged signature.

Until the serving branch lands, it also answers the serving contract itself (`contract=True`) from the real
database and blob store, signing with a key of its own; every other path goes to the live server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import urllib3
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "proxy-connection", "upgrade"}
SERVING = re.compile(r"^/api/v1/deployments/([\w-]+)/serving$")
MODEL = re.compile(r"^/api/v1/deployments/([\w-]+)/versions/(\d+)/model$")


def raw_public_key(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def signature_of(private: Ed25519PrivateKey, sha256_hex: str) -> str:
    return base64.b64encode(private.sign(b"watchkeeper-model-v1\n" + sha256_hex.encode("ascii"))).decode()


class Gateway:
    def __init__(self, upstream: str, *, contract: bool):
        self.upstream = upstream.rstrip("/")
        self.contract = contract
        self.key = Ed25519PrivateKey.generate()
        self.tamper_models = False  # flip a byte of every model file passed on
        self.forge_signatures = False  # replace the signature in every serving document with another key's
        self.served_models = 0
        self.closed = threading.Event()  # ends the long polls the stub is holding
        self._pool = urllib3.PoolManager(maxsize=32, retries=False)
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        gateway = self

        class Handler(_Handler):
            owner = gateway

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def down(self) -> None:
        """Close the port: new connections are refused (HTTP/1.0, so none is kept alive)."""
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    def close(self) -> None:
        self.closed.set()
        if self._server is not None:
            self.down()

    # ------------------------------------------------------------ the serving contract, until the server has it

    def signing_key_document(self) -> dict:
        raw = raw_public_key(self.key)
        return {"algorithm": "ed25519", "key_id": hashlib.sha256(raw).hexdigest()[:16],
                "public_key": base64.b64encode(raw).decode(), "pem": ""}

    def token_valid(self, header: str | None) -> bool:
        from django.db import connection

        from monitoring import services

        try:
            return services.token_authenticate(raw=(header or "").removeprefix("Bearer ").strip()) is not None
        finally:
            connection.close()

    def serving_document(self, slug: str) -> tuple[dict, str]:
        from django.db import connection

        from monitoring.models import Deployment

        try:
            deployment = Deployment.objects.get(slug=slug)
            version = deployment.active_version()
            document = {
                "deployment": slug, "version": version.number,
                "model": {"url": f"{self.url}/api/v1/deployments/{slug}/versions/{version.number}/model",
                          "sha256": version.sha256, "size": version.size_bytes,
                          "signature": signature_of(self.key, version.sha256),
                          "key_id": self.signing_key_document()["key_id"]},
                "feature_names": deployment.feature_names, "classes": deployment.class_labels, "poll_after": 30,
            }
            return document, f'"{version.number}-{version.sha256[:12]}"'
        finally:
            connection.close()

    def model_bytes(self, slug: str, number: int) -> bytes:
        from django.db import connection

        from monitoring.blobs import blob_read
        from monitoring.models import ModelVersion

        try:
            return blob_read(ModelVersion.objects.get(deployment__slug=slug, number=number).sha256)
        finally:
            connection.close()


class _Handler(BaseHTTPRequestHandler):
    owner: Gateway
    protocol_version = "HTTP/1.0"

    def log_message(self, format, *args):  # quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: dict, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(value).encode(), {"Content-Type": "application/json", **(headers or {})})

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def _handle(self) -> None:
        gateway = self.owner
        path = urlsplit(self.path).path
        if gateway.contract and path == "/api/v1/signing-key":
            return self._json(200, gateway.signing_key_document())
        contract = gateway.contract and (SERVING.match(path) or MODEL.match(path))
        if contract and not gateway.token_valid(self.headers.get("Authorization")):
            return self._json(401, {"detail": "The API token is not valid, or it has been revoked."})
        if gateway.contract and (match := SERVING.match(path)):
            return self._serving(match.group(1))
        if gateway.contract and (match := MODEL.match(path)):
            data = gateway.model_bytes(match.group(1), int(match.group(2)))
            return self._model(200, data, {"Content-Type": "application/octet-stream"})
        self._forward()

    def _serving(self, slug: str) -> None:
        gateway = self.owner
        query = parse_qs(urlsplit(self.path).query)
        wait = min(60.0, float(query.get("wait", ["0"])[0]))
        document, etag = gateway.serving_document(slug)
        deadline = time.monotonic() + wait
        while self.headers.get("If-None-Match") == etag:
            if time.monotonic() >= deadline or gateway.closed.is_set():
                return self._send(304, b"", {"ETag": etag})
            time.sleep(0.1)
            document, etag = gateway.serving_document(slug)
        self._document(200, json.dumps(document).encode(), {"Content-Type": "application/json", "ETag": etag})

    def _document(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        if self.owner.forge_signatures and status == 200:
            document = json.loads(body)
            document["model"]["signature"] = signature_of(Ed25519PrivateKey.generate(), document["model"]["sha256"])
            body = json.dumps(document).encode()
        self._send(status, body, headers)

    def _model(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        if self.owner.tamper_models and status == 200:
            body = body[:-1] + bytes([body[-1] ^ 0x01])
        self.owner.served_models += status == 200
        self._send(status, body, headers)

    def _forward(self) -> None:
        gateway = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = gateway._pool.request(self.command, gateway.upstream + self.path, body=body, headers=headers,
                                         redirect=False, timeout=urllib3.Timeout(connect=5, read=90))
        answer = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        path = urlsplit(self.path).path
        if SERVING.match(path):
            # The model URL names the live server; the client must fetch it through here too.
            data = upstream.data.replace(gateway.upstream.encode(), gateway.url.encode())
            return self._document(upstream.status, data, answer)
        if MODEL.match(path):
            return self._model(upstream.status, upstream.data, answer)
        self._send(upstream.status, upstream.data, answer)
