"""The egress policy's address table: public passes; every private, translated, multicast,
unspecified or metadata range is refused unless an allow-listed CIDR holds it."""

from __future__ import annotations

import ipaddress

import pytest

from jobs_common.egress import REFUSED_NETWORKS, EgressPolicy, parse_networks

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "unique local"),
    ("100.64.0.1", "shared address space"),
    ("169.254.169.254", "link-local, the cloud metadata service"),
    ("fd00:ec2::254", "the cloud metadata service"),
    ("0.0.0.0", "the unspecified network"),
    ("::", "the unspecified address"),
    ("::ffff:8.8.8.8", "IPv4-mapped IPv6"),  # a public address, but reached by translation
    ("::ffff:127.0.0.1", "IPv4-mapped IPv6: it embeds 127.0.0.1, loopback"),
    ("64:ff9b::7f00:1", "NAT64 (RFC 6052): it embeds 127.0.0.1, loopback"),
    ("2002:7f00:1::1", "6to4: it embeds 127.0.0.1, loopback"),
    ("2001:0:4136:e378::1", "Teredo"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("fe80::1", "link-local"),
    ("192.0.2.1", "documentation"),
    ("255.255.255.255", "the limited broadcast address"),
    # What Python's is_global let through (issue 18, finding 5).
    ("::127.0.0.1", "IPv4-compatible IPv6 (deprecated, RFC 4291): it embeds 127.0.0.1, loopback"),
    ("::169.254.169.254", "it embeds 169.254.169.254, link-local, the cloud metadata service"),
    ("::ffff:0:7f00:1", "IPv4-translated IPv6 (SIIT, RFC 2765): it embeds 127.0.0.1, loopback"),
    ("64:ff9b:1::a9fe:a9fe", "local-use NAT64 (RFC 8215): it embeds 169.254.169.254"),
    ("2600::5efe:7f00:1", "it embeds 127.0.0.1, loopback"),  # ISATAP, in a global prefix
    ("2600::200:5efe:a9fe:a9fe", "it embeds 169.254.169.254"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "it embeds 127.0.0.1, loopback"),  # Teredo's client, obfuscated
    ("fec0::1", "site-local"),
    ("3fff::1", "documentation (RFC 9637)"),
    ("5f00::1", "SRv6 SIDs"),
    ("192.88.99.1", "the deprecated 6to4 relay anycast"),
    ("192.0.0.9", "IETF protocol assignments"),
    ("2001:1::1", "IETF protocol assignments"),
    ("100::1", "discard-only"),
    ("4000::1", "outside global unicast 2000::/3"),
    ("8000::1", "outside global unicast 2000::/3"),
]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_non_public_addresses_are_refused_with_their_reason(address: str, why: str):
    refusal = EgressPolicy().refusal(ipaddress.ip_address(address))
    assert refusal is not None
    assert why in refusal


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "2001:4860:4860::8888",
        "2606:4700::1111",
        "2600::5efe:808:808",  # ISATAP form embedding a public address
        "192.31.196.1",  # AS112: globally reachable in the registry
        "2001:200::1",  # just past 2001::/23
        "223.255.255.255",  # just below multicast
        "3fff:1000::1",  # just past 3fff::/20
    ],
)
def test_public_addresses_pass(address: str):
    assert EgressPolicy().refusal(ipaddress.ip_address(address)) is None


def test_an_allow_listed_network_passes_and_nothing_beside_it():
    policy = EgressPolicy.from_settings("127.0.0.0/8, 10.20.0.0/16", "")
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("10.20.3.4")) is None
    assert policy.refusal(ipaddress.ip_address("10.21.0.1")) is not None
    assert policy.refusal(ipaddress.ip_address("::1")) is not None
    # An IPv4 allow-list entry does not open the IPv4-mapped spelling of the same address.
    assert policy.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is not None


def test_allowed_hosts_are_exact_names_or_star_suffixes():
    policy = EgressPolicy.from_settings("", "api.internal, *.svc.cluster.local")
    assert policy.host_is_trusted("api.internal")
    assert policy.host_is_trusted("API.internal.")
    assert policy.host_is_trusted("jobs.default.svc.cluster.local")
    assert not policy.host_is_trusted("svc.cluster.local")
    assert not policy.host_is_trusted("evil-api.internal")
    assert not policy.host_is_trusted("api.internal.evil.com")


def test_a_malformed_network_is_named():
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33'"):
        parse_networks("127.0.0.0/8,10.0.0.0/33")


@pytest.mark.parametrize(("network", "why"), REFUSED_NETWORKS, ids=[str(network) for network, _ in REFUSED_NETWORKS])
def test_every_registry_range_is_refused_from_its_first_address_to_its_last(network, why: str):
    """The IANA special-purpose registries' ranges, one test each: the first, a middle and the
    last address are refused, and the range's own reason (or a narrower range's inside it) is
    given."""
    policy = EgressPolicy()
    middle = network.network_address + network.num_addresses // 2
    narrower = {w for n, w in REFUSED_NETWORKS if n.version == network.version and n.subnet_of(network)}
    for address in (network.network_address, middle, network.broadcast_address):
        refusal = policy.refusal(address)
        assert refusal is not None, address
        assert any(reason in refusal for reason in narrower), (address, refusal)
