"""The gallery's pure rules: byte ranges, one video per generation, spend sums, safe HTML, link."""

from __future__ import annotations

import io
import shutil
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kling_provider.gallery import files, gallery_link, page
from kling_provider.gallery.ranges import UNSATISFIABLE, ByteRange, parse_range
from kling_provider.gallery.records import (
    EventRow,
    Filters,
    GenerationRow,
    TaskRef,
    build_videos,
    summarise,
)
from kling_provider.links import kling as link_module

SAMPLE = Path(link_module.__file__).parent.parent / "testing" / "sample.mp4"


@pytest.mark.parametrize(("header", "expected"), [
    (None, None),
    ("", None),
    ("bytes=0-99", ByteRange(0, 99)),
    ("bytes=100-", ByteRange(100, 999)),
    ("bytes=-10", ByteRange(990, 999)),
    ("bytes=-5000", ByteRange(0, 999)),
    ("bytes=900-5000", ByteRange(900, 999)),  # end past the file: clipped
    ("bytes=999-999", ByteRange(999, 999)),
    ("bytes=1000-", UNSATISFIABLE),
    ("bytes=1000-1001", UNSATISFIABLE),
    ("bytes=-0", UNSATISFIABLE),
    ("bytes=5-2", None),  # invalid: ignored, the whole file is sent
    ("items=0-1", None),
    ("bytes=0-1,4-5", None),  # several ranges: allowed to answer with the whole file
    ("bytes=x-y", None),
    ("bytes=" + "9" * 5000 + "-", UNSATISFIABLE),  # int() of 5,000 digits raises: bounded first
    ("bytes=0-" + "9" * 19, UNSATISFIABLE),
    ("bytes=-" + "9" * 19, UNSATISFIABLE),
    ("bytes=0-" + "9" * 18, ByteRange(0, 999)),
    (" Bytes = 10 - 19 ", ByteRange(10, 19)),  # the unit is case-insensitive; spaces allowed
    ("bytes=" + "0" * 17 + "5-", ByteRange(5, 999)),  # 18 digits: leading zeros still count
    ("bytes=" + "0" * 18 + "5-", UNSATISFIABLE),  # 19: past the bound, whatever their value
])
def test_parse_range(header: str | None, expected: object) -> None:
    assert parse_range(header, 1000) == expected


def test_byte_range_headers() -> None:
    wanted = parse_range("bytes=10-19", 1000)
    assert isinstance(wanted, ByteRange)
    assert (wanted.length, wanted.content_range(1000)) == (10, "bytes 10-19/1000")
    assert parse_range("bytes=0-", 0) == UNSATISFIABLE
    assert parse_range("bytes=-5", 0) == UNSATISFIABLE  # an empty file has no last bytes
    assert parse_range("bytes=-5", 1) == ByteRange(0, 0)


@settings(max_examples=300, derandomize=True)
@given(header=st.one_of(st.text(max_size=40), st.from_regex(
    r"\A\s*bytes\s*=\s*\d{0,30}\s*-\s*\d{0,30}\s*\Z")), size=st.integers(0, 10**12))
def test_any_header_gives_a_range_inside_the_file_or_whole_or_416(header: str,
                                                                   size: int) -> None:
    wanted = parse_range(header, size)
    assert wanted is None or wanted == UNSATISFIABLE or (
        isinstance(wanted, ByteRange) and 0 <= wanted.start <= wanted.end < size)


def at(hour: int, day: int = 21) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=timezone.utc)


RUN = "manual__2026-11-21T10:00:00+00:00"
GENERATE = TaskRef("kling_raccoon", RUN, "generate")
DOWNLOAD = TaskRef("kling_raccoon", RUN, "download")


def event(event_id: int, when: datetime, **extra: Any) -> EventRow:
    return EventRow(event_id=event_id, source=DOWNLOAD, timestamp=when, extra=extra)


def generation(generation_id: str, when: datetime, result: dict[str, Any] | None,
               source: TaskRef = GENERATE) -> GenerationRow:
    return GenerationRow(source=source, timestamp=when, generation_id=generation_id,
                         result=result)


