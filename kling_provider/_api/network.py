"""What a transport failure means, in words that say what to fix. Pure: no I/O.

httpx reports "ConnectError" for a refused connection, an unknown host and a TLS mismatch alike;
the cause sits in the exception's chain (``ConnectionRefusedError``, ``socket.gaierror``,
``ssl.SSLError``). Users need the URL that failed, which of those it was, and what to check.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx

#: Shown when the URL is https on a port other than 443: the usual sign of a host written
#: without a scheme (the connection then means https) in front of a plain-HTTP service.
SCHEME_HINT = (
    " A host written without a scheme is taken as https://; if the service speaks plain HTTP, "
    "write the host as http://{netloc}."
)


def redact_url(url: str) -> str:
    """``url`` as logs, errors and lineage may show it: no ``user:password@``, no query (CDN
    URLs are signed), no fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket: show nothing of it rather than a secret
        return "<unparseable URL>"
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def failed_url(error: httpx.RequestError) -> str:
    """The URL the failed request went to, as :func:`redact_url` shows it, or ''."""
    try:
        url = error.request.url
    except RuntimeError:  # raised outside a client: no request attached
        return ""
    return redact_url(str(url))


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def transport_cause(error: httpx.RequestError, url: str = "") -> str:
    """One sentence: what went wrong on the way to ``url`` and what to check."""
    url = url or failed_url(error)
    parts = urlsplit(url)
    where = parts.netloc or "the server"
    hint = (SCHEME_HINT.format(netloc=where)
            if parts.scheme == "https" and parts.port not in (None, 443) else "")
    text = " ".join(str(e) for e in _chain(error)).lower()
    causes = list(_chain(error))
    if isinstance(error, httpx.ConnectTimeout):
        return (f"connecting to {where} timed out (connect_timeout): check the host and port, "
                f"and that no firewall or proxy drops the traffic.{hint}")
    if isinstance(error, (httpx.ReadTimeout, httpx.WriteTimeout)):
        return (f"{where} accepted the connection but did not answer in time (timeout): the "
                "service may be overloaded; a larger 'timeout' extra gives it longer.")
    if isinstance(error, httpx.PoolTimeout):
        return ("no connection became free in time: too many requests in flight for "
                "'max_concurrency'.")
    if any(isinstance(e, ConnectionRefusedError) for e in causes) or "refused" in text:
        return (f"connection refused by {where}: nothing listens on that port. Check the "
                f"connection's host and port and that the service runs.{hint}")
    if any(isinstance(e, socket.gaierror) for e in causes) or "name or service not known" in text \
            or "name resolution" in text or "nodename nor servname" in text:
        return (f"the host name {parts.hostname or where!r} could not be resolved (DNS): check "
                "its spelling in the connection's host and the machine's DNS settings.")
    if any(isinstance(e, ssl.SSLError) for e in causes) or "ssl" in text or "tls" in text:
        if "wrong_version_number" in text or "wrong version number" in text \
                or "record layer failure" in text:
            return (f"the TLS handshake with {where} failed: it does not speak HTTPS on that "
                    f"port.{hint or ' Check the scheme and port of the connection host.'}")
        if "certificate" in text:
            return (f"the TLS certificate of {where} is not trusted: check the host name, or "
                    "the CA bundle (SSL_CERT_FILE) if a proxy inspects TLS.")
        return f"the TLS handshake with {where} failed ({error}).{hint}"
    if isinstance(error, httpx.RemoteProtocolError):
        return (f"{where} closed the connection or answered something that is not HTTP: check "
                f"the connection's scheme and port.{hint}")
    if isinstance(error, (httpx.ReadError, httpx.WriteError)):
        return (f"the connection to {where} broke off mid-request ({error or type(error).__name__})"
                ": a network drop or a proxy closing it.")
    if "unreachable" in text:
        return f"the network to {where} is unreachable: check routes, VPN and proxy settings."
    return f"{type(error).__name__} on the way to {where}: {error}"
