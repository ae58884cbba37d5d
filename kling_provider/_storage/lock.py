"""A claim on one destination file name while a download decides and stores (``_download``).

Why: two runs (a backfill and a manual run, say) may store different generations under one
explicit name at the same moment. Each checks what the name holds, then renames its finished
temporary file into place; without an order between them both see "nothing there", both rename,
and one reports a file that holds the other's video. With the claim, the check is made again and
the rename and the identity file (sidecar) written while no other writer of that name can act.

How: a lock file ``.<name>.kling.lock`` beside the destination, created with an exclusive create
(``open(mode="xb")``: ``O_EXCL`` on local and network file systems; on object storage wherever
the store supports a create-if-absent, as fsspec's ``file://`` and ``memory://`` do), plus a
per-process lock so threads of one worker never depend on the store for that. The claim is held
for a rename and a small JSON write, so waiting is short; a lock file older than
:data:`STALE_AFTER` seconds is left over from a killed process and is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from kling_provider.exceptions import KlingDownloadError

LOCK_SUFFIX = ".kling.lock"
#: A claim is held for a rename and a sidecar write (milliseconds); one this old is left over.
STALE_AFTER = 120.0
#: How long a writer waits for another's claim before giving up with a clear error.
WAIT_AT_MOST = STALE_AFTER + 30.0
POLL = 0.02

_guard = threading.Lock()
_in_process: dict[str, threading.Lock] = {}


def lock_path_of(target: Any) -> Any:
    return target.parent / f".{target.name}{LOCK_SUFFIX}"


@contextmanager
def claim(target: Any) -> Iterator[None]:
    """Hold the claim on ``target``'s name (``pathlib.Path`` or ``ObjectStoragePath``)."""
    lock_file = lock_path_of(target)
    with _guard:
        local = _in_process.setdefault(str(lock_file), threading.Lock())
    if not local.acquire(timeout=WAIT_AT_MOST):
        raise _busy(target, lock_file)
    try:
        _create(target, lock_file)
        try:
            yield
        finally:
            _remove(lock_file)
    finally:
        local.release()


def _create(target: Any, lock_file: Any) -> None:
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                         "at": time.time()}).encode("utf-8")
    give_up = time.monotonic() + WAIT_AT_MOST
    while True:
        try:
            with lock_file.open("xb") as handle:
                handle.write(record)
            return
        except FileExistsError:
            if _stale(lock_file):
                _remove(lock_file)  # its writer was killed mid-claim: take over
                continue
        if time.monotonic() > give_up:
            raise _busy(target, lock_file)
        time.sleep(POLL)  # another process is renaming a finished file: milliseconds


def _stale(lock_file: Any) -> bool:
    try:
        with lock_file.open("rb") as handle:
            at = json.loads(handle.read().decode("utf-8")).get("at")
    except FileNotFoundError:
        return False  # released meanwhile: try again
    except (OSError, ValueError, AttributeError):
        return True  # unreadable: a writer died while writing it
    return not isinstance(at, (int, float)) or time.time() - at > STALE_AFTER


def _remove(lock_file: Any) -> None:
    with suppress(FileNotFoundError):
        lock_file.unlink()


def _busy(target: Any, lock_file: Any) -> KlingDownloadError:
    return KlingDownloadError(
        f"Another download has been storing a video at {target} for over {WAIT_AT_MOST:.0f} s "
        f"(lock file {lock_file}); nothing was stored. Retry, or delete the lock file if no "
        "other task writes there.")