def test_event_and_generate_xcom_make_one_video_with_the_spend() -> None:
    videos = build_videos(
        [event(7, at(11), uri="file:///v/a.mp4", size=2853, generation_id="g1",
               model="klingai/v2-master-text-to-video", prompt="A raccoon")],
        [generation("g1", at(10), {"status": "completed", "credits_used": 420000,
                                   "usd_spent": 2.1, "generation_seconds": 312.4,
                                   "model": "ignored-when-event-has-one"})])
    assert len(videos) == 1
    video = videos[0]
    assert (video.event_id, video.stored, video.source, video.generate_task) == \
        (7, True, DOWNLOAD, GENERATE)
    # Money as the decimal that was reported (not the binary float's expansion of 2.1).
    assert (video.credits_used, video.usd_spent, video.size) == (Decimal(420000),
                                                                  Decimal("2.1"), 2853)
    assert video.generation_seconds == 312.4
    html = page.render(videos, summarise(videos), Filters(), dag_ids=[], models=[], posters=False)
    assert "<dt>generated in</dt><dd>312 s</dd>" in html and "$2.10" in html
    assert video.model == "klingai/v2-master-text-to-video"


def test_event_values_win_and_missing_spend_stays_unknown() -> None:
    videos = build_videos([event(1, at(11), generation_id="g1", usd_spent=3.0)],
                          [generation("g1", at(10), {"status": "completed"})])
    assert (videos[0].usd_spent, videos[0].credits_used) == (Decimal("3.0"), None)


def test_pending_and_foreign_videos_are_listed_newest_first() -> None:
    videos = build_videos(
        [event(1, at(9), uri="file:///v/old.mp4", generation_id="g1"),
         event(2, at(12), uri="file:///v/new.mp4", generation_id="g1"),  # re-run: newest wins
         event(3, at(8), uri="file:///v/other.mp4")],  # another producer: no generation id
        [generation("g2", at(13), {"status": "generating", "model": "m2", "prompt": "p2"}),
         generation("g3", at(7), None)])  # submitted, no return value yet
    assert [(v.generation_id, v.event_id, v.status) for v in videos] == [
        ("g2", None, "generating"), ("g1", 2, "stored"), (None, 3, "stored"),
        ("g3", None, "submitted")]


def test_filters() -> None:
    videos = build_videos(
        [event(1, at(9, day=20), generation_id="g1", model="m1")],
        [generation("g2", at(9, day=21), {"model": "m2"},
                    source=TaskRef("other_dag", "r", "generate"))])
    assert [v.generation_id for v in videos if Filters(dag_id="other_dag").accepts(v)] == ["g2"]
    assert [v.generation_id for v in videos if Filters(model="m1").accepts(v)] == ["g1"]
    assert [v.generation_id for v in videos
            if Filters(since=date(2026, 11, 21)).accepts(v)] == ["g2"]
    assert [v.generation_id for v in videos
            if Filters(until=date(2026, 11, 20)).accepts(v)] == ["g1"]
    assert [v.generation_id for v in videos if Filters(generation_id="g1").accepts(v)] == ["g1"]


def test_spend_per_day_and_model() -> None:
    videos = build_videos([], [
        generation("a", at(9, day=20), {"model": "m1", "credits_used": 100, "usd_spent": 0.5}),
        generation("b", at(9, day=21), {"model": "m1", "credits_used": 300, "usd_spent": 1.5}),
        generation("c", at(10, day=21), {"model": "m2", "credits_used": 50}),
        generation("d", at(11, day=21), {"model": "m2"})])
    spend = summarise(videos)
    assert [(line.label, line.count, line.credits, line.usd) for line in spend.by_day] == [
        ("2026-11-21", 3, Decimal(350), Decimal("1.5")),
        ("2026-11-20", 1, Decimal(100), Decimal("0.5"))]
    assert [(line.label, line.count, line.credits, line.usd) for line in spend.by_model] == [
        ("m1", 2, Decimal(400), Decimal("2.0")), ("m2", 2, Decimal(50), None)]
    assert (spend.total.count, spend.total.credits, spend.total.usd) == (4, Decimal(450),
                                                                        Decimal("2.0"))


