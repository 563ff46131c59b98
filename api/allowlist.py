"""An optional client IP allow-list (TTS_ALLOWED_CIDRS), for an API on the public internet.

The client's address is the connection's, unless that connection comes from a trusted proxy
(TTS_TRUSTED_PROXIES): then the rightmost `X-Forwarded-For` address that is not itself a
trusted proxy. A client outside the list gets `403 forbidden`, on every route.
"""

from __future__ import annotations

import ipaddress
import json

from starlette.types import ASGIApp, Receive, Scope, Send

from common.netguard import IPNetwork


def client_address(scope: Scope, trusted: list[IPNetwork]) -> str | None:
    client = scope.get("client")
    if not client:
        return None
    peer = str(client[0])
    hops = [peer]
    if _within(peer, trusted):
        for name, value in scope.get("headers", []):
            if name == b"x-forwarded-for":
                hops = [h.strip() for h in value.decode("latin-1").split(",") if h.strip()] + hops
    for hop in reversed(hops):
        if not _within(hop, trusted):
            return hop
    return hops[0]


def _within(address: str, nets: list[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in nets)


class AllowList:
    def __init__(self, app: ASGIApp, *, allowed: list[IPNetwork], trusted: list[IPNetwork]) -> None:
        self.app, self.allowed, self.trusted = app, allowed, trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.allowed:
            address = client_address(scope, self.trusted)
            if address is None or not _within(address, self.allowed):
                body = json.dumps(
                    {"error": {"code": "forbidden", "message": "this address may not use the API"}}
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 403,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
