"""The download body read straight from the connection (``_body``): exact bytes, real sockets.

A body framed by Content-Length alone is read from the socket into one reused buffer; anything
else (chunked, compressed) goes through httpx. Either way the bytes are the server's, byte for
byte; the header block never leaves a body byte behind in h11.
"""

from __future__ import annotations

import gzip
import hashlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import httpx
import pytest

from kling_provider._storage.body import READ_SIZE, BodyStream, body_chunks
from kling_provider._storage.hashing import ThreadedSha256
from kling_provider._storage.hosts import HostPolicy, guarded_transport
from kling_provider.hooks.kling import KlingHook
from kling_provider.testing.simulator import KlingSimulator
from tests.test_download import ready

LOOPBACK = HostPolicy(allow_any=True)


def stream_of(*pieces: bytes) -> BodyStream:
    """A BodyStream over a real socket pair whose peer sent ``pieces`` then closed."""
    ours, theirs = socket.socketpair()
    for piece in pieces:
        theirs.sendall(piece)
    theirs.close()
    return BodyStream(_SocketStream(ours))


class _SocketStream(httpcore.NetworkStream):
    """httpcore's own sync stream, each read returning at most one ``recv`` (as on a network)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._sock.recv(max_bytes)

    def get_extra_info(self, info: str) -> object:
        return self._sock if info == "socket" else None


def drain(stream: BodyStream) -> bytes:
    view = memoryview(bytearray(7))
    out = b""
    while count := stream.readinto(view):
        out += bytes(view[:count])
    return out


@pytest.mark.parametrize("blank_line", [b"\r\n\r\n", b"\n\n", b"\r\n\n"])
def test_header_block_is_handed_out_alone_and_the_body_kept(blank_line: bytes) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 11" + blank_line
    stream = stream_of(head + b"hello\n\nbody")
    assert stream.read(65536) == head
    assert stream.at_header_end
    assert drain(stream) == b"hello\n\nbody"


def test_a_blank_line_split_across_two_reads_still_ends_the_header_block() -> None:
    ours, theirs = socket.socketpair()
    stream = BodyStream(_SocketStream(ours))
    theirs.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n")
    assert stream.read(65536) == b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n"
    assert not stream.at_header_end
    theirs.sendall(b"\r\n\n\nok")
    theirs.close()
    assert stream.read(65536) == b"\r\n"  # the header block ends here, not at the body's "\n\n"
    assert stream.at_header_end
    assert drain(stream) == b"\n\nok"


def test_reads_after_the_header_block_return_what_was_kept_first() -> None:
    stream = stream_of(b"HTTP/1.1 200 OK\r\n\r\nabc")
    stream.read(65536)
    assert stream.read(65536) == b"abc"
    assert not stream.at_header_end
    assert stream.read(65536) == b""


def test_a_simulator_video_is_read_from_the_socket_exactly(
        sim_hook: KlingHook, simulator: KlingSimulator) -> None:
    generation = ready(sim_hook, {"video_size": 3 * READ_SIZE + 123})
    with httpx.Client(transport=guarded_transport(LOOPBACK)) as client, ThreadedSha256() as ring, \
            client.stream("GET", generation.video_url or "") as response:
        read = [(type(chunk), bytes(chunk))
                for chunk in body_chunks(response, 10 * READ_SIZE, ring.buffer)]
    served = httpx.get(generation.video_url or "").content
    assert b"".join(chunk for _, chunk in read) == served
    assert len(served) == 3 * READ_SIZE + 123
    assert {kind for kind, _ in read} == {memoryview}  # from the socket, not through httpx


class _Encoded(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 5000

    def do_GET(self) -> None:
        self.send_response(200)
        if self.path == "/gzip":
            data = gzip.compress(self.body)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for start in range(0, len(self.body), 100_000):
            piece = self.body[start:start + 100_000]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def encoded_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Encoded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("path", ["/chunked", "/gzip"])
def test_chunked_or_compressed_bodies_go_through_httpx_unchanged(
        encoded_server: str, path: str) -> None:
    with httpx.Client(transport=guarded_transport(LOOPBACK)) as client, ThreadedSha256() as ring, \
            client.stream("GET", encoded_server + path) as response:
        chunks = list(body_chunks(response, 10**9, ring.buffer))
    assert all(isinstance(chunk, bytes) for chunk in chunks)
    assert hashlib.sha256(b"".join(chunks)).digest() == hashlib.sha256(_Encoded.body).digest()
