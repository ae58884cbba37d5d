"""Benchmark: download throughput of ``KlingHook.download_video`` next to curl, same file, one run.

    .venv/bin/python benchmarks/download.py [size_mb]

The simulator (separate process) serves a padded MP4 of ``size_mb`` (default 200) from its CDN
origin; the hook (which hashes every byte, SHA-256, for the sidecar) and curl each fetch it five
times into a temporary folder, and a re-run of the hook verifies the stored copy (sidecar +
SHA-256) instead of fetching it. Prints best and median MB/s, the median as a multiple of curl's,
and the hook's peak RSS growth. Numbers are printed, not asserted.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from kling_provider.hooks.kling import KlingHook

KEY = "bench-key"
ROUNDS = 5


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
        rows = []
        with tempfile.TemporaryDirectory() as folder:
            target = Path(folder) / "v.mp4"
            for _ in range(ROUNDS):
                target.unlink(missing_ok=True)
                started = time.perf_counter()
                hook.download_video(url, target, expected_size=generation.file_size)
                rows.append(("KlingHook.download_video", time.perf_counter() - started))
            rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
            for _ in range(ROUNDS):  # a re-run: the copy is verified (sidecar + SHA-256), kept
                started = time.perf_counter()
                kept = hook.download_video(url, target, expected_size=generation.file_size)
                assert not kept.downloaded
                rows.append(("re-run, copy verified+kept", time.perf_counter() - started))
            curl = shutil.which("curl")
            for _ in range(ROUNDS if curl else 0):
                target.unlink(missing_ok=True)
                started = time.perf_counter()
                subprocess.run([str(curl), "-sf", "-o", str(target), url], check=True)
                rows.append(("curl -o", time.perf_counter() - started))
        print(f"\nDownload of a {size / 2**20:.0f} MiB video from the simulator's CDN on loopback")
        print(f"{'client':<26}{'best MB/s':>11}{'median MB/s':>13}{'median x curl':>15}")
        medians = {name: sorted(t for n, t in rows if n == name)[len(
            [r for r in rows if r[0] == name]) // 2] for name in dict.fromkeys(r[0] for r in rows)}
        for name, median in medians.items():
            best = min(t for n, t in rows if n == name)
            ratio = f"{medians['curl -o'] / median:.2f}" if "curl -o" in medians else "-"
            print(f"{name:<26}{size / 1e6 / best:>11.0f}{size / 1e6 / median:>13.0f}{ratio:>15}")
        print(f"peak RSS growth of this process during the hook downloads: "
              f"{rss_growth / 1024:.1f} MiB")
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