def test_page_escapes_what_users_wrote_and_links_into_airflow() -> None:
    run_id = "manual__2026/11?x"
    videos = build_videos(
        [EventRow(5, TaskRef("dag<b>", run_id, "download", 3), at(9),
                  {"generation_id": "g1", "prompt": "<script>alert(1)</script>",
                   "model": "m&1", "size": 2_500_000, "usd_spent": 0.25})],
        [generation("g9", at(8), {"status": "generating"})])
    html = page.render(videos, summarise(videos), Filters(generation_id="g1"),
                       dag_ids=["dag<b>"], models=["m&1"], posters=True)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "m&amp;1" in html
    assert 'src="/kling/videos/5.mp4"' in html and 'poster="/kling/videos/5/poster.jpg"' in html
    assert ('href="/dags/dag%3Cb%3E/runs/manual__2026%2F11%3Fx/tasks/download/mapped/3"'
            in html)
    assert 'target="_top"' in html
    assert html.count("<video") == 1  # the generating one has no file to play
    assert "generating: not downloaded" in html
    assert 'class="card focus" data-generation-id="g1"' in html
    assert "2.5 MB" in html and "$0.25" in html
    assert "Spend: $0.25 for 2 generation(s)" in html


def test_empty_page_says_why() -> None:
    html = page.render([], summarise([]), Filters(), dag_ids=[], models=[], posters=False)
    assert "No Kling videos match" in html and "<video" not in html
    assert "Spend: not reported for 0 generation(s)" in html


def _stored(target: Path, generation_id: str | None, data: bytes) -> None:
    import hashlib

    from kling_provider._storage.identity import VideoIdentity, write_sidecar

    target.write_bytes(data)
    write_sidecar(target, VideoIdentity.of(generation_id, "https://cdn.test/v.mp4"),
                  size=len(data), sha256=hashlib.sha256(data).hexdigest())


def test_stored_files_are_read_in_ranges(tmp_path: Path) -> None:
    target = tmp_path / "a b.mp4"
    _stored(target, "g1", SAMPLE.read_bytes())
    stored = files.open_verified(target.as_uri(), "g1", files.Roots(local=(tmp_path,)))
    assert stored.size == SAMPLE.stat().st_size and stored.local
    assert b"".join(files.iter_bytes(stored.handle, 10, 100)) == SAMPLE.read_bytes()[10:110]
    assert stored.handle.closed
    assert files.local_path(target.as_uri()) == target
    assert files.local_path(str(target)) == target
    assert files.local_path("s3://bucket/a.mp4") is None
    assert not files.looks_like_mp4(io.BytesIO(b"#!/bin/sh\necho not a video\n"))


def test_roots_come_from_the_config_text() -> None:
    roots = files.parse_roots(" /data/videos ,\nfile:///mnt/kling%20v, relative/dir, "
                              "s3://aws_default@bucket/videos,memory://m/x/")
    assert roots.local == (Path("/data/videos"), Path("/mnt/kling v"))
    assert roots.remote == ("s3://aws_default@bucket/videos/", "memory://m/x/")
    assert files.parse_roots("") == files.Roots()


def test_object_storage_copies_are_served_only_under_their_root() -> None:
    import fsspec
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import attach

    attach(protocol="memory", fs=fsspec.filesystem("memory"))  # as a provider attaches s3
    target = ObjectStoragePath("memory://gallery-test/videos/raccoon.mp4")
    target.write_bytes(SAMPLE.read_bytes())
    import hashlib

    from kling_provider._storage.identity import VideoIdentity, write_sidecar

    write_sidecar(target, VideoIdentity.of("g1", "https://cdn.test/v.mp4"),
                  size=SAMPLE.stat().st_size, sha256=hashlib.sha256(SAMPLE.read_bytes()).hexdigest())
    # The root as Airflow prints the folder the download wrote to: the memory filesystem has no
    # buckets, and Airflow 3.1's ObjectStoragePath prints it memory:///gallery-test/... (3.3:
    # memory://gallery-test/...); a bucket store such as s3://bucket/... prints alike in both.
    roots = files.Roots(remote=(f"{target.parent}/",))
    stored = files.open_verified(str(target), "g1", roots)
    assert stored.size == SAMPLE.stat().st_size and not stored.local
    assert b"".join(files.iter_bytes(stored.handle, stored.size - 16, 16)) == \
        SAMPLE.read_bytes()[-16:]
    for uri, root in [(str(target), "memory://gallery-test/other/"),
                      (str(target), "memory://conn_b@gallery-test/videos/"),
                      ("memory://gallery-test/videos/../videos/raccoon.mp4",
                       "memory://gallery-test/videos/")]:
        with pytest.raises(files.NotServedError):
            files.open_verified(uri, "g1", files.Roots(remote=(root,)))
    with pytest.raises(files.NotServedError, match="sidecar names generation"):
        files.open_verified(str(target), "g2", roots)
    target.unlink()


