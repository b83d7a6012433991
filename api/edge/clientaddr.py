"""The client's address, for what the API keys by it (the brake on failed authentications,
api/edge/throttle.py).

It is the TCP peer's address, unless the peer is one of the reverse proxies the operator named in
RXLEDGER_TRUSTED_PROXIES (IP addresses or CIDR networks). For a trusted peer, X-Forwarded-For is read
from the right: each trusted proxy appends the address it was connected from, so the right-most entry
that is not itself a trusted proxy is the first hop nobody trusted, the client. Everything to the left
of it is whatever the client chose to send. Entries that are not IP addresses are skipped. Without
trusted proxies (the default) no header is believed at all.

The peer address must be the socket's. uvicorn's --proxy-headers (on by default) would replace it
with X-Forwarded-For whenever the peer is 127.0.0.1, so every place that starts the API turns that
off: `server_config` in api/up.py, `--no-proxy-headers` in docker-compose.yml (docs/SECURITY.md,
"Client addresses and the throttle")."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from functools import lru_cache

from starlette.requests import HTTPConnection

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN = "unknown"  # no peer address at all (an ASGI server that reports none)


def _address(text: str) -> IPAddress | None:
    """An IP address from a peer or header entry: bare, `v4:port`, `[v6]` or `[v6]:port`; IPv4-mapped
    IPv6 as IPv4 (one client, one key). None for anything else."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 with a port (IPv6 has at least two colons)
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=16)
def trusted_networks(proxies: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """The configured proxies as networks, parsed once per configuration. A malformed entry is
    logged and trusts nothing (the safe side: its clients share the proxy's address)."""
    networks: list[IPNetwork] = []
    for entry in proxies:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            log.error("RXLEDGER_TRUSTED_PROXIES: %r is not an IP address or network; ignored", entry)
    return tuple(networks)


def _trusted(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def resolve(peer: str | None, forwarded_for: Iterable[str], networks: tuple[IPNetwork, ...]) -> str:
    """The client address, from the TCP peer and the X-Forwarded-For header values (in order)."""
    if not peer:
        return UNKNOWN
    peer_address = _address(peer)
    if peer_address is None:  # not an IP peer (a Unix socket path, a test client's name)
        return peer
    client = peer_address
    if _trusted(peer_address, networks):
        entries = [entry for value in forwarded_for for entry in value.split(",")]
        for entry in reversed(entries):
            address = _address(entry)
            if address is None:
                continue
            client = address
            if not _trusted(address, networks):
                break
        # every entry a trusted proxy (or none at all): the left-most of them is as far as we know
    return str(client)


def client_address(request: HTTPConnection) -> str:
    """The address to key the request's client by (see the module's docstring)."""
    proxies = tuple(request.app.state.settings.trusted_proxies)
    peer = request.client.host if request.client else None
    return resolve(peer, request.headers.getlist("x-forwarded-for"), trusted_networks(proxies))
