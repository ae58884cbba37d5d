"""A download's SHA-256 computed in a thread, beside the loop that receives and writes its body.

Used by :mod:`kling_provider._storage.download` (``_stage``), which reads the body with
:func:`kling_provider._storage.body.body_chunks` into the buffers handed out here. Profiled on
5 x 200 MiB from the simulator on loopback with the hash inline (one reused 1 MiB buffer): ``update`` took
0.90 s of the loop's 1.85 s, ``recv_into`` 0.45 s, file writes 0.34 s, httpx and the rest 0.16 s.
hashlib releases the GIL while it hashes more than 2 KiB, so a thread hashes chunk *n* while the
loop receives and writes chunk *n + 1*.

Memory stays flat: the loop receives into a ring of :data:`BUFFERS` buffers of
:data:`BUFFER_SIZE` bytes, and a buffer is handed out again only once the chunk last read into
it is hashed; chunks that are not in those buffers (``bytes`` from httpx's own body path) wait
:data:`BUFFERS` at a time at most (4 x 256 KiB: the 1 MiB the loop read into before; a chunk
stays in a core's 1 MiB L2 cache between being received, written and hashed).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

#: Buffers in the ring, so chunks received but not hashed yet.
BUFFERS = 4
#: Bytes per buffer, so the most one receive returns.
BUFFER_SIZE = 256 * 1024


class ThreadedSha256:
    """SHA-256 of the chunks given to :meth:`update`, in order, hashed in a thread of its own.

    Use as a context manager: leaving it, also on an error, stops and joins the thread. An error
    of the hashing thread is raised by the next :meth:`update` that waits, or by
    :meth:`hexdigest`.
    """

    def __init__(self, *, buffers: int = BUFFERS, size: int = BUFFER_SIZE,
                 digest: Callable[[], Any] = hashlib.sha256) -> None:
        self._digest = digest()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="kling-sha256")
        self._ring: deque[tuple[memoryview, Future[None] | None]] = deque(
            (memoryview(bytearray(size)), None) for _ in range(buffers))
        self._pending: deque[Future[None]] = deque()

    def buffer(self) -> memoryview:
        """A buffer to receive the next chunk into: the ring's oldest, once its chunk is hashed."""
        view, hashing = self._ring.popleft()
        self._ring.append((view, None))
        if hashing is not None:
            hashing.result()
        return view

    def update(self, chunk: bytes | memoryview) -> None:
        """Hash ``chunk`` after the chunks before it. It must not change until it is hashed: one
        in a buffer from :meth:`buffer` is not handed out again before; ``bytes`` never change."""
        hashing = self._thread.submit(self._digest.update, chunk)
        owner = chunk.obj if isinstance(chunk, memoryview) else None
        for index, (view, _) in enumerate(self._ring):
            if view.obj is owner:
                self._ring[index] = (view, hashing)
        self._pending.append(hashing)
        if len(self._pending) > len(self._ring):  # bounds what waits, whatever the chunks
            self._pending.popleft().result()

    def hexdigest(self) -> str:
        """The digest of every chunk given, once the thread has hashed them all."""
        while self._pending:
            self._pending.popleft().result()
        return str(self._digest.hexdigest())

    def close(self) -> None:
        """Stop the thread (chunks not hashed yet are dropped) and wait for it to end."""
        self._thread.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ThreadedSha256:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
