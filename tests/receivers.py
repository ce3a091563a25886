"""Real receivers on 127.0.0.1 for the alert delivery tests: an HTTP server (webhooks, Slack) and an SMTP server
(aiosmtpd). They record what arrives; the HTTP one answers with the statuses a test queues."""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """Answers each POST with the next queued (status, headers), or 200 once the queue is empty."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    answers: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    down: bool = False  # answer 503 to everything while True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.received]


def start_http_receiver() -> HttpReceiver:
    holder: dict[str, HttpReceiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            receiver = holder["r"]
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if receiver.down:
                status, headers = 503, {}
            else:
                status, headers = receiver.answers.popleft() if receiver.answers else (200, {})
                if status < 300:
                    receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["r"] = HttpReceiver(server=server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return holder["r"]


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.original_content))
        self.envelopes.append(list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


@dataclass
class SmtpReceiver:
    controller: Controller
    mailbox: _Mailbox

    @property
    def port(self) -> int:
        return int(self.controller.port)


def start_smtp_receiver() -> SmtpReceiver:
    mailbox = _Mailbox()
    with socket.socket() as probe:  # a free port: aiosmtpd connects to its own port to know it is up
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    return SmtpReceiver(controller=controller, mailbox=mailbox)
