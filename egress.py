"""Outbound requests to places a requester chose (a webhook, a registry, a git host): never to this
instance, its private network or the cloud's metadata service, unless the function allows it.

A request, or a project's fcbuild.json, names these URLs; the runtime (or a tool it runs as root)
then connects with the function's network position. Every address the name resolves to must be a
global one: loopback, private, link-local, shared (100.64.0.0/10, where Alibaba Cloud's metadata
service at 100.100.100.200 lives), multicast and reserved addresses are refused, unless they fall in
`FCBUILD_ALLOW_PRIVATE_NETS` (a registry mirror in the VPC, the tests' local servers).

The check resolves the name when it is asked; a name whose answer changes between the check and
the connection (DNS rebinding) is not caught for the tools the runtime starts (git, corepack).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from errors import AccessDenied, InvalidRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SCHEMES = ("http", "https")


def parse_networks(raw: str, name: str = "FCBUILD_ALLOW_PRIVATE_NETS") -> tuple[Network, ...]:
    """`10.0.0.0/8,127.0.0.1`: networks or single addresses. ValueError names the bad entry."""
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{name}: {item!r} is not an address or a network (10.0.0.0/8)") from None
    return tuple(networks)


def check_url(url: str, what: str, allowed: Iterable[Network] = (), *, resolve: bool = True) -> None:
    """Raise AccessDenied when `url` (named by a requester, as `what`) leads to an address it may not
    reach, InvalidRequest when it is not an http(s) URL. A name that does not resolve passes: the
    connection fails on its own."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise InvalidRequest(f"{what}: expected an http(s) URL, got {url[:80]!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidRequest(f"{what}: bad port in {url[:80]!r}") from None
    for address in addresses(parts.hostname, port, resolve=resolve):
        refusal = why_refused(address, allowed)
        if refusal:
            raise AccessDenied(
                f"{what}: {parts.hostname} is {refusal} ({address}), which a request may not reach from the "
                "function; FCBUILD_ALLOW_PRIVATE_NETS allows it"
            )


def addresses(host: str, port: int, *, resolve: bool = True) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    if not resolve:
        return []
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return sorted({str(info[4][0]).split("%", 1)[0] for info in found})


def why_refused(address: str, allowed: Iterable[Network] = ()) -> str:
    """ "" when `address` is a global one (or allowed), else what kind of address it is."""
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    if any(ip.version == net.version and ip in net for net in allowed):
        return ""
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_unspecified:
        return "this host (unspecified address)"
    if ip.is_link_local:
        return "a link-local address"
    if ip.version == 4 and ip in ipaddress.ip_network("100.64.0.0/10"):
        return "a shared address (the cloud's metadata service lives there)"
    if ip.is_private:
        return "a private address"
    if ip.is_multicast or ip.is_reserved or not ip.is_global:
        return "not a public address"
    return ""
