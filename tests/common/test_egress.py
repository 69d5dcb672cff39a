"""The egress policy's address table: public passes; every private, translated, multicast,
unspecified or metadata range is refused unless an allow-listed CIDR holds it."""

from __future__ import annotations

import ipaddress

import pytest

from jobs_common.egress import EgressPolicy, parse_networks

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "not a public address"),
    ("172.16.0.1", "not a public address"),
    ("192.168.1.1", "not a public address"),
    ("fc00::1", "not a public address"),
    ("100.64.0.1", "shared address space"),
    ("169.254.169.254", "link-local, the cloud metadata service"),
    ("fd00:ec2::254", "the cloud metadata service"),
    ("0.0.0.0", "the unspecified network"),
    ("::", "the unspecified address"),
    ("::ffff:8.8.8.8", "IPv4-mapped IPv6"),  # a public address, but reached by translation
    ("::ffff:127.0.0.1", "IPv4-mapped IPv6"),
    ("64:ff9b::7f00:1", "NAT64"),
    ("2002:7f00:1::1", "6to4"),
    ("2001:0:4136:e378::1", "Teredo"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("fe80::1", "link-local"),
    ("192.0.2.1", "not a public address"),  # documentation
    ("255.255.255.255", "not a public address"),
]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_non_public_addresses_are_refused_with_their_reason(address: str, why: str):
    refusal = EgressPolicy().refusal(ipaddress.ip_address(address))
    assert refusal is not None
    assert why in refusal


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "2606:4700::1111"])
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
