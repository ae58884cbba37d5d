"""The download's SHA-256 hashed in a thread (``_storage.hashing.ThreadedSha256``): right digest, no chunk
overwritten before it is hashed, errors raised in the downloading thread, the thread always ends.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_provider._storage import download as _download
from kling_provider._storage.hashing import ThreadedSha256
from kling_provider.hooks.kling import KlingHook
from kling_provider.testing.simulator import KlingSimulator
from tests.test_download import ready


def hashing_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("kling-sha256")]


@given(pieces=st.lists(st.tuples(st.binary(max_size=40), st.booleans()), max_size=30),
       buffers=st.integers(1, 4))
def test_the_digest_is_that_of_the_chunks_in_order(pieces: list[tuple[bytes, bool]],
                                                    buffers: int) -> None:
    """Chunks received into the ring's buffers (reused) or given as ``bytes``, in any mix."""
    with ThreadedSha256(buffers=buffers, size=40) as digest:
        for piece, in_buffer in pieces:
            if in_buffer:
                view = digest.buffer()
                view[:len(piece)] = piece
                digest.update(view[:len(piece)])
            else:
                digest.update(piece)
        assert digest.hexdigest() == hashlib.sha256(b"".join(p for p, _ in pieces)).hexdigest()
    assert not hashing_threads()


class _Lagging:
    """A digest that hashes chunk *k* only once the loop asks for the buffer that chunk *k* +
    ``buffers`` goes into: as slow as a hash may be without the loop waiting on it earlier."""

    def __init__(self, buffers: int) -> None:
        self.buffers = buffers
        self.asked = 0  # buffers the loop asked for
        self.seen: list[bytes] = []
        self.turn = threading.Condition()
        self._real = hashlib.sha256()

    def ask(self) -> None:
        with self.turn:
            self.asked += 1
            self.turn.notify_all()

    def update(self, chunk: memoryview) -> None:
        with self.turn:
            self.turn.wait_for(lambda: self.asked > len(self.seen) + self.buffers)
        self.seen.append(bytes(chunk))
        self._real.update(chunk)

    def hexdigest(self) -> str:
        return self._real.hexdigest()


def test_a_buffer_is_handed_out_again_only_once_its_chunk_is_hashed() -> None:
    lagging = _Lagging(buffers=3)
    sent = [bytes([k]) * 64 for k in range(20)]
    with ThreadedSha256(buffers=3, size=64, digest=lambda: lagging) as digest:
        for chunk in sent:
            lagging.ask()
            view = digest.buffer()  # chunk k - 3 was in it: hashed by now, never overwritten
            view[:] = chunk
            digest.update(view)
        for _ in range(3):
            lagging.ask()  # lets the last chunks be hashed
        assert digest.hexdigest() == hashlib.sha256(b"".join(sent)).hexdigest()
    assert lagging.seen == sent


class _Failing:
    """A digest whose third update fails, as a hash running out of memory would."""

    def __init__(self) -> None:
        self.updates = 0

    def update(self, chunk: memoryview) -> None:
        self.updates += 1
        if self.updates == 3:
            raise MemoryError("hashing failed")

    def hexdigest(self) -> str:
        return "0" * 64


def test_an_error_of_the_hashing_thread_is_raised_by_update_or_hexdigest() -> None:
    with ThreadedSha256(buffers=2, size=8, digest=_Failing) as digest:
        def feed(count: int, chunk: bytes) -> None:
            for _ in range(count):
                digest.update(chunk)
        with pytest.raises(MemoryError, match="hashing failed"):
            feed(50, b"12345678")  # raised by an update: at most two chunks wait
    assert not hashing_threads()
    with ThreadedSha256(digest=_Failing) as digest:
        for _ in range(3):
            digest.update(b"x" * 4096)
        with pytest.raises(MemoryError):
            digest.hexdigest()  # the last chunk failed: no digest of bytes that were not hashed
    assert not hashing_threads()


def test_a_download_whose_hashing_fails_leaves_nothing_and_no_thread(
        sim_hook: KlingHook, simulator: KlingSimulator, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    generation = ready(sim_hook, {"video_size": 3_000_000})
    failing: Any = functools.partial(ThreadedSha256, digest=_Failing)
    monkeypatch.setattr(_download, "ThreadedSha256", failing)
    with pytest.raises(MemoryError, match="hashing failed"):
        sim_hook.download_video(generation.video_url or "", tmp_path / "v.mp4",
                                generation_id=generation.generation_id)
    assert list(tmp_path.iterdir()) == []  # no partial file, no sidecar
    assert not hashing_threads()
    assert simulator.ledger.count(origin="cdn") == 1  # not retried: it is not the network's fault
