"""The videos page's routes under a real auth manager, on a real metadata DB, with real files.

The plugin's FastAPI app (``create_app()``, as ``KlingGalleryPlugin.fastapi_apps`` mounts it) is
called in-process (Starlette's test client) with Airflow's SimpleAuthManager in multi-team mode:
DAGs of team ``red`` are readable only by red users, ``public`` by every viewer. Its JWTs are real: signed
and checked by the auth manager. Where SimpleAuthManager cannot refuse a part of a DAG (XCom,
task instances, Assets), ``tests.gallery_auth.EntityDenyingAuthManager`` changes that one answer.

A hostile DAG author is modelled as what they can do: write ``kling://videos`` Asset events
(straight into the metadata DB here, as a task's outlet does) whose ``uri`` names any file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from kling_provider.gallery import files
from tests.gallery_site import DAGS, ENTITIES, SAMPLE, SIMPLE, Site, make_site


@pytest.fixture
def site(tmp_path: Path, airflow_db_template: Path) -> Iterator[Site]:
    yield from make_site(tmp_path, airflow_db_template, SIMPLE)


def _open_fds_on(path: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                found.append(fd)
        except OSError:
            continue
    return found


# -- who gets in ----------------------------------------------------------------------------

def test_anonymous_and_forged_callers_get_401_and_the_page_sends_them_to_login(site: Site) -> None:
    video = site.store("a.mp4", "gen-red")
    event_id = site.event("red_dag", video.as_uri(), "gen-red")
    with site.client() as anonymous:
        for path in ("/api/videos", f"/videos/{event_id}.mp4", f"/videos/{event_id}/poster.jpg"):
            answer = anonymous.get(path)
            assert answer.status_code == 401, path
            assert answer.headers["www-authenticate"] == "Bearer"
        forged = anonymous.get(f"/videos/{event_id}.mp4",
                               headers={"Authorization": "Bearer not-a-token"})
        assert forged.status_code == 401
        page = anonymous.get("/", follow_redirects=False)
        assert page.status_code == 303 and "/auth/login" in page.headers["location"]


def test_no_docs_or_schema_routes_answer_even_logged_in(site: Site) -> None:
    for user in (None, "admin"):
        with site.client(user) as client:
            for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
                assert client.get(path).status_code == 404, (user, path)


# -- what each user sees --------------------------------------------------------------------

def test_each_user_lists_only_the_dags_airflow_lets_them_read(site: Site) -> None:
    for dag_id in DAGS:
        video = site.store(f"{dag_id}.mp4", f"gen-{dag_id}")
        site.event(dag_id, video.as_uri(), f"gen-{dag_id}", prompt=f"secret prompt of {dag_id}",
                   usd_spent=1.25)
    seen = {}
    for user in ("admin", "red", "blue", "nobody"):
        with site.client(user) as client:
            listing = client.get("/api/videos").json()
            seen[user] = sorted(v["source"]["dag_id"] for v in listing["videos"])
            page = client.get("/").text
            for dag_id in DAGS:
                assert (f"secret prompt of {dag_id}" in page) == (dag_id in seen[user])
            # Money is an exact decimal string in the JSON, as summed (no trailing zeros).
            assert listing["spend"]["total"]["usd"] == {1: "1.25", 2: "2.5", 3: "3.75"}[
                len(seen[user])]
    assert seen == {"admin": ["blue_dag", "public_dag", "red_dag"],
                    "red": ["public_dag", "red_dag"], "blue": ["blue_dag", "public_dag"],
                    "nobody": ["public_dag"]}


def test_a_dag_you_may_not_read_answers_like_an_event_that_does_not_exist(site: Site) -> None:
    video = site.store("red.mp4", "gen-red")
    event_id = site.event("red_dag", video.as_uri(), "gen-red")
    with site.client("red") as red:
        assert red.get(f"/videos/{event_id}.mp4").status_code == 200
    with site.client("blue") as blue:
        answers = [blue.get(path, headers=headers) for path, headers in [
            (f"/videos/{event_id}.mp4", {}), (f"/videos/{event_id}.mp4", {"Range": "bytes=0-9"}),
            (f"/videos/{event_id}/poster.jpg", {}), ("/videos/999999.mp4", {}),
            ("/videos/999999/poster.jpg", {})]]
    assert {(a.status_code, a.text) for a in answers} == {(404, '{"detail":"No such video."}')}


def test_entity_permissions_are_asked_like_airflow_does(tmp_path: Path,
                                                        airflow_db_template: Path) -> None:
    denied = "no_xcom=XCOM,no_ti=TASK_INSTANCE,no_asset=ASSET"
    for entities in make_site(tmp_path, airflow_db_template, ENTITIES,
                              KLING_TEST_DENIED_ENTITIES=denied):
        video = entities.store("public.mp4", "gen-public")
        event_id = entities.event("public_dag", video.as_uri(), "gen-public", prompt="visible?")
        outcome = {}
        for user in ("nobody", "no_xcom", "no_ti", "no_asset"):
            with entities.client(user) as client:
                listing = client.get("/api/videos").json()["videos"]
                outcome[user] = (len(listing), client.get(f"/videos/{event_id}.mp4").status_code,
                                 "visible?" in client.get("/").text)
        assert outcome == {"nobody": (1, 200, True), "no_xcom": (0, 404, False),
                           "no_ti": (0, 404, False), "no_asset": (0, 404, False)}


# -- ranges ---------------------------------------------------------------------------------

def test_whole_file_ranges_and_416_and_every_handle_is_closed(site: Site) -> None:
    video = site.store("ranges.mp4", "gen-r")
    data = video.read_bytes()
    size = len(data)
    event_id = site.event("public_dag", video.as_uri(), "gen-r")
    url = f"/videos/{event_id}.mp4"
    with site.client("nobody") as client:
        whole = client.get(url)
        assert (whole.status_code, whole.content) == (200, data)
        assert whole.headers["content-type"] == "video/mp4"
        assert whole.headers["content-length"] == str(size)
        assert whole.headers["accept-ranges"] == "bytes"
        part = client.get(url, headers={"Range": "bytes=100-199"})
        assert (part.status_code, part.content) == (206, data[100:200])
        assert part.headers["content-range"] == f"bytes 100-199/{size}"
        assert part.headers["content-length"] == "100"
        tail = client.get(url, headers={"Range": "bytes=-16"})
        assert (tail.status_code, tail.content) == (206, data[-16:])
        for header in (f"bytes={size}-", "bytes=" + "9" * 5000 + "-",
                       "bytes=0-" + "9" * 5000, "bytes=-" + "1" * 5000):
            beyond = client.get(url, headers={"Range": header})
            assert beyond.status_code == 416, header[:40]
            assert beyond.headers["content-range"] == f"bytes */{size}"
        ignored = client.get(url, headers={"Range": "bytes=5-2"})
        assert (ignored.status_code, ignored.content) == (200, data)
    assert _open_fds_on(video) == []


def test_the_size_served_is_the_open_files_not_the_paths(site: Site) -> None:
    video = site.store("swap.mp4", "gen-s")
    event_id = site.event("public_dag", video.as_uri(), "gen-s")
    stored = files.open_verified(video.as_uri(), "gen-s", files.configured_roots())
    try:
        video.unlink()  # replaced while open: the handle still holds the verified bytes
        video.write_bytes(b"\0\0\0\x20ftypisom" + b"x" * 10)
        assert stored.size == SAMPLE.stat().st_size
        assert b"".join(files.iter_bytes(stored.handle, 0, stored.size)) == SAMPLE.read_bytes()
    finally:
        stored.handle.close()
    with site.client("nobody") as client:  # and the replacement, without its sidecar match: no
        assert client.get(f"/videos/{event_id}.mp4").status_code == 404


def test_a_client_gone_mid_stream_leaves_no_open_file(site: Site) -> None:
    import asyncio

    from kling_provider.gallery import app as gallery_app

    video = site.store("gone.mp4", "gen-g")
    event_id = site.event("public_dag", video.as_uri(), "gen-g")
    with site.client("nobody") as client:
        token = client.headers["Authorization"]
    sent: list[str] = []
    received: list[int] = []

    async def receive() -> MutableMapping[str, Any]:
        if received:  # the request was read; the client sends nothing more until it is cancelled
            await asyncio.Event().wait()
        received.append(1)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(str(message["type"]))
        if message["type"] == "http.response.start":  # gone before the first byte
            raise OSError("the client went away")

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": f"/videos/{event_id}.mp4", "raw_path": b"",
             "query_string": b"", "root_path": "", "server": ("testserver", 80),
             "client": ("127.0.0.1", 1), "headers": [(b"authorization", token.encode())]}
    with pytest.raises(OSError, match="went away"):
        asyncio.run(gallery_app.create_app()(scope, receive, send))
    assert sent == ["http.response.start"]
    assert _open_fds_on(video) == []


def test_filters_bad_dates_and_headers(site: Site) -> None:
    video = site.store("f.mp4", "gen-f")
    site.event("public_dag", video.as_uri(), "gen-f", model="m1")
    with site.client("nobody") as client:
        assert [v["generation_id"] for v in client.get(
            "/api/videos", params={"model": "m1"}).json()["videos"]] == ["gen-f"]
        assert client.get("/api/videos", params={"model": "m2"}).json()["videos"] == []
        bad = client.get("/api/videos", params={"since": "yesterday"})
        assert (bad.status_code, bad.json()["detail"]) == (
            400, "Invalid since='yesterday': expected a date as YYYY-MM-DD.")
        assert client.get("/", params={"until": "2026-13-01"}).status_code == 400
        page = client.get("/")
        assert page.headers["cache-control"] == "no-store"
        event_id = client.get("/api/videos").json()["videos"][0]["event_id"]
        assert client.get(f"/videos/{event_id}.mp4").headers["cache-control"] == \
            "private, max-age=300"


def test_the_page_and_list_point_at_the_routes_and_say_why_a_file_is_not_served(
        site: Site, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from kling_provider.gallery import app as gallery_app

    video = site.store("p.mp4", "gen-p")
    event_id = site.event("public_dag", video.as_uri(), "gen-p")
    outside = site.event("public_dag", "file:///etc/passwd")
    with site.client("nobody") as client:
        listed = {v["event_id"]: v["url"] for v in client.get("/api/videos").json()["videos"]}
        assert listed == {event_id: f"/kling/videos/{event_id}.mp4",
                          outside: f"/kling/videos/{outside}.mp4"}
        page = client.get("/").text
        assert '<option value="public_dag">public_dag</option>' in page
        assert (f'poster="/kling/videos/{event_id}/poster.jpg"' in page) == \
            (shutil.which("ffmpeg") is not None)
        with caplog.at_level("WARNING", logger="kling_provider.gallery"):
            assert client.get(f"/videos/{outside}.mp4").status_code == 404
        assert f"not serving the file of Asset event {outside}: " in caplog.text
        assert "under no [kling] video_roots entry" in caplog.text
        if shutil.which("ffmpeg") is None:
            return
        monkeypatch.setattr(gallery_app, "_POSTERS_KEPT", 1)
        first = client.get(f"/videos/{event_id}/poster.jpg")
        assert first.headers["cache-control"] == "private, max-age=300"
        monkeypatch.setattr(files, "poster_jpeg", lambda handle: None)  # ffmpeg not run again:
        again = client.get(f"/videos/{event_id}/poster.jpg")
        assert (again.status_code, again.content) == (200, first.content)  # kept by SHA-256
        other = site.store("q.mp4", "gen-q", data=SAMPLE.read_bytes() + b"\0")
        monkeypatch.setattr(files, "poster_jpeg", lambda handle: b"\xff\xd8other")
        second = site.event("public_dag", other.as_uri(), "gen-q")
        assert client.get(f"/videos/{second}/poster.jpg").content == b"\xff\xd8other"
        # One kept: the first poster was dropped, so it is made again.
        assert list(gallery_app._POSTERS) == [hashlib.sha256(other.read_bytes()).hexdigest()]
        assert client.get(f"/videos/{event_id}/poster.jpg").content == b"\xff\xd8other"
