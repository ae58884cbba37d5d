"""Catalog of new Kling videos, scheduled on the ``kling://videos`` Asset.

Whenever a ``KlingDownloadVideoOperator`` stores a video (in any DAG), this DAG runs and writes a
JSON manifest of the new videos (URI, generation id, prompt, duration, thumbnail) to
``<kling_output_dir>/catalog/manifest-<run id>.json``. Duration and thumbnail come from the
pipeline's probe when it already ran, else are computed here; without ffmpeg they stay empty.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, task

from kling_provider.media import MediaToolMissingError, local_path, probe_video, thumbnail
from kling_provider.operators.kling import KLING_VIDEOS_ASSET

with DAG(dag_id="kling_video_catalog", schedule=[KLING_VIDEOS_ASSET],
         start_date=datetime(2026, 1, 1), catchup=False, tags=["kling", "example", "media"],
         doc_md=__doc__):

    @task
    def write_manifest(output_dir: str, run_id: str, triggering_asset_events: Any = None) -> str:
        videos = []
        for events in (triggering_asset_events or {}).values():
            for event in events:
                extra = dict(event.extra or {})
                entry = {k: extra.get(k) for k in ("uri", "generation_id", "model", "prompt", "size")}
                entry.update(duration=None, thumbnail=None)
                path = local_path(str(extra.get("uri", "")))
                if path is not None and path.exists():
                    sidecar = path.with_suffix(".probe.json")
                    try:
                        media = (json.loads(sidecar.read_text()) if sidecar.exists()
                                 else {**probe_video(path), "thumbnail": str(thumbnail(path))})
                        entry.update(duration=media["duration"], thumbnail=media["thumbnail"])
                    except MediaToolMissingError as exc:
                        print(f"Not probing {path}: {exc}")
                videos.append(entry)
        target = Path(output_dir) / "catalog" / f"manifest-{run_id.replace(':', '_')}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"run_id": run_id, "videos": videos}, indent=2))
        return str(target)

    write_manifest(output_dir="{{ var.value.get('kling_output_dir', '/tmp/kling') }}",
                   run_id="{{ run_id }}")
