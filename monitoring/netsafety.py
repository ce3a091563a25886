"""Outbound URLs that a user typed (webhooks, Slack, Apprise) must not reach inside our network (SSRF).

A URL is resolved and refused if any address it resolves to is loopback, private, link-local (the cloud
metadata service at 169.254.169.254 among them), multicast, reserved or unspecified. Checked when the channel is
saved and again right before each send, and the sender connects to the address checked here, so a DNS answer that
changes in between (rebinding) cannot redirect it. `allow_private` (settings.ALERT_ALLOW_PRIVATE_URLS) lets
local receivers through, for tests and the demo. No Django here.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

ALLOWED_SCHEMES = {"http", "https"}


class UnsafeURL(ValueError):
    pass


@dataclass(frozen=True)
class CheckedURL:
    url: str
    scheme: str
    host: str
    port: int
    address: str  # the IP the sender connects to


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not (
        address.is_loopback or address.is_private or address.is_link_local or address.is_multicast
        or address.is_reserved or address.is_unspecified or not address.is_global
    )


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL(f"The host {host!r} does not resolve: {exc}.") from None
    return sorted({str(info[4][0]) for info in infos})


def check_url(url: str, *, allow_private: bool) -> CheckedURL:
    """The URL, with the address to connect to; UnsafeURL if it is malformed or points inside the network."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ALLOWED_SCHEMES:
        raise UnsafeURL("The URL must start with https:// (or http://).")
    if not parts.hostname:
        raise UnsafeURL("The URL has no host.")
    if parts.username or parts.password:
        raise UnsafeURL("Put no user name or password in the URL; webhooks are signed instead.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeURL("The URL's port is not a number between 0 and 65535.") from None
    return check_host(parts.hostname, port, scheme=parts.scheme, url=url.strip(), allow_private=allow_private)


def check_host(host: str, port: int, *, scheme: str = "https", url: str = "", allow_private: bool) -> CheckedURL:
    addresses = resolve(host, port)
    if not addresses:
        raise UnsafeURL(f"The host {host!r} does not resolve.")
    if not allow_private:
        for raw in addresses:
            if not _is_public(ipaddress.ip_address(raw.split("%", 1)[0])):
                raise UnsafeURL(
                    f"The host {host!r} resolves to {raw}, an address inside the network (loopback, private, "
                    "link-local or reserved); notifications only go to public addresses."
                )
    return CheckedURL(url=url, scheme=scheme, host=host, port=port, address=addresses[0])
