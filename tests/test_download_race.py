"""Concurrent downloads of different generations to one explicit file name (real threads, real
files, the simulator's CDN): each task reports a file that holds its own generation's bytes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow.sdk import ObjectStoragePath

from kling_provider.hooks.kling import KlingHook
from kling_provider.operators.kling import KLING_VIDEOS_ASSET, KlingDownloadVideoOperator
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import context_for


def both_bodies_read_before_either_stores(monkeypatch: pytest.MonkeyPatch, parties: int) -> None:
    """Every download finishes reading its body, then all go on together: the moment two runs
    store their files is made the same moment, without touching the code under test."""
    barrier = threading.Barrier(parties, timeout=30)
    real = httpx.Response.iter_bytes

    def iter_bytes(self: httpx.Response, chunk_size: int | None = None) -> Iterator[bytes]:
        yield from real(self, chunk_size)
        if "/files/" in str(self.request.url):
            barrier.wait()

    monkeypatch.setattr(httpx.Response, "iter_bytes", iter_bytes)


def stored_bytes(uri: str) -> bytes:
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://")).read_bytes()
    return bytes(ObjectStoragePath(uri).read_bytes())


@pytest.mark.parametrize("where", ["file", "memory"])
def test_two_runs_storing_different_generations_to_one_file(
        airflow_sim: KlingSimulator, tmp_path: Path, memory_folder: Any,
        monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    hook = KlingHook()
    generations = []
    for _ in range(2):
        generation_id = hook.create_generation("klingai/v2.1-master-text-to-video", prompt="p")
        generations.append(hook.wait_for_generation(generation_id, poll_interval=60))
    destination = str(tmp_path / "clip.mp4") if where == "file" else \
        str(memory_folder / "clip.mp4")
    both_bodies_read_before_either_stores(monkeypatch, len(generations))
    results: dict[int, dict[str, Any]] = {}
    extras: dict[int, dict[str, Any]] = {}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        generation = generations[index]
        operator = KlingDownloadVideoOperator(
            task_id=f"download_{index}", destination=destination,
            generation={"generation_id": generation.generation_id,
                        "video_url": generation.video_url, "file_size": generation.file_size})
        context = context_for(None)
        try:
            results[index] = operator.execute(context)
            extras[index] = context["outlet_events"][KLING_VIDEOS_ASSET].extra
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(generations))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    uris = {results[i]["uri"] for i in results}
    assert len(uris) == 2  # one took the name, the other went beside it
    for index, generation in enumerate(generations):
        video = airflow_sim.video_of(generation.generation_id)
        assert stored_bytes(results[index]["uri"]) == video, index
        assert extras[index]["uri"] == results[index]["uri"]
        assert extras[index]["generation_id"] == generation.generation_id


# -- the claim itself: the two layers that order writers of one name ------------------------

def test_a_claim_held_by_another_process_is_waited_for(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import time

    from kling_provider._storage import lock as _lock
    from kling_provider.exceptions import KlingDownloadError

    target = tmp_path / "clip.mp4"
    held = _lock.lock_path_of(target)
    held.write_text(json.dumps({"pid": 1, "host": "other", "at": time.time()}))
    monkeypatch.setattr(_lock, "WAIT_AT_MOST", 0.0)
    with pytest.raises(KlingDownloadError, match=r"Another download .* lock file"), \
            _lock.claim(target):
        pass
    assert held.exists()  # another process's claim is never removed while fresh
    held.write_text(json.dumps({"at": time.time() - _lock.STALE_AFTER - 1}))
    with _lock.claim(target):  # left over by a killed process: taken over
        assert json.loads(held.read_text())["pid"] > 1
    assert not held.exists()


@pytest.mark.parametrize("where", ["file", "memory"])
def test_a_claim_held_by_another_thread_is_waited_for(tmp_path: Path, memory_folder: Any,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      where: str) -> None:
    from kling_provider._storage import lock as _lock
    from kling_provider.exceptions import KlingDownloadError

    target = (tmp_path if where == "file" else memory_folder) / "clip.mp4"
    outcome: list[str] = []

    def second_writer() -> None:
        try:
            with _lock.claim(target):
                outcome.append("entered")
        except KlingDownloadError:
            outcome.append("waited, then gave up")

    with _lock.claim(target):
        monkeypatch.setattr(_lock, "WAIT_AT_MOST", 0.0)
        thread = threading.Thread(target=second_writer)
        thread.start()
        thread.join(timeout=30)
    assert outcome == ["waited, then gave up"]
    with _lock.claim(target):
        pass  # released: free again
