"""A user's test of their own Kling task against the simulator: no key, no credits, no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from kling_provider.hooks.kling import KlingHook
from kling_provider.testing.simulator import KlingSimulator


def test_my_video_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with KlingSimulator(time_scale=600) as sim:
        monkeypatch.setenv("AIRFLOW_CONN_KLING_DEFAULT", sim.connection_uri())
        hook = KlingHook()
        generation_id = hook.create_generation("klingai/v2-master-text-to-video", prompt="A fox")
        video = hook.wait_for_generation(generation_id, poll_interval=1)
        assert video.video_url is not None
        stored = hook.download_video(video.video_url, tmp_path / "fox.mp4")
        assert stored.size == video.file_size
        assert sim.ledger.count(method="POST") == 1
