"""Network errors name the URL and the cause (refused, DNS, TLS, timeout) and what to check.

The refused and TLS cases are real sockets on loopback (nothing listening; the simulator's plain
HTTP spoken to as https), the rest scripted with httpx's MockTransport.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kling_provider._api.network import transport_cause
from kling_provider.exceptions import KlingDownloadError, KlingNetworkError
from kling_provider.hooks.kling import KlingHook
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import FakeClock, Script

LEGACY = "/v2/generate/video/kling/generation"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def fetch_error(host: str, kling_env: Callable[..., None], clock: FakeClock) -> str:
    kling_env(host, max_retries=2)
    with pytest.raises(KlingNetworkError) as error:
        KlingHook(clock=clock).get_generation("gen-1")
    return str(error.value)


def test_refused_names_url_and_cause(kling_env: Callable[..., None], clock: FakeClock) -> None:
    port = closed_port()
    message = fetch_error(f"http://127.0.0.1:{port}", kling_env, clock)
    assert f"at http://127.0.0.1:{port}{LEGACY} (ConnectError)" in message
    assert "connection refused by 127.0.0.1:" in message
    assert "nothing listens on that port" in message and "host and port" in message
    assert "https://" not in message  # the scheme was explicit: no hint about it


def test_scheme_less_host_taken_as_https_says_so(simulator: KlingSimulator,
                                                 kling_env: Callable[..., None],
                                                 clock: FakeClock) -> None:
    netloc = simulator.base_url.removeprefix("http://")  # a plain-HTTP service
    message = fetch_error(netloc, kling_env, clock)
    assert f"at https://{netloc}{LEGACY}" in message
    assert "does not speak HTTPS on that port" in message
    assert f"write the host as http://{netloc}" in message
    refused = fetch_error(f"127.0.0.1:{closed_port()}", kling_env, clock)
    assert "connection refused" in refused and "taken as https://" in refused


def _connect_error(cause: BaseException) -> httpx.ConnectError:
    error = httpx.ConnectError(str(cause))
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(("error", "expected"), [
    (_connect_error(socket.gaierror(-2, "Name or service not known")),
     "host name 'api.example.test' could not be resolved (DNS)"),
    (_connect_error(ssl.SSLCertVerificationError(1, "certificate verify failed")),
     "TLS certificate of api.example.test is not trusted"),
    (httpx.ConnectTimeout("timed out"), "connecting to api.example.test timed out"),
    (httpx.ReadTimeout("timed out"), "did not answer in time (timeout)"),
    (httpx.RemoteProtocolError("illegal status line"), "answered something that is not HTTP"),
])
def test_each_cause_in_words(mock_hook: Callable[..., KlingHook], error: Exception,
                             expected: str) -> None:
    hook = mock_hook(Script(*[error] * 2), max_retries=2)
    with pytest.raises(KlingNetworkError) as raised:
        hook.get_generation("gen-1")
    assert f"at https://api.example.test{LEGACY}" in str(raised.value)
    assert expected in str(raised.value)


def test_cause_without_a_request_still_reads() -> None:
    assert "connection refused" in transport_cause(httpx.ConnectError("[Errno 111] refused"))


def test_test_connection_and_download_say_the_same(kling_env: Callable[..., None],
                                                   clock: FakeClock, tmp_path: Path) -> None:
    port = closed_port()
    kling_env(f"http://127.0.0.1:{port}")
    hook = KlingHook(clock=clock)
    ok, message = hook.test_connection()
    assert not ok and f"Could not reach http://127.0.0.1:{port} (ConnectError)" in message
    assert "connection refused" in message
    with pytest.raises(KlingDownloadError) as error:
        hook.download_video(f"http://127.0.0.1:{port}/files/x/output.mp4?sig=secret",
                            tmp_path / "v.mp4")
    assert f"connection refused by 127.0.0.1:{port}" in str(error.value)
    assert "sig=secret" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_unknown_errors_keep_their_text(mock_hook: Callable[..., Any]) -> None:
    hook = mock_hook(Script(*[httpx.ProxyError("proxy said no")] * 2), max_retries=2)
    with pytest.raises(KlingNetworkError, match="ProxyError on the way to api.example.test"):
        hook.get_generation("gen-1")
