"""Which addresses a completion callback (X-Callback-Url) may be delivered to.

A callback URL is chosen by whoever invokes, so without a policy the gateway
POSTs to any address it can reach: a cloud metadata service, a pod's sidecar.
The policy is a deny list of CIDRs with an allow list of exceptions; it is
checked once when the URL is given (a literal address is refused at once with
400 URL_NOT_ALLOWED) and again on every delivery, against every address the
host name resolves to then (a name that resolves to a denied address is not
called). Empty by default for `make up` (tests call 127.0.0.1); the cluster
overlay denies link-local and metadata addresses (docs/limits.md).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlNotAllowed(Exception):
    """str() says which address of which URL the policy refuses."""


class OutboundPolicy:
    def __init__(self, deny: Iterable[str] = (), allow: Iterable[str] = ()) -> None:
        self._deny: tuple[Network, ...] = tuple(ipaddress.ip_network(c, strict=False) for c in deny)
        self._allow: tuple[Network, ...] = tuple(ipaddress.ip_network(c, strict=False) for c in allow)

    @property
    def active(self) -> bool:
        return bool(self._deny)

    def allows(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in net for net in self._allow if net.version == address.version):
            return True
        return not any(address in net for net in self._deny if net.version == address.version)

    def check_literal(self, url: str) -> None:
        """Refuse a URL whose host is a denied address literal (no DNS: admission stays fast)."""
        if not self.active:
            return
        address = _literal(url)
        if address is not None and not self.allows(address):
            raise UrlNotAllowed(f"address {address} is not allowed by the outbound policy")

    async def check(self, url: str) -> None:
        """Refuse a URL any of whose host's addresses the policy denies (resolving names now)."""
        if not self.active:
            return
        self.check_literal(url)
        if _literal(url) is not None:
            return
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, parts.port or 80, type=socket.SOCK_STREAM
            )
        except OSError:
            return  # unresolvable: the delivery itself fails and is retried as usual
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if not self.allows(address):
                raise UrlNotAllowed(f"{host} resolves to {address}, which the outbound policy denies")


def _literal(url: str) -> Address | None:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return None
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@functools.lru_cache(maxsize=8)
def policy_for(deny: tuple[str, ...], allow: tuple[str, ...]) -> OutboundPolicy:
    """One policy object per configuration (the settings hold only the CIDR strings)."""
    return OutboundPolicy(deny, allow)
