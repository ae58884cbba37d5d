"""A video's body read straight from its connection into buffers its reader reuses.

Used by :mod:`kling_provider._storage.hosts` (its guarded transport wraps every download connection in
:class:`BodyStream`) and :mod:`kling_provider._storage.download` (:func:`body_chunks`). Profiled on a
200 MiB download from loopback, httpx's own body path spent more time than receiving, writing
and hashing together outside them: h11 copies every byte three more times (into its receive
buffer, a discarded slice, out again) and httpcore a fourth, and each read resets the socket's
timeout (a GIL hand-off, slow on a busy machine). Here each byte is received once into a
buffer the caller hands out (the ring of :class:`kling_provider._storage.hashing.ThreadedSha256`),
then written and hashed from it: memory stays flat at any speed.

Why it is exact: :class:`BodyStream` hands httpcore (and h11) a response's header block and
stops at its end, the first blank line, found as h11 finds it, so nothing of the body waits in
h11's buffer; what followed in the same read is kept and given to whoever reads next. When the
response is framed by ``Content-Length`` alone (no transfer or content encoding) on a socket
that decrypts itself, its body is exactly the next ``Content-Length`` bytes of the connection.
Anything else (chunked, compressed, HTTP/2, TLS inside a proxy's TLS, a test transport) goes
through httpx as before. httpcore closes a connection whose response it did not see end, so a
connection read here is never reused.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import httpcore
import httpx

#: Bytes asked of the socket per read of a download's header block (httpcore asks 64 KiB).
READ_SIZE = 1024 * 1024
#: Where h11 ends a header block (``h11._receivebuffer.blank_line_regex``).
_BLANK_LINE = re.compile(b"\n\r?\n", re.MULTILINE)


class BodyStream(httpcore.NetworkStream):
    """A connection that reads up to :data:`READ_SIZE` per call and never hands h11 bytes
    past a header block's end (see the module docstring)."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner
        self._pending = b""  # read from the socket after a header block's end, not handed out
        self._tail = b""  # the last bytes handed out: a blank line may span two reads
        #: The last bytes handed out ended a header block: h11 holds no byte after it.
        self.at_header_end = False

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._pending or self._inner.read(max(max_bytes, READ_SIZE), timeout)
        cut = _header_end(self._tail, data)
        data, self._pending = (data, b"") if cut is None else (data[:cut], data[cut:])
        self.at_header_end = cut is not None and cut == len(data) > 0
        self._tail = (self._tail + data)[-2:]
        return data

    def readinto(self, view: memoryview) -> int:
        """Fill ``view`` from what was kept, else from the socket; 0 at the end of the stream."""
        if self._pending:
            count = min(len(view), len(self._pending))
            view[:count] = self._pending[:count]
            self._pending = self._pending[count:]
            return count
        return int(self.socket().recv_into(view))

    def socket(self) -> socket.socket:
        """The socket to read the body from, or :class:`LookupError` when reading it would not
        give the body's plain bytes (TLS spoken inside another TLS stream, an unknown stream)."""
        sock = self._inner.get_extra_info("socket")
        if isinstance(sock, ssl.SSLSocket):
            return sock
        if type(sock) is socket.socket and self._inner.get_extra_info("ssl_object") is None:
            return sock
        raise LookupError("the connection does not read plain bytes from its socket")

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return BodyStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _header_end(tail: bytes, data: bytes) -> int | None:
    """Where in ``data`` the first blank line after ``tail`` (the bytes handed out before it)
    ends, a blank line that only ``tail`` holds not counting; ``None`` without one."""
    joint = tail + data[:2]
    found = _BLANK_LINE.search(joint)
    if found is not None and found.end() <= len(tail):  # "\n\n" handed out already
        found = _BLANK_LINE.search(joint, found.start() + 1)
    if found is None:
        found = _BLANK_LINE.search(data)
        return None if found is None else found.end()
    return found.end() - len(tail)


def body_chunks(response: httpx.Response, limit: int,
                buffer: Callable[[], memoryview]) -> Iterator[bytes | memoryview]:
    """The body of ``response`` (status read, body not yet), stopping after ``limit`` + 1 bytes
    at most. A chunk read from the socket is received into (a part of) ``buffer()``, called once
    per chunk: it stays valid for as long as the caller keeps that buffer from being handed out."""
    stream = response.extensions.get("network_stream")
    length = response.headers.get("content-length", "")
    try:
        if (not isinstance(stream, BodyStream) or not stream.at_header_end
                or response.http_version not in ("HTTP/1.1", "HTTP/1.0")
                or "transfer-encoding" in response.headers
                or "content-encoding" in response.headers or not length.isdigit()):
            raise LookupError("not a body framed by Content-Length alone")
        sock = stream.socket()
    except LookupError:
        yield from response.iter_bytes()
        return
    yield from _direct(stream, sock, min(int(length), limit + 1), response.request, buffer)


def _direct(stream: BodyStream, sock: socket.socket, length: int, request: httpx.Request,
            buffer: Callable[[], memoryview]) -> Iterator[memoryview]:
    timeout = request.extensions.get("timeout", {}).get("read")
    try:
        sock.settimeout(timeout)  # once, where httpcore sets it before every read
        remaining = length
        while remaining > 0:
            view = buffer()
            count = stream.readinto(view[:min(remaining, len(view))])
            if count == 0:
                return  # the server closed early: the caller sees fewer bytes than announced
            remaining -= count
            yield view[:count]
    except TimeoutError as exc:  # socket.timeout; the caller retries transport errors
        raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from exc
    except OSError as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
