"""The worker's HTTP client under the egress policy: every connection resolves its host, refuses
unless every address passes the policy, and then connects to an address it checked, so a name
that resolves differently a moment later (DNS rebinding) cannot swap the target. TLS still
verifies the certificate against the host name (httpcore sends the URL's host as SNI)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx
from httpcore._utils import is_socket_readable

from jobs_common.egress import EgressPolicy, IpAddress

__all__ = ["EgressRefusedError", "guarded_client"]


class EgressRefusedError(Exception):
    """The target's address is not allowed by the egress policy."""


# httpx's own default; httpcore's pool, built here, would keep an idle connection forever.
KEEPALIVE_EXPIRY = 5.0


def guarded_client(
    policy: EgressPolicy,
    concurrency: int,
    timeout: httpx.Timeout,
    ssl_context: ssl.SSLContext | None = None,
    keepalive: int | None = None,
) -> httpx.AsyncClient:
    """An httpx client whose every connection passes ``policy``, with up to ``concurrency``
    connections of which ``keepalive`` (default: all) stay open idle, for KEEPALIVE_EXPIRY. It
    ignores HTTP(S)_PROXY variables: a proxy would make the checked address the proxy's, not the
    target's. Clients may share one ``ssl_context`` (loading the CA bundle costs milliseconds and
    memory each)."""
    ssl_context = ssl_context or httpx.create_ssl_context(trust_env=False)
    # Given the context, the transport does not make one of its own (10 ms each, at start).
    transport = httpx.AsyncHTTPTransport(verify=ssl_context, trust_env=False)
    # httpx's transport takes no network backend, so its pool is replaced by one built the same
    # way (httpx 0.28's AsyncHTTPTransport.__init__) around the guarded backend.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=concurrency,
        max_keepalive_connections=concurrency if keepalive is None else keepalive,
        keepalive_expiry=KEEPALIVE_EXPIRY,
        network_backend=_GuardedBackend(policy),
    )
    return _CallClient(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False)


class _NoCookies(httpx.Cookies):
    """A cookie store that keeps none of what responses set."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _CallClient(httpx.AsyncClient):
    """httpx's client, for jobs' calls: each request is its job's own, with no cookie that an
    earlier call's response set. httpx's client keeps a cookie jar for all its requests, and a
    pool's client serves every job (of every tenant) whose execution id picks it: one target's
    ``Set-Cookie`` went out with the later calls of other jobs to its domain. Not keeping them
    also spares httpx's cookie handling of each response (5 % of the worker's CPU under
    ``make bench``, py-spy)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cookies = _NoCookies()


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self._policy.host_is_trusted(host):
            return _SocketStream(await self._inner.connect_tcp(host, port, timeout, local_address, socket_options))
        addresses = await _resolve(host, port)
        for address in addresses:
            refusal = self._policy.refusal(address)
            if refusal is not None:
                resolved = f"{address}" if host == str(address) else f"{host}: it resolves to {address}"
                raise EgressRefusedError(f"egress policy refuses {resolved} ({refusal})")
        failure: Exception | None = None
        for address in addresses:  # every one is allowed; the first that answers is used
            try:
                stream = await self._inner.connect_tcp(str(address), port, timeout, local_address, socket_options)
                return _SocketStream(stream)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # _resolve never returns an empty list
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefusedError("egress policy refuses unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _SocketStream(httpcore.AsyncNetworkStream):
    """anyio's stream, its socket looked up once. For every request a pool assigns, httpcore asks
    each idle connection of the pool whether its socket is readable (the server closed it), and
    anyio answers each question by building a table of every attribute of the stream, with a
    getpeername call: 6 % of the worker's CPU under ``make bench``, before."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _SocketStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "socket":
            return self._socket
        if info == "is_readable":
            return is_socket_readable(self._socket)
        return self._inner.get_extra_info(info)


async def _resolve(host: str, port: int) -> list[IpAddress]:
    try:  # an address is its own answer (the event loop would ask a thread to say so)
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from exc
    addresses: list[IpAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise httpcore.ConnectError(f"cannot resolve {host}: no address")
    return addresses
