"""Which addresses a job may call (the SSRF guard), shared by CreateJob's check and the worker.

The refused set is written out, not left to Python's ``is_global`` (which passes ``::127.0.0.1``,
``::ffff:0:127.0.0.1``, site-local ``fec0::/10`` and the newer documentation and SRv6 ranges):

* every range of the IANA IPv4 and IPv6 Special-Purpose Address Registries that is not globally
  reachable, or whose use a target has no business with (deprecated, documentation,
  benchmarking, translation), and multicast;
* for IPv6, everything outside global unicast (``2000::/3``), which IANA has not allocated;
* every address that embeds an IPv4 address (IPv4-mapped, IPv4-compatible, SIIT, NAT64, 6to4,
  Teredo, ISATAP) whose IPv4 address is refused, named as such; the translated ranges are
  refused as a whole too, since a gateway turns them into IPv4 calls.

An address an allow-listed CIDR holds passes, whatever it is. A host name on the host allow-list
passes whatever it resolves to (the operator vouches for it). The worker checks every address a
name resolves to, and the one it connects to.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["REFUSED_NETWORKS", "EgressPolicy", "IpAddress", "embedded_ipv4", "parse_networks"]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# (CIDR, why), most specific first where ranges nest, so the reason names the narrower one.
REFUSED_NETWORKS: tuple[tuple[_Network, str], ...] = tuple(
    (ipaddress.ip_network(cidr), why)
    for cidr, why in (
        # IANA IPv4 Special-Purpose Address Registry (RFC 6890 and its updates).
        ("0.0.0.0/8", "the unspecified network ('this network', RFC 791)"),
        ("10.0.0.0/8", "private (RFC 1918)"),
        ("100.64.0.0/10", "shared address space (carrier-grade NAT, RFC 6598)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local, the cloud metadata service"),
        ("172.16.0.0/12", "private (RFC 1918)"),
        ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
        ("192.0.2.0/24", "documentation (TEST-NET-1)"),
        ("192.88.99.0/24", "the deprecated 6to4 relay anycast (RFC 7526)"),
        ("192.168.0.0/16", "private (RFC 1918)"),
        ("198.18.0.0/15", "benchmarking (RFC 2544)"),
        ("198.51.100.0/24", "documentation (TEST-NET-2)"),
        ("203.0.113.0/24", "documentation (TEST-NET-3)"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "the limited broadcast address"),
        ("240.0.0.0/4", "reserved (RFC 1112)"),
        # IANA IPv6 Special-Purpose Address Registry (RFC 6890 and its updates).
        ("::1/128", "loopback"),
        ("::/128", "the unspecified address"),
        ("::ffff:0:0/96", "IPv4-mapped IPv6"),
        ("::ffff:0:0:0/96", "IPv4-translated IPv6 (SIIT, RFC 2765)"),
        ("::/96", "IPv4-compatible IPv6 (deprecated, RFC 4291)"),
        ("64:ff9b::/96", "NAT64 (RFC 6052)"),
        ("64:ff9b:1::/48", "local-use NAT64 (RFC 8215)"),
        ("100::/64", "discard-only (RFC 6666)"),
        ("100:0:0:1::/64", "the dummy prefix (RFC 9780)"),
        ("2001::/32", "Teredo"),
        ("2001::/23", "IETF protocol assignments (RFC 2928)"),
        ("2001:db8::/32", "documentation (RFC 3849)"),
        ("2002::/16", "6to4"),
        ("3fff::/20", "documentation (RFC 9637)"),
        ("5f00::/16", "SRv6 SIDs (RFC 9602)"),
        ("fd00:ec2::254/128", "the cloud metadata service"),
        ("fc00::/7", "unique local (RFC 4193)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated, RFC 3879)"),
        ("ff00::/8", "multicast"),
    )
)
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_UNSPECIFIED_AND_LOOPBACK = ipaddress.ip_network("::/127")
# Forms that carry the IPv4 address in their last 32 bits: mapped, SIIT, compatible, NAT64.
_LOW32_FORMS = tuple(
    ipaddress.IPv6Network(prefix)
    for prefix in ("::ffff:0:0/96", "::ffff:0:0:0/96", "::/96", "64:ff9b::/96", "64:ff9b:1::/96")
)
_6TO4 = ipaddress.IPv6Network("2002::/16")
_ISATAP_IDS = (0x00005EFE, 0x02005EFE)  # the interface identifier's upper half (RFC 5214)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, in any of the forms that embed one: IPv4-mapped
    and -compatible, SIIT, NAT64 (/96 forms), 6to4, Teredo (the client's, de-obfuscated) and
    ISATAP."""
    value = int(address)
    low32 = ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if any(address in form for form in _LOW32_FORMS):
        return low32
    if address in _6TO4:
        return ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF)
    if address.teredo is not None:
        return address.teredo[1]
    if (value >> 32) & 0xFFFFFFFF in _ISATAP_IDS:
        return low32
    return None


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
        if self._allowed(address):
            return None
        why = _refused_range(address)
        if isinstance(address, ipaddress.IPv6Address):
            inner = embedded_ipv4(address) if address not in _UNSPECIFIED_AND_LOOPBACK else None
            if inner is not None and not self._allowed(inner) and (inner_why := _refused_range(inner)) is not None:
                embeds = f"it embeds {inner}, {inner_why}"
                return f"{why}: {embeds}" if why is not None else embeds
            if why is None and address not in _GLOBAL_UNICAST:
                return "not a public address (IPv6 outside global unicast 2000::/3)"
        return why

    def _allowed(self, address: IpAddress) -> bool:
        return any(address in network for network in self.allowed_networks if network.version == address.version)

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


def _refused_range(address: IpAddress) -> str | None:
    for network, why in REFUSED_NETWORKS:
        if network.version == address.version and address in network:
            return why
    return None
