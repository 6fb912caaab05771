"""Where a webhook may go: public addresses, and the networks the operator allows.

A managers file names webhook URLs; without a guard the notifier would POST signed
alert data to whatever such a URL points at, including the machine's own services
(127.0.0.1, a cloud metadata endpoint on 169.254.169.254, the database on a private
address). So a webhook host is checked where it is connected to: the HTTP session's
resolver (:class:`GuardedResolver`) refuses a name that resolves to a non-public
address, and the connection goes only to the addresses it checked, so a name that
resolves to a public address when checked and to 127.0.0.1 a moment later (DNS
rebinding) gains nothing. IP-literal hosts, which never reach a resolver, are checked
by :func:`check_url` before the request.

Non-public: loopback, link-local (169.254/16, fe80::/10), unspecified (0.0.0.0, ::),
private (10/8, 172.16/12, 192.168/16, fc00::/7, 100.64/10), multicast, reserved and
documentation ranges, and IPv4-mapped IPv6 forms of all of them.
``notify_webhook_allow_networks`` lists networks allowed all the same.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from aiohttp.abc import AbstractResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(OSError):
    """A webhook host is (or resolves to) an address that is not allowed."""


def _kind(a: IPAddress) -> str | None:
    """Why ``a`` is not a public unicast address, or None if it is one."""
    for kind, test in (("unspecified", a.is_unspecified), ("loopback", a.is_loopback),
                       ("link-local", a.is_link_local), ("multicast", a.is_multicast),
                       ("private", a.is_private), ("reserved", a.is_reserved)):
        if test:
            return kind
    return None if a.is_global else "special-purpose"


@dataclass(frozen=True)
class AddressPolicy:
    allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def from_settings(cls, s) -> "AddressPolicy":
        parts = [p.strip() for p in s.notify_webhook_allow_networks.split(",")]
        return cls(tuple(ipaddress.ip_network(p, strict=False) for p in parts if p))

    def refusal(self, ip: str) -> str | None:
        """The reason ``ip`` may not be connected to, or None if it may."""
        a: IPAddress = ipaddress.ip_address(ip.split("%", 1)[0])  # fe80::1%eth0
        if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
            a = a.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        if any(a.version == n.version and a in n for n in self.allowed):
            return None
        kind = _kind(a)
        if kind is None:
            return None
        return (f"webhook address {a} is {kind} (not public); allow its network in "
                f"METERWATCH_NOTIFY_WEBHOOK_ALLOW_NETWORKS if it is meant")

    def check_ip_host(self, host: str | None) -> None:
        """Raise :class:`AddressRefused` if ``host`` is an IP literal not allowed."""
        try:
            reason = self.refusal((host or "").strip("[]"))
        except ValueError:
            return  # a name: the resolver checks what it resolves to
        if reason:
            raise AddressRefused(reason)


def check_url(policy: AddressPolicy, url: str) -> None:
    """Raise :class:`AddressRefused` if ``url``'s host is a refused IP literal."""
    from yarl import URL

    policy.check_ip_host(URL(url).raw_host)


def resolve_and_check(policy: AddressPolicy, url: str) -> list[str]:
    """Every address ``url``'s host resolves to now, checked (for ``notify check``).
    Raises AddressRefused, or OSError if the name does not resolve."""
    from yarl import URL

    u = URL(url)
    policy.check_ip_host(u.raw_host)
    infos = socket.getaddrinfo(u.raw_host or "", u.port or 443, type=socket.SOCK_STREAM)
    addrs = sorted({i[4][0] for i in infos})
    for ip in addrs:
        reason = policy.refusal(ip)
        if reason:
            raise AddressRefused(reason)
    return addrs


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that answers only with allowed addresses: a name with any
    refused address is refused whole (:class:`AddressRefused`)."""

    def __init__(self, policy: AddressPolicy) -> None:
        from aiohttp.resolver import DefaultResolver

        self.policy = policy
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[dict[str, Any]]:
        infos = await self._inner.resolve(host, port, family)
        for info in infos:
            reason = self.policy.refusal(info["host"])
            if reason:
                raise AddressRefused(reason)
        return infos

    async def close(self) -> None:
        await self._inner.close()
