"""Which addresses a client-given URL may reach: the guard of every server-side fetch.

A URL from a client is hostile until checked: http(s) only, and every address its host resolves
to must be public (not loopback, private, link-local, multicast, reserved, unspecified or a
cloud metadata address) unless an operator allow-listed it (TTS_FETCH_ALLOW_CIDRS). The API
checks a `voice_url` at submission, for a clear 400; the worker checks again when it fetches,
and connects to the very address it checked.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]
#: Metadata services answer on link-local addresses (covered) and on these.
METADATA = [ipaddress.ip_network("fd00:ec2::254/128"), ipaddress.ip_network("100.100.100.200/32")]


class Refused(ValueError):
    """The URL may not be fetched; the message says why, naming its host."""


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def parse_cidrs(text: str | None) -> list[IPNetwork]:
    cidrs = [c.strip() for c in (text or "").split(",")]
    return [ipaddress.ip_network(c, strict=False) for c in cidrs if c]


def address_allowed(address: str, allow: Sequence[IPNetwork]) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in allow):
        return True
    blocked = (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or any(ip in net for net in METADATA)
    )
    return not blocked


def checked_addresses(
    url: str, allow: Sequence[IPNetwork], resolver: Resolver = resolve
) -> tuple[str, int, list[str]]:
    """The URL's host, port and resolved addresses, all allowed; else `Refused`.

    An `OSError` from the resolver (no such name, DNS down) is left to the caller.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"only http(s) URLs can be fetched, not {parts.scheme or 'this'}:")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = resolver(parts.hostname, port)
    refused = [a for a in addresses if not address_allowed(a, allow)]
    if refused or not addresses:
        raise Refused(
            f"{parts.hostname} resolves to {', '.join(refused) or 'nothing'}, not a public "
            "address (an operator may allow it with TTS_FETCH_ALLOW_CIDRS)"
        )
    return parts.hostname, port, addresses


@dataclass(frozen=True)
class Pinned:
    """Where to connect for a checked URL: its first checked address, with the host's name
    kept for the Host header and for TLS (SNI and the certificate check)."""

    url: str
    host_header: str
    server_name: str


def pin(url: str, allow: Sequence[IPNetwork], resolver: Resolver = resolve) -> Pinned:
    """`checked_addresses`, then the URL to connect to, so a DNS answer that changes between
    the check and the connection cannot send the request elsewhere."""
    parts = urlsplit(url)
    server_name, port, addresses = checked_addresses(url, allow, resolver)
    ip = addresses[0]
    netloc = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    return Pinned(
        url=parts._replace(netloc=netloc).geturl(),
        host_header=parts.netloc.rsplit("@", 1)[-1],
        server_name=server_name,
    )
