"""Which hosts a video download may reach: public addresses, plus the ones the user trusts.

Used by :mod:`kling_provider._storage.download`. The video URL comes from the API's answer (or a DAG
argument), so a compromised or spoofed answer could point a worker at its own network: cloud
metadata services (``169.254.169.254``), loopback admin ports, private services. A download
therefore refuses private, loopback, link-local and other non-global addresses unless the host
is the connection's own API host (a simulator or an on-prem gateway the user chose) or is listed
in the connection's ``allow_private_hosts`` extra (``true`` for any, or host names and networks).

The check runs twice per hop: :func:`check_url` on the URL (an address written in it), and
:class:`GuardedBackend` on every address a host name *resolves to*, at the moment of connecting,
so a DNS answer that changes between a check and the connection (rebinding) cannot slip past.
Behind an HTTP proxy the proxy resolves names; only addresses written in URLs are checked then.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from kling_provider._storage.body import BodyStream
from kling_provider.exceptions import KlingDownloadError, KlingValidationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_TRUE = ("true", "1", "yes", "on", "*")
_FALSE = ("false", "0", "no", "off", "")


@dataclass(frozen=True)
class HostPolicy:
    """Non-public addresses a download may reach: any (``allow_any``), or those of the named
    hosts (the API host always among them) and those inside the listed networks."""

    conn_id: str = ""
    allow_any: bool = False
    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, value: Any, *, api_host: str, conn_id: str = "") -> HostPolicy:
        """From the ``allow_private_hosts`` extra (validated here, once) and the API host."""
        allow_any, entries = _parse(value, conn_id)
        hosts = {api_host.lower().strip("[]")} if api_host else set()
        networks: list[IPNetwork] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().strip("[]"))
        return cls(conn_id, allow_any, frozenset(hosts), tuple(networks))

    def allows(self, host: str, address: IPAddress) -> bool:
        """The one decision: may a connection for ``host`` go to ``address``?"""
        if is_public(address) or self.allow_any or host.lower().strip("[]") in self.hosts:
            return True
        plain = unwrap(address)
        return any(plain in network for network in self.networks
                   if network.version == plain.version)

    def refuse(self, host: str, address: IPAddress) -> KlingDownloadError:
        where = f"connection {self.conn_id!r}" if self.conn_id else "the connection"
        return KlingDownloadError(
            f"Refused to download from {host!r}: it is at {address}, a private, loopback or "
            "link-local address, and video URLs come from an API answer. If it is your own "
            f"mirror, add {host!r} (or its network) to 'allow_private_hosts' in the extra of "
            f"{where}.")


def _parse(value: Any, conn_id: str) -> tuple[bool, list[str]]:
    if value is None or isinstance(value, bool):
        return bool(value), []
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE, []
        return False, [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return False, [v.strip() for v in value if v.strip()]
    raise KlingValidationError(
        f"Invalid extra 'allow_private_hosts'={value!r} in connection {conn_id!r}: use true, "
        "false, or a list of host names and networks (e.g. [\"mirror.corp\", \"10.0.0.0/8\"]).")


def unwrap(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one embeds (mapped, 6to4, NAT64), else the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None)
        if embedded is not None:
            return embedded
    return address


def is_public(address: IPAddress) -> bool:
    """Globally routable unicast, looking through IPv4 addresses embedded in IPv6 ones."""
    plain = unwrap(address)
    return plain.is_global and not plain.is_multicast


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_url(url: str, policy: HostPolicy) -> None:
    """Refuse a URL whose host is written as a non-public address the policy does not allow."""
    host = urlsplit(url).hostname or ""
    address = literal_address(host)
    if address is not None and not policy.allows(host, address):
        raise policy.refuse(host, address)


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, resolving names itself and connecting only to addresses the
    policy allows (every address of the answer must be allowed). TLS still verifies the host
    name: httpcore passes the origin's name, not the address, to the handshake."""

    def __init__(self, policy: HostPolicy, inner: httpcore.NetworkBackend | None = None) -> None:
        self._policy = policy
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        addresses = resolve(host, port)
        for address in addresses:
            if not self._policy.allows(host, address):
                raise self._policy.refuse(host, address)
        last: Exception | None = None
        for address in addresses:
            try:
                return BodyStream(self._inner.connect_tcp(str(address), port, timeout,
                                                         local_address, socket_options))
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last or httpcore.ConnectError(f"no address for {host!r}")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses ``host`` resolves to, in the resolver's order (an address: itself)."""
    address = literal_address(host)
    if address is not None:
        return [address]
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:  # gaierror: kept in the chain for the "could not be resolved" hint
        raise httpcore.ConnectError(str(exc)) from exc
    found = dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
                          for info in answers)
    return list(found)


@functools.lru_cache(maxsize=16)
def guarded_transport(policy: HostPolicy) -> httpx.HTTPTransport:
    """httpx's default transport, connecting through :class:`GuardedBackend`; one per policy
    and process (its TLS context costs 30-60 ms to build, a fifth of a 200 MB download)."""
    transport = httpx.HTTPTransport()
    # httpx takes no network backend argument; its pool keeps every other default this way.
    pool = transport._pool
    pool._network_backend = GuardedBackend(policy, pool._network_backend)
    return transport
