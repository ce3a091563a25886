"""The client reads a 503's Retry-After (the server sends one while its database is out of reach)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from watchkeeper_client.errors import Unreachable
from watchkeeper_client.transport import Transport


@pytest.fixture
def busy_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = b'{"status": 503, "detail": "The database is briefly unavailable"}'
            self.send_response(503)
            self.send_header("Content-Type", "application/problem+json")
            self.send_header("Retry-After", self.path.rsplit("/", 1)[-1])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("soon", None)])
def test_a_503_is_worth_retrying_after_the_seconds_the_server_asked_for(busy_server, header, seconds):
    transport = Transport(busy_server, "wk_x_y")
    # Retry-After may also be an HTTP date; the server sends seconds, so anything else is read as "not said".
    with pytest.raises(Unreachable) as raised:
        transport.request("POST", f"/api/v1/predictions/{header}", body=b"{}")
    assert raised.value.retry_after == seconds
    assert "briefly unavailable" in str(raised.value)
