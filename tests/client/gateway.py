"""A real HTTP hop between the client and the live server, for the faults a test needs: the server down
(the port refuses connections) and back, a model file altered in transit, a forged signature."""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import urllib3
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "proxy-connection", "upgrade"}
SERVING = re.compile(r"^/api/v1/deployments/[\w-]+/serving$")
MODEL = re.compile(r"^/api/v1/deployments/[\w-]+/versions/\d+/model$")


def raw_public_key(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def signature_of(private: Ed25519PrivateKey, sha256_hex: str) -> str:
    return base64.b64encode(private.sign(b"watchkeeper-model-v1\n" + sha256_hex.encode("ascii"))).decode()


class Gateway:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.tamper_models = False  # flip a byte of every model file passed on
        self.forge_signatures = False  # replace the signature in every serving document with another key's
        self.served_models = 0
        self.deprecated_paths: list[str] = []  # requests the server answered with a Deprecation header
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
        if self._server is not None:
            self.down()


class _Handler(BaseHTTPRequestHandler):
    owner: Gateway
    protocol_version = "HTTP/1.0"

    def log_message(self, format, *args):  # quiet
        pass

    def do_GET(self):
        self._forward()

    def do_POST(self):
        self._forward()

    def _forward(self) -> None:
        gateway = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = gateway._pool.request(self.command, gateway.upstream + self.path, body=body, headers=headers,
                                         redirect=False, timeout=urllib3.Timeout(connect=5, read=90))
        status, data = upstream.status, upstream.data
        path = urlsplit(self.path).path
        if "Deprecation" in upstream.headers:
            gateway.deprecated_paths.append(f"{self.command} {path}")
        if SERVING.match(path) and status == 200:
            document = json.loads(data)
            # The model URL names the live server: the client fetches it through here too.
            document["model"]["url"] = document["model"]["url"].replace(gateway.upstream, gateway.url)
            if gateway.forge_signatures:
                document["model"]["signature"] = signature_of(Ed25519PrivateKey.generate(), document["model"]["sha256"])
            data = json.dumps(document).encode()
        if MODEL.match(path) and status == 200:
            gateway.served_models += 1
            if gateway.tamper_models:
                data = data[:-1] + bytes([data[-1] ^ 0x01])
        self.send_response(status)
        for name, value in upstream.headers.items():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
