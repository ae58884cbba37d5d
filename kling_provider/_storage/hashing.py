"""A download's SHA-256 computed in a thread, beside the loop that receives and writes its body.

Used by :mod:`kling_provider._storage.download` (``_stage``), which reads the body with
:func:`kling_provider._storage.body.body_chunks` into the buffers handed out here. Profiled on
5 x 200 MiB from the simulator on loopback with the hash inline (one reused 1 MiB buffer): ``update`` took
0.90 s of the loop's 1.85 s, ``recv_into`` 0.45 s, file writes 0.34 s, httpx and the rest 0.16 s.
hashlib releases the GIL while it hashes more than 2 KiB, so a thread hashes chunk *n* while the
loop receives and writes chunk *n + 1*: with a free core the hash leaves the loop's path. On a
2-core machine busy with other work there is none (py-spy at load 3.3: the loop waited for the
hash 463 samples, the thread waited for chunks 763, hashing 572): a hand-over then costs little
(two C-level queue operations per chunk, no futures) and the work is what it was inline.

Memory stays flat: the loop receives into a ring of :data:`BUFFERS` buffers of
:data:`BUFFER_SIZE` bytes, and a buffer is handed out again only once the chunk last read into
it is hashed; chunks that are not in those buffers (``bytes`` from httpx's own body path) wait
:data:`BUFFERS` at a time at most (4 x 256 KiB: the 1 MiB the loop read into before; a chunk
stays in a core's 1 MiB L2 cache between being received, written and hashed).
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

#: Buffers in the ring, so chunks received but not hashed yet.
BUFFERS = 4
#: Bytes per buffer, so the most one receive returns.
BUFFER_SIZE = 256 * 1024


class ThreadedSha256:
    """SHA-256 of the chunks given to :meth:`update`, in order, hashed in a thread of its own.

    Use as a context manager: leaving it, also on an error, stops and joins the thread. An error
    of the hashing thread is raised by the next :meth:`update` or :meth:`buffer` that waits for
    it, or by :meth:`hexdigest`.
    """

    def __init__(self, *, buffers: int = BUFFERS, size: int = BUFFER_SIZE,
                 digest: Callable[[], Any] = hashlib.sha256) -> None:
        self._digest = digest()
        #: Each buffer with the number of the last chunk given from it (chunks count from 1).
        self._ring = deque((memoryview(bytearray(size)), 0) for _ in range(buffers))
        self._todo: queue.SimpleQueue[bytes | memoryview | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._given = self._hashed = 0
        self._thread = threading.Thread(target=self._run, name="kling-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failed: BaseException | None = None
        while (chunk := self._todo.get()) is not None:
            if failed is None:
                try:
                    self._digest.update(chunk)
                except BaseException as exc:  # raised in the downloading thread, by _wait
                    failed = exc
            self._done.put(failed)  # one answer per chunk, also after a failure: nobody hangs

    def _wait(self, count: int) -> None:
        """Return once the first ``count`` chunks are hashed; raise the thread's error if any."""
        while self._hashed < count:
            failed = self._done.get()
            self._hashed += 1
            if failed is not None:
                raise failed

    def buffer(self) -> memoryview:
        """A buffer to receive the next chunk into: the ring's oldest, once its chunk is hashed."""
        view, last = self._ring.popleft()
        self._ring.append((view, last))
        self._wait(last)
        return view

    def update(self, chunk: bytes | memoryview) -> None:
        """Hash ``chunk`` after the chunks before it. It must not change until it is hashed: one
        in a buffer from :meth:`buffer` is not handed out again before; ``bytes`` never change."""
        self._given += 1
        self._todo.put(chunk)
        owner = chunk.obj if isinstance(chunk, memoryview) else None
        for index, (view, _) in enumerate(self._ring):
            if view.obj is owner:
                self._ring[index] = (view, self._given)
        self._wait(self._given - len(self._ring))  # bounds what waits, whatever the chunks

    def hexdigest(self) -> str:
        """The digest of every chunk given, once the thread has hashed them all."""
        self._wait(self._given)
        return str(self._digest.hexdigest())

    def close(self) -> None:
        """Let the thread finish the chunks given (at most :data:`BUFFERS`) and wait for it."""
        if self._thread.is_alive():
            self._todo.put(None)
            self._thread.join()

    def __enter__(self) -> ThreadedSha256:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
