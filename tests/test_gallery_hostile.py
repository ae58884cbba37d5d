"""What a hostile DAG author can make the videos page serve: only their own DAG's stored videos.

The author of ``public_dag`` (which every viewer reads) writes ``kling://videos`` Asset events
whose ``uri`` points anywhere: at ``/etc/passwd``, at ``red_dag``'s video (with or without its
generation id), at a symlink out of the root, at a non-MP4 with a well-formed sidecar, at a file
with no sidecar or a stale one. Each answers exactly like an event that does not exist, on the
video route (with and without a range) and the poster route, while the real videos still play.
ffmpeg is checked on its own: a playlist that would make it read another file gives no poster.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kling_provider._storage.identity import SIDECAR_SUFFIX, VideoIdentity, write_sidecar
from kling_provider.gallery import files
from tests.gallery_site import SAMPLE, SIMPLE, Site, make_site

NOT_FOUND = (404, '{"detail":"No such video."}')


@pytest.fixture
def site(tmp_path: Path, airflow_db_template: Path) -> Iterator[Site]:
    yield from make_site(tmp_path, airflow_db_template, SIMPLE)


def answers(site: Site, user: str, event_id: int) -> set[tuple[int, str]]:
    with site.client(user) as client:
        return {(a.status_code, a.text) for a in (
            client.get(f"/videos/{event_id}.mp4"),
            client.get(f"/videos/{event_id}.mp4", headers={"Range": "bytes=0-99"}),
            client.get(f"/videos/{event_id}/poster.jpg"))}


def plays(site: Site, user: str, event_id: int) -> bool:
    with site.client(user) as client:
        answer = client.get(f"/videos/{event_id}.mp4")
        return bool(answer.status_code == 200 and answer.content == SAMPLE.read_bytes())


def test_events_pointing_outside_what_the_provider_stored_are_404(site: Site,
                                                                  tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    elsewhere = site.store("elsewhere.mp4", "gen-x", under=outside)  # valid, but not in a root
    (site.root / "escape.mp4").symlink_to(elsewhere)
    (site.root / f"escape.mp4{SIDECAR_SUFFIX}").symlink_to(
        outside / f"elsewhere.mp4{SIDECAR_SUFFIX}")
    text = site.store("notes.mp4", "gen-text", data=b"#!/bin/sh\necho not a video\n")
    bare = site.root / "bare.mp4"
    bare.write_bytes(SAMPLE.read_bytes())  # no sidecar: of unknown origin
    stale = site.store("stale.mp4", "gen-stale")
    stale.write_bytes(SAMPLE.read_bytes()[:-1] + b"\0")  # same size, other bytes
    hostile = {
        "/etc/passwd": ("file:///etc/passwd", None),
        "/etc/passwd as a path": ("/etc/passwd", None),
        "a file outside the root": (elsewhere.as_uri(), "gen-x"),
        "a symlink out of the root": ((site.root / "escape.mp4").as_uri(), "gen-x"),
        "a non-MP4 with its sidecar": (text.as_uri(), "gen-text"),
        "no sidecar": (bare.as_uri(), None),
        "changed bytes": (stale.as_uri(), "gen-stale"),
        "a dot-dot path into the root": (
            f"file://{site.root}/../videos/{stale.name}", "gen-stale"),
        "an unresolved form of a stored file": (str(site.store("ok.mp4", "gen-ok")), "gen-ok"),
    }
    for what, (uri, generation_id) in hostile.items():
        event_id = site.event("public_dag", uri, generation_id)
        assert answers(site, "admin", event_id) == {NOT_FOUND}, what
        with site.client("nobody") as client:  # listed: the author's own DAG, but nothing plays
            listed = [v for v in client.get("/api/videos").json()["videos"]
                      if v["event_id"] == event_id]
            assert len(listed) == 1, what
    # The same files, stored as the download stores them, play.
    assert plays(site, "nobody", site.event("public_dag", (site.root / "ok.mp4").as_uri(),
                                            "gen-ok"))


def test_another_dags_video_stays_that_dags(site: Site) -> None:
    video = site.store("red.mp4", "gen-red")
    red_event = site.event("red_dag", video.as_uri(), "gen-red", prompt="red's prompt")
    copies = [site.event("public_dag", video.as_uri(), "gen-red"),  # the id copied too
              site.event("public_dag", video.as_uri(), None),
              site.event("public_dag", video.as_uri(), "gen-public")]
    for copy in copies:
        assert answers(site, "nobody", copy) == {NOT_FOUND}
        assert answers(site, "admin", copy) == {NOT_FOUND}  # not even for who may read both
    assert plays(site, "red", red_event)
    with site.client("nobody") as client:
        assert "red's prompt" not in client.get("/").text


def test_a_file_stored_for_another_generation_is_not_served(site: Site) -> None:
    video = site.store("mine.mp4", "gen-1")
    assert answers(site, "admin", site.event("public_dag", video.as_uri(), "gen-2")) == \
        {NOT_FOUND}
    assert answers(site, "admin", site.event("public_dag", video.as_uri(), None)) == {NOT_FOUND}
    assert plays(site, "admin", site.event("public_dag", video.as_uri(), "gen-1"))


def test_nothing_is_served_without_configured_roots(tmp_path: Path,
                                                    airflow_db_template: Path) -> None:
    for bare in make_site(tmp_path, airflow_db_template, SIMPLE, AIRFLOW__KLING__VIDEO_ROOTS=""):
        video = bare.store("a.mp4", "gen-a")
        assert answers(bare, "admin", bare.event("public_dag", video.as_uri(), "gen-a")) == \
            {NOT_FOUND}


def test_ffmpeg_reads_only_mp4_from_the_file_it_is_given(tmp_path: Path) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed here (tools/ensure-ffmpeg.sh installs it)")
    segment = tmp_path / "someone-elses.ts"
    subprocess.run([str(shutil.which("ffmpeg")), "-v", "error", "-i", str(SAMPLE), "-c", "copy",
                    str(segment)], check=True, timeout=60)
    # A text file ffmpeg would recognise by its content (an HLS playlist) and follow to another
    # file: with the format guessed, it makes a poster of that other video.
    playlist = tmp_path / "playlist.mp4"
    playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:2\n"
                        + f"#EXTINF:1.0,\n{segment}\n" * 2 + "#EXT-X-ENDLIST\n")
    with playlist.open("rb") as handle:
        assert files.poster_jpeg(handle) is None
    with SAMPLE.open("rb") as handle:
        assert (files.poster_jpeg(handle) or b"")[:2] == b"\xff\xd8"


@pytest.mark.parametrize(("size", "kept"), [(2_000_000, True), (2_000_001, False)])
def test_a_poster_over_two_megabytes_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                size: int, kept: bool) -> None:
    """docs/security.rst: a 2 MB cap on ffmpeg's output. An ffmpeg on PATH (a real program
    here) that ignores its ``-fs`` limit and writes more still gives no poster."""
    tool = tmp_path / "bin" / "ffmpeg"
    tool.parent.mkdir()
    tool.write_text(f"#!{sys.executable}\nimport sys\n"
                    f"sys.stdout.buffer.write(b'\\xff\\xd8' + b'x' * {size - 2})\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tool.parent))
    with SAMPLE.open("rb") as handle:
        poster = files.poster_jpeg(handle)
    assert (poster is not None and len(poster) == size) is kept


def test_a_stored_video_gets_its_poster(site: Site) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed here (tools/ensure-ffmpeg.sh installs it)")
    video = site.store("poster.mp4", "gen-p")
    event_id = site.event("public_dag", video.as_uri(), "gen-p")
    with site.client("nobody") as client:
        poster = client.get(f"/videos/{event_id}/poster.jpg")
    assert poster.status_code == 200 and poster.content[:2] == b"\xff\xd8"
    assert poster.headers["content-type"] == "image/jpeg"


def test_sidecar_fields_are_all_checked(tmp_path: Path) -> None:
    roots = files.Roots(local=(tmp_path,))
    target = tmp_path / "v.mp4"
    data = SAMPLE.read_bytes()
    target.write_bytes(data)
    good = hashlib.sha256(data).hexdigest()
    for size, sha256, generation_id in [(len(data) + 1, good, "g"), (len(data), "0" * 64, "g"),
                                        (len(data), good, "other")]:
        write_sidecar(target, VideoIdentity.of(generation_id, "https://cdn.test/v.mp4"),
                      size=size, sha256=sha256)
        with pytest.raises(files.NotServedError):
            files.open_verified(target.as_uri(), "g", roots)
    sidecar = tmp_path / f"v.mp4{SIDECAR_SUFFIX}"
    sidecar.write_text(json.dumps({"generation_id": "g", "size": len(data), "sha256": good,
                                   "padding": "x" * files.SIDECAR_LIMIT}))
    with pytest.raises(files.NotServedError, match="no identity sidecar"):
        files.open_verified(target.as_uri(), "g", roots)
    write_sidecar(target, VideoIdentity.of("g", "https://cdn.test/v.mp4"), size=len(data),
                  sha256=good)
    files.open_verified(target.as_uri(), "g", roots).handle.close()
