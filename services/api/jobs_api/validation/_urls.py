"""Checks of a job's URL at create: its form, and the addresses the egress policy can never allow.

Names are checked again when they are resolved, at send time (the worker's egress guard); here a
URL that could never pass is refused before it is stored.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from jobs_common.egress import EgressPolicy

__all__ = ["check_url"]

# The ``bad(path, description)`` callback that collects violations.
Bad = Callable[[str, str], None]
# Whitespace (str.isspace's, as re's \s for str patterns) and C0 control characters and DEL.
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


def check_url(url: str, max_length: int, policy: EgressPolicy, bad: Bad) -> None:
    path = "http_request.url"
    if not url:
        bad(path, "is required")
        return
    if len(url) > max_length:
        bad(path, f"is {len(url)} characters; the limit is {max_length}")
        return
    if _SPACE_OR_CONTROL.search(url):
        bad(path, "must not contain whitespace or control characters")
        return
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        bad(path, f"is not a valid URL: {exc}")
        return
    if parts.scheme not in ("http", "https"):
        bad(path, "scheme must be http or https")
    elif not parts.hostname:
        bad(path, "must name a host")
    elif port == 0:
        bad(path, "port must be between 1 and 65535")
    elif parts.username is not None or parts.password is not None:
        bad(path, "must not carry credentials (user:password@host); send them in a header such as Authorization")
    elif (problem := _host_problem(parts.hostname, policy)) is not None:
        bad(path, problem)


# Jobs call few hosts, many times: the checks of a host (address parsing, IDNA) are done once.
@functools.lru_cache(maxsize=4096)
def _host_problem(host: str, policy: EgressPolicy) -> str | None:
    """What is wrong with a URL's host, or None."""
    if _odd_ipv4_spelling(host):
        return "an IPv4 address must be written as four decimal numbers without leading zeros (a.b.c.d)"
    if not _valid_idna_host(host):
        return "host name is not valid (IDNA)"
    if (refusal := _never_allowed(host, policy)) is not None:
        return f"egress policy refuses {refusal}; EGRESS_ALLOW_NETWORKS lists the non-public networks allowed"
    return None


_LOOPBACK_NAMES = (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))


def _never_allowed(host: str, policy: EgressPolicy) -> str | None:
    """Why a host written as an address (or ``localhost``) can never pass the send-time egress
    check; None for names, which are checked when they are resolved."""
    if policy.host_is_trusted(host):
        return None
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761: always loopback
        refusals = [policy.refusal(address) for address in _LOOPBACK_NAMES]
        return None if None in refusals else f"{host} (loopback)"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    refusal = policy.refusal(address)
    return None if refusal is None else f"{address} ({refusal})"


_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)


def _odd_ipv4_spelling(host: str) -> bool:
    """Decimal (2130706433), octal (0177.0.0.1), hex (0x7f.1) or shortened (127.1) spellings:
    resolvers read them as addresses, so they would slip past a check of the written name."""
    labels = host.rstrip(".").split(".")
    if not all(_NUMERIC_LABEL.fullmatch(label) for label in labels):
        return False
    try:
        ipaddress.IPv4Address(host.rstrip("."))
    except ValueError:
        return True
    return False


def _valid_idna_host(host: str) -> bool:
    """Punycode labels (``xn--``) must decode; other names must encode to IDNA."""
    if host.startswith("[") or host.replace(".", "").isdigit() or ":" in host:
        return True  # IP literals
    try:
        for label in host.split("."):
            if label.lower().startswith("xn--"):
                label.encode("ascii").decode("idna")
            elif label:
                label.encode("idna")
    except UnicodeError:
        return False
    return True
