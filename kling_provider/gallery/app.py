"""The gallery's FastAPI app, mounted on the api-server by the plugin.

Plugin apps get no authentication from Airflow, so every route here resolves the caller through
Airflow's auth manager (the same JWT the UI holds in its ``_token`` cookie, or a Bearer header)
and asks that auth manager which DAGs the caller may read. A video is named by its Asset event
id; the file's location comes from that recorded event, never from the request.
"""

from __future__ import annotations

import functools
import shutil
from dataclasses import asdict
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from kling_provider.gallery import files, page, ranges, store
from kling_provider.gallery.records import EventRow, Filters, Video, build_videos, summarise

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager


def _auth_manager() -> BaseAuthManager[Any]:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


async def optional_user(request: Request) -> BaseUser | None:
    """The Airflow user behind the request's token, or ``None`` (no token, expired, forged)."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from jwt import InvalidTokenError

    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    token = credentials if scheme.lower() == "bearer" else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    if not token:
        return None
    try:
        return await _auth_manager().get_user_from_token(token)
    except InvalidTokenError:  # includes ExpiredSignatureError
        return None


async def required_user(user: Annotated[BaseUser | None, Depends(optional_user)]) -> BaseUser:
    if user is None:
        raise HTTPException(status_code=401, detail="Not authenticated: log in to Airflow first.",
                            headers={"WWW-Authenticate": "Bearer"})
    return user


User = Annotated[BaseUser, Depends(required_user)]


def readable_dag_ids(user: BaseUser) -> set[str]:
    return set(_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def may_read_dag(user: BaseUser, dag_id: str) -> bool:
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    return _auth_manager().is_authorized_dag(method="GET", details=DagDetails(id=dag_id),
                                             user=user)


def _day(name: str, value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HTTPException(status_code=400, detail=f"Invalid {name}={value!r}: expected a date "
                                                    "as YYYY-MM-DD.") from None


def _filters(request: Request) -> Filters:
    query = request.query_params
    return Filters(dag_id=query.get("dag_id") or None, model=query.get("model") or None,
                   since=_day("since", query.get("since")), until=_day("until", query.get("until")),
                   generation_id=query.get("generation_id") or None)


def _videos(user: BaseUser) -> list[Video]:
    return build_videos(*store.load_rows(readable_dag_ids(user)))


def _stored_event(user: BaseUser, event_id: int) -> EventRow:
    event = store.load_event(event_id)
    if event is None:
        raise HTTPException(status_code=404, detail=f"No stored Kling video {event_id}.")
    if not may_read_dag(user, event.source.dag_id):
        raise HTTPException(status_code=403, detail=f"You may not read DAG "
                                                    f"{event.source.dag_id!r} of video {event_id}.")
    return event


def gallery_page(request: Request,
                 user: Annotated[BaseUser | None, Depends(optional_user)]) -> Response:
    if user is None:
        login = _auth_manager().get_url_login(next_url=str(request.url))
        return RedirectResponse(login, status_code=303)
    filters = _filters(request)
    everything = _videos(user)
    shown = [v for v in everything if filters.accepts(v)]
    html = page.render(shown, summarise(shown), filters,
                       dag_ids={v.source.dag_id for v in everything},
                       models={v.model for v in everything if v.model},
                       posters=shutil.which("ffmpeg") is not None)
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


def list_videos(request: Request, user: User) -> dict[str, Any]:
    filters = _filters(request)
    shown = [v for v in _videos(user) if filters.accepts(v)]
    spend = summarise(shown)
    return {"videos": [{**asdict(v), "url": page.video_url(v.event_id) if v.event_id else None}
                       for v in shown],
            "spend": asdict(spend)}


def video_file(event_id: int, request: Request, user: User) -> Response:
    event = _stored_event(user, event_id)
    uri = event.extra.get("uri")
    if not isinstance(uri, str) or not uri:
        raise HTTPException(status_code=404, detail=f"Video {event_id} records no stored copy.")
    try:
        handle, size = files.open_stored(uri)
    except (OSError, ValueError) as error:
        raise HTTPException(status_code=404, detail=f"The stored copy of video {event_id} is "
                                                    f"gone ({type(error).__name__}).") from None
    if not files.looks_like_mp4(handle):
        handle.close()
        raise HTTPException(status_code=404, detail=f"Video {event_id}'s file is not an MP4.")
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=300"}
    wanted = ranges.parse_range(request.headers.get("range"), size)
    if wanted == ranges.UNSATISFIABLE:
        handle.close()
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    if isinstance(wanted, ranges.ByteRange):
        headers.update({"Content-Range": wanted.content_range(size),
                        "Content-Length": str(wanted.length)})
        return StreamingResponse(files.iter_bytes(handle, wanted.start, wanted.length),
                                 status_code=206, media_type="video/mp4", headers=headers)
    headers["Content-Length"] = str(size)
    return StreamingResponse(files.iter_bytes(handle, 0, size), media_type="video/mp4",
                             headers=headers)


@functools.lru_cache(maxsize=256)
def _poster(uri: str, mtime_ns: int) -> bytes | None:
    path = files.local_path(uri)
    return files.poster_jpeg(path) if path else None


def video_poster(event_id: int, user: User) -> Response:
    event = _stored_event(user, event_id)
    uri = event.extra.get("uri")
    path = files.local_path(uri) if isinstance(uri, str) else None
    if path is None or not path.is_file():
        raise HTTPException(status_code=404, detail=f"No local copy of video {event_id} to "
                                                    "take a poster frame from.")
    jpeg = _poster(str(uri), path.stat().st_mtime_ns)
    if jpeg is None:
        raise HTTPException(status_code=404, detail="No poster frame (ffmpeg missing or failed).")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})


def create_app() -> FastAPI:
    """The app the plugin mounts at ``kling_provider.gallery.URL_PREFIX``."""
    app = FastAPI(title="Kling videos", description="Kling generations and their spend.")
    app.add_api_route("/", gallery_page, methods=["GET"], response_class=HTMLResponse)
    app.add_api_route("/api/videos", list_videos, methods=["GET"])
    app.add_api_route("/videos/{event_id}.mp4", video_file, methods=["GET"])
    app.add_api_route("/videos/{event_id}/poster.jpg", video_poster, methods=["GET"])
    return app
