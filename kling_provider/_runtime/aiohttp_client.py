"""The triggerer's HTTP client: one aiohttp session per event loop, answers as ``httpx.Response``.

Why not httpx here: a profile of 5,000 waits in one event loop puts most of a poll's CPU in
httpcore's connection pool (every request walks every pooled connection, each walk a ``poll``
syscall through anyio's socket attributes) and in httpx's request/response layers. aiohttp's
connector hands out idle connections from a deque. ``benchmarks/triggerer.py`` measures the
difference side by side. Workers keep the sync httpx client; the protocol layer still sees
``httpx.Response`` and ``httpx`` transport errors, so retry and error rules are unchanged.

Error mapping is deliberately narrow: only a failure to *connect* becomes
:class:`httpx.ConnectError` (nothing was sent, so even the paid POST may be retried); every other
failure becomes an error that means "may have been sent" (``ReadError``/``ReadTimeout``/
``RemoteProtocolError``), so a create request is never repeated after it may have arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp
import httpx


class AiohttpSender:
    """Send one request on a shared aiohttp session; return it as an ``httpx.Response``."""

    def __init__(self, base_url: str, *, timeout: float, connect_timeout: float,
                 max_connections: int, user_agent: str) -> None:
        self.base_url = base_url
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout,
                                          sock_read=timeout),
            headers={"User-Agent": user_agent})

    @property
    def is_closed(self) -> bool:
        return self.session.closed

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None,
                      json: Mapping[str, Any] | None, headers: Mapping[str, str]
                      ) -> httpx.Response:
        try:
            async with self.session.request(method, self.base_url + path, params=params,
                                            json=json, headers=headers,
                                            allow_redirects=False) as answer:
                content = await answer.read()
                return httpx.Response(answer.status, headers=list(answer.headers.items()),
                                      content=content)
        except aiohttp.ClientConnectorError as exc:  # DNS, refused, TLS: nothing was sent
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from exc
        except aiohttp.ConnectionTimeoutError as exc:  # no connection in time: nothing was sent
            raise httpx.ConnectTimeout(f"{type(exc).__name__}: {exc}") from exc
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx.ReadTimeout(f"no answer in time ({type(exc).__name__})") from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise httpx.RemoteProtocolError(f"server disconnected: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        await self.session.close()
