"""The videos the simulator's CDN serves: the shipped sample clip, made unique per generation.

Used by :class:`~kling_provider.testing.simulator.KlingSimulator` (and by tests that want the
sample clip itself, through ``simulator.sample_video``).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from importlib import resources

__all__ = ["IDENTITY_BOX_SIZE", "sample_video", "video_bytes"]

#: Every served video ends with a ``free`` box of this size naming its generation: same size for
#: all generations, different bytes, so tests can tell whose video a file holds.
IDENTITY_BOX_SIZE = 48


def sample_video() -> bytes:
    """The small playable MP4 (H.264, 160x90, 1 s) shipped with the package."""
    return resources.files("kling_provider.testing").joinpath("sample.mp4").read_bytes()


def video_bytes(video: bytes, generation_id: str, size: int) -> Iterator[bytes]:
    """``video``, a ``free`` box naming the generation, then padding to ``size`` bytes.

    Top-level ``free`` boxes are skipped by every MP4 reader, so each video stays playable
    while no two generations serve the same bytes (the real API's videos differ too).
    """
    yield video
    digest = hashlib.sha256(generation_id.encode()).hexdigest()
    payload = f"kling-simulator {digest}".encode()[: IDENTITY_BOX_SIZE - 8]
    yield struct.pack(">I4s", IDENTITY_BOX_SIZE, b"free") + payload
    padding = size - len(video) - IDENTITY_BOX_SIZE
    if padding >= 8:
        yield struct.pack(">I4s", padding, b"free")
        remaining = padding - 8
        block = bytes(1024 * 1024)
        while remaining > 0:
            yield block[: min(remaining, len(block))]
            remaining -= len(block)
    elif padding > 0:
        yield bytes(padding)
