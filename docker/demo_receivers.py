"""`make demo`'s local alert receivers: a mail catcher (aiosmtpd) and a webhook receiver that checks each
request's Standard Webhooks signature. What arrives is printed (var/log/receivers.log) and kept:
var/mail/<n>.eml for mail, var/webhooks/<webhook-id>.json for webhooks (a redelivery overwrites its own file).

    python docker/demo_receivers.py --smtp-port 1025 --http-port 8025 --secret-file var/demo-webhook-secret
"""

from __future__ import annotations

import argparse
import json
import time
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiosmtpd.controller import Controller
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

ROOT = Path(__file__).resolve().parent.parent


class MailCatcher:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server, session, envelope) -> str:
        n = len(list(self.folder.glob("*.eml"))) + 1
        (self.folder / f"{n:04d}.eml").write_bytes(envelope.original_content)
        message = message_from_bytes(envelope.original_content)
        print(f"[mail] to {', '.join(envelope.rcpt_tos)}: {message['Subject']}  (var/mail/{n:04d}.eml)", flush=True)
        return "250 OK"


def webhook_handler(secret_file: Path, folder: Path) -> type[BaseHTTPRequestHandler]:
    folder.mkdir(parents=True, exist_ok=True)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                payload = Webhook(secret_file.read_text().strip()).verify(body, headers)
            except (WebhookVerificationError, OSError) as exc:
                print(f"[webhook] REFUSED ({exc})", flush=True)
                self.send_response(401)
                self.end_headers()
                return
            webhook_id = headers.get("webhook-id", "unknown")
            (folder / f"{webhook_id}.json").write_text(json.dumps(payload, indent=2))
            data = payload.get("data", {})
            print(f"[webhook] {payload.get('type')} {webhook_id}: {data.get('summary', '')}  (signature ok)", flush=True)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smtp-port", type=int, default=1025)
    parser.add_argument("--http-port", type=int, default=8025)
    parser.add_argument("--secret-file", type=Path, default=ROOT / "var" / "demo-webhook-secret")
    args = parser.parse_args()
    mail = Controller(MailCatcher(ROOT / "var" / "mail"), hostname="127.0.0.1", port=args.smtp_port)
    mail.start()
    server = ThreadingHTTPServer(("127.0.0.1", args.http_port), webhook_handler(args.secret_file, ROOT / "var" / "webhooks"))
    print(f"mail catcher on 127.0.0.1:{args.smtp_port}, webhook receiver on http://127.0.0.1:{args.http_port}/", flush=True)
    try:
        server.serve_forever()
    finally:
        mail.stop()
        time.sleep(0.1)


if __name__ == "__main__":
    main()
