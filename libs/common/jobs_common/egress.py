"""Which addresses a job may call (the SSRF guard), shared by CreateJob's check and the worker.

An address passes when an allow-listed CIDR holds it, or when it is public: ``is_global`` and
none of the ranges below, which either reach private networks through a translation (NAT64,
6to4, Teredo, IPv4-mapped IPv6), are not unicast, or are a cloud's metadata service. A host name
on the host allow-list passes whatever it resolves to (the operator vouches for it). Everything
else is refused: loopback, private, link-local, shared (100.64/10), reserved ranges.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["EgressPolicy", "IpAddress", "parse_networks"]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_ALWAYS_REFUSED: tuple[tuple[_Network, str], ...] = tuple(
    (ipaddress.ip_network(cidr), why)
    for cidr, why in (
        ("0.0.0.0/8", "the unspecified network"),
        ("100.64.0.0/10", "shared address space (carrier-grade NAT)"),
        ("169.254.0.0/16", "link-local, the cloud metadata service"),
        ("::/128", "the unspecified address"),
        ("::ffff:0:0/96", "IPv4-mapped IPv6"),
        ("64:ff9b::/96", "NAT64"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("2002::/16", "6to4"),
        ("2001::/32", "Teredo"),
        ("fd00:ec2::254/128", "the cloud metadata service"),
        ("fe80::/10", "link-local"),
    )
)


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """``allowed_networks``: CIDRs callable even though not public (e.g. 127.0.0.0/8 in
    development); ``allowed_hosts``: names (``api.internal``) or suffixes (``.svc.cluster.local``)
    callable whatever they resolve to."""

    allowed_networks: tuple[_Network, ...] = ()
    allowed_hosts: tuple[str, ...] = ()

    def host_is_trusted(self, host: str) -> bool:
        name = host.rstrip(".").lower()
        return any(name == entry or (entry.startswith(".") and name.endswith(entry)) for entry in self.allowed_hosts)

    def refusal(self, address: IpAddress) -> str | None:
        """Why ``address`` may not be called ("loopback"), or None when it may."""
        if any(address in network for network in self.allowed_networks if network.version == address.version):
            return None
        for network, why in _ALWAYS_REFUSED:
            if network.version == address.version and address in network:
                return why
        if address.is_multicast:
            return "multicast"
        if address.is_loopback:
            return "loopback"
        if not address.is_global:
            return "not a public address"
        return None

    @classmethod
    def from_settings(cls, networks: str, hosts: str) -> EgressPolicy:
        names = tuple(entry.strip().lower().rstrip(".") for entry in hosts.split(",") if entry.strip())
        return cls(parse_networks(networks), tuple(f".{n[2:]}" if n.startswith("*.") else n for n in names))


def parse_networks(text: str) -> tuple[_Network, ...]:
    """``"127.0.0.0/8, ::1"`` → networks; a bad entry raises ValueError naming it."""
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not a CIDR (a.b.c.d/n or an IPv6 prefix)") from None
    return tuple(networks)