def test_poster_frame_with_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed here (tools/ensure-ffmpeg.sh installs it)")
    assert (files.POSTER_TIMEOUT, files.POSTER_LIMIT) == (30.0, 2_000_000)  # docs/security.rst
    with SAMPLE.open("rb") as handle:
        jpeg = files.poster_jpeg(handle)
        assert jpeg is not None and jpeg[:2] == b"\xff\xd8"
        monkeypatch.setattr(files, "POSTER_LIMIT", len(jpeg) - 1)  # output over the cap
        assert files.poster_jpeg(handle) is None
        monkeypatch.setattr(files, "POSTER_LIMIT", len(jpeg))
        monkeypatch.setattr(files, "POSTER_TIMEOUT", 0.0001)  # ffmpeg cannot finish in time
        assert files.poster_jpeg(handle) is None


def test_trigger_rows_hold_what_the_security_page_says() -> None:
    from kling_provider.operators._generate import Run
    from kling_provider.operators.kling import KlingTextToVideoOperator
    from kling_provider.triggers.kling import KlingGenerationTrigger, KlingSubmissionRecoveryTrigger

    _, wait = KlingGenerationTrigger(kling_conn_id="kling_default", generation_id="g",
                                     poll_interval=10, deadline=2.0).serialize()
    assert set(wait) == {"kling_conn_id", "generation_id", "poll_interval", "deadline",
                         "submitted_at", "poll_schedule", "model", "duration", "endpoint_family",
                         "end_from_trigger", "result_fields"}
    _, recovery = KlingSubmissionRecoveryTrigger(
        kling_conn_id="kling_default", client_request_id="r", model="m", since=1.0, deadline=2.0,
        poll_interval=10).serialize()
    assert set(recovery) == {"kling_conn_id", "client_request_id", "model", "since", "deadline",
                             "poll_interval"}
    fields: dict[bool, set[str]] = {}
    for ends in (True, False):
        task = KlingTextToVideoOperator(task_id=f"t{ends}", prompt="A raccoon",
                                        end_from_trigger=ends)
        completion = Run(task, {})._end_in_triggerer(None, 0.0, "A raccoon")
        fields[ends] = set(completion.fields()) if completion else set()
    assert fields == {True: {"model", "prompt", "paying", "estimated_usd", "run_tasks",
                             "mapped_run_tasks", "reservation"},
                      False: set()}


def test_extra_link_opens_the_gallery_at_the_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    stored: dict[str, Any] = {}
    from airflow.sdk.execution_time.xcom import XCom

    monkeypatch.setattr(XCom, "get_value",
                        lambda *, ti_key, key: stored.get(key))
    link = link_module.KlingVideoLink()
    assert link.get_link(None, ti_key="ti") == ""  # nothing submitted yet
    stored["video_url"] = ""  # submitted (or sensing) with no known id: nothing to open yet
    assert link.get_link(None, ti_key="ti") == ""
    stored["video_url"] = "https://cdn.example/v.mp4?sig=1"
    assert link.get_link(None, ti_key="ti") == stored["video_url"]  # no id known: the CDN URL
    stored["return_value"] = {"generation_id": "abc:kling/1"}  # the download task's result
    assert link.get_link(None, ti_key="ti") == gallery_link("abc:kling/1")
    stored["generation_id"] = "xyz"  # the generate task pushes its id
    assert link.get_link(None, ti_key="ti") == "/plugin/kling-videos/kling/?generation_id=xyz"
    stored["video_url"] = ""  # deferred, the video not made yet: the generation's card
    assert link.get_link(None, ti_key="ti") == "/plugin/kling-videos/kling/?generation_id=xyz"


def test_the_package_registers_the_plugin_where_airflow_always_looks() -> None:
    from importlib.metadata import entry_points

    from airflow.plugins_manager import AirflowPlugin

    from kling_provider import get_provider_info
    from kling_provider.gallery.plugin import KlingGalleryPlugin

    found = [e for e in entry_points(group="airflow.plugins") if e.name == "kling_gallery"]
    assert [e.load() for e in found] == [KlingGalleryPlugin]
    assert issubclass(KlingGalleryPlugin, AirflowPlugin)
    # Not in provider info too: with lazy_discover_providers=False it would load twice.
    assert "plugins" not in get_provider_info()
    (app,) = KlingGalleryPlugin.fastapi_apps
    (view,) = KlingGalleryPlugin.external_views
    assert app["url_prefix"] == "/kling" and view["href"] == "/kling/"
    assert (view["destination"], view["url_route"]) == ("nav", "kling-videos")
