"""A real webhook receiver on loopback: verifies every delivery with `standardwebhooks`, and
refuses the first N attempts of each message with a chosen answer (503 by default)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool
    answered: int
    payload: Any = None


@dataclass
class Receiver:
    secret: str = ""
    refuse_first: int = 0
    refuse_with: int = 503
    extra_headers: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                payload, verified = None, False
                try:
                    payload = Webhook(receiver.secret).verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    verified = False
                with receiver._lock:
                    seen = sum(
                        1
                        for r in receiver.received
                        if r.headers["webhook-id"] == headers.get("webhook-id")
                    )
                    code = receiver.refuse_with if seen < receiver.refuse_first else 200
                    if not verified:
                        code = 401
                    receiver.received.append(Received(headers, body, verified, code, payload))
                self.send_response(code)
                for name, value in receiver.extra_headers.items() if code != 200 else ():
                    self.send_header(name, value)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def accepted(self, event: str | None = None) -> list[Received]:
        with self._lock:
            return [
                r
                for r in self.received
                if r.answered == 200 and (event is None or r.payload["type"] == event)
            ]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def body_json(received: Received) -> Any:
    return json.loads(received.body)
