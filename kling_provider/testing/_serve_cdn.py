"""The simulator's video origin ("CDN"): ``GET /files/<token>/<name>``, no key, no API tracing.

Registered in :mod:`._routes` on the second origin, so tests can prove the API key never reaches
it. Serves each generation's video (``_media``) and the download faults a provider must detect
rather than keep a broken file: a wrong ``Content-Length``, a truncated body ending cleanly, a
connection reset mid-transfer.
"""

from __future__ import annotations

import re
import socket
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from urllib.parse import SplitResult

    from kling_provider.testing._http import SimulatorHandler

__all__ = ["video"]


def video(h: SimulatorHandler, url: SplitResult) -> None:
    found = re.fullmatch(r"/files/([0-9a-f]+)/[^/]+", url.path)
    generation = h.simulator._by_token(found[1]) if found else None
    if generation is None:
        return h.error(404, "No such file")
    faults = generation.faults
    size = h.simulator._video_size(generation)
    announced = size - 100 if faults.wrong_content_length else size
    sent_limit = size // 2 if faults.truncate_download else announced
    if faults.drop_download_after is not None:
        sent_limit = min(sent_limit, faults.drop_download_after)
    h.record(200, generation.generation_id)
    h.send_response(200)
    h.send_header("Content-Type", "video/mp4")
    h.send_header("Content-Length", str(announced))
    h.end_headers()
    sent = 0
    for chunk in h.simulator.video_bytes(generation):
        chunk = chunk[: max(0, sent_limit - sent)]
        if not chunk:
            break
        h.wfile.write(chunk)
        sent += len(chunk)
    if sent < announced:
        h.wfile.flush()
        h.close_connection = True
        if faults.drop_download_after is not None:
            # Linger 0: the close sends a reset, like a CDN node dying mid-transfer.
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
        else:
            h.connection.shutdown(socket.SHUT_RDWR)  # a clean but early end
    return None
