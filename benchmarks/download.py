"""Benchmark: download throughput of ``KlingHook.download_video`` next to curl, same file, one run.

    .venv/bin/python benchmarks/download.py [size_mb]

The simulator (separate process) serves a padded MP4 of ``size_mb`` (default 200) from its CDN
origin; the hook (which hashes every byte, SHA-256, for the sidecar) and curl each fetch it seven
times into a temporary folder, taking turns round by round, and so does the hook with its hash
computed inline as before issue 17.4 (one reused 1 MiB buffer, hashed between reads, swapped in
for the hashing thread). A re-run of the hook verifies the stored copy (sidecar + SHA-256)
instead of fetching it. Prints best and median MB/s, the median as a multiple of curl's, the
median CPU seconds of a run (all threads of this process for the hook, the curl process for curl;
the simulator's not counted), the load average and the hook's peak RSS growth. Numbers are
printed, not asserted. On a busy machine the hashing thread finds no free core and the CPU column
decides: the hook's SHA-256 is work curl does not do.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import httpx

from kling_provider._storage import download as _download
from kling_provider._storage.hashing import ThreadedSha256
from kling_provider.hooks.kling import KlingHook

KEY = "bench-key"
ROUNDS = 7
HOOK = "KlingHook.download_video"
INLINE = "  hash inline (before)"


class InlineSha256:
    """What ``_stage`` did before the hashing thread: one reused 1 MiB buffer, hashed in the loop."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._view = memoryview(bytearray(1024 * 1024))

    def buffer(self) -> memoryview:
        return self._view

    def update(self, chunk: bytes | memoryview) -> None:
        self._digest.update(chunk)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def __enter__(self) -> InlineSha256:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its children that have ended."""
    usages = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    return sum(usage.ru_utime + usage.ru_stime for usage in usages)


def main() -> None:
    size = int(float(sys.argv[1]) if len(sys.argv) > 1 else 200) * 1024 * 1024
    process = subprocess.Popen(
        [sys.executable, "-m", "kling_provider.testing.simulator", "--port", "0",
         "--api-key", KEY, "--time-scale", "1e9"], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    base_url = json.loads(process.stdout.readline())["base_url"]
    os.environ["AIRFLOW_CONN_KLING_BENCH"] = json.dumps(
        {"conn_type": "kling", "host": base_url, "password": KEY})
    try:
        hook = KlingHook("kling_bench")
        generation_id = hook.create_generation(
            "klingai/v2.1-master-text-to-video", prompt="benchmark",
            extra_params={"simulator_faults": {"video_size": size}})
        generation = hook.wait_for_generation(generation_id, poll_interval=0.05)
        url = generation.video_url or ""
        with httpx.stream("GET", url) as warm_up:  # streamed: must not raise the RSS peak
            for _ in warm_up.iter_bytes(2**20):
                pass
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rows: list[tuple[str, float, float]] = []
        load = os.getloadavg()
        curl = shutil.which("curl")
        with tempfile.TemporaryDirectory() as folder:
            target = Path(folder) / "v.mp4"

            def timed(name: str, fetch: Callable[[], object]) -> None:
                target.unlink(missing_ok=True)
                cpu, started = _cpu_seconds(), time.perf_counter()
                fetch()
                rows.append((name, time.perf_counter() - started, _cpu_seconds() - cpu))

            def fetch_with(hasher: type[object]) -> Callable[[], object]:
                def fetch() -> object:
                    with mock.patch.object(_download, "ThreadedSha256", hasher):
                        return hook.download_video(url, target, expected_size=generation.file_size)
                return fetch

            for _ in range(ROUNDS):  # in turns: a busy moment slows each client alike
                timed(HOOK, fetch_with(ThreadedSha256))
                timed(INLINE, fetch_with(InlineSha256))
                if curl:
                    timed("curl -o", lambda: subprocess.run(
                        [str(curl), "-sf", "-o", str(target), url], check=True))
            rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
            hook.download_video(url, target, expected_size=generation.file_size)
            for _ in range(ROUNDS):  # a re-run: the copy is verified (sidecar + SHA-256), kept
                cpu, started = _cpu_seconds(), time.perf_counter()
                kept = hook.download_video(url, target, expected_size=generation.file_size)
                assert not kept.downloaded
                rows.append(("re-run, copy verified+kept", time.perf_counter() - started,
                             _cpu_seconds() - cpu))
        print(f"\nDownload of a {size / 2**20:.0f} MiB video from the simulator's CDN on loopback")
        print(f"{'client':<26}{'best MB/s':>11}{'median MB/s':>13}{'median x curl':>15}"
              f"{'CPU s/run':>11}")
        medians = {name: statistics.median(t for n, t, _ in rows if n == name)
                   for name in dict.fromkeys(r[0] for r in rows)}
        for name, median in medians.items():
            best = min(t for n, t, _ in rows if n == name)
            ratio = f"{medians['curl -o'] / median:.2f}" if "curl -o" in medians else "-"
            cpu = statistics.median(c for n, _, c in rows if n == name)
            print(f"{name:<26}{size / 1e6 / best:>11.0f}{size / 1e6 / median:>13.0f}{ratio:>15}"
                  f"{cpu:>11.3f}")
        print(f"load average before / after: {load[0]:.1f} / {os.getloadavg()[0]:.1f} "
              f"({os.cpu_count()} cores)")
        print(f"peak RSS growth of this process during the hook downloads: "
              f"{rss_growth / 1024:.1f} MiB")
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
