"""The gallery's FastAPI app, mounted on the api-server by the plugin.

Every route needs an Airflow user (:mod:`~kling_provider.gallery.access`) and shows only what
Airflow's own UI would show that user. A video is named by its Asset event id; the file's
location comes from that recorded event, never from the request, and is served only if the
provider provably stored it there (:mod:`~kling_provider.gallery.files`) for the event's DAG
(the first to record it, :func:`~kling_provider.gallery.store.owner_dag`). Every refusal of a
video, whatever the reason (no such event, a DAG the user may not see, a file not served), is
the same 404 that names nothing, so a user learns nothing about events they may not see.
"""

from __future__ import annotations

import logging
import shutil
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict
from datetime import date, datetime, timezone
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from kling_provider._models import feeds
from kling_provider.gallery import (
    access,
    budgets,
    files,
    inflight,
    page,
    queries,
    ranges,
    review_page,
    store,
)
from kling_provider.gallery.access import User
from kling_provider.gallery.records import (
    EventRow,
    Filters,
    Spend,
    Video,
    build_videos,
    mark_reviews,
    rollup,
)

log = logging.getLogger("kling_provider.gallery")

#: The one answer for a video a user may not have: it names no DAG and no reason.
NOT_FOUND = "No such video."


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
    return Filters(dag_id=query.get("dag_id") or None, run_id=query.get("run_id") or None,
                   model=query.get("model") or None,
                   since=_day("since", query.get("since")), until=_day("until", query.get("until")),
                   generation_id=query.get("generation_id") or None)


def _page_number(request: Request) -> int:
    value = request.query_params.get("page") or "1"
    if not value.isdigit() or not 1 <= int(value) <= 1_000_000:
        raise HTTPException(status_code=400, detail=f"Invalid page={value!r}: expected a page "
                                                    "number from 1.")
    return int(value)


def _listing(user: BaseUser, dag_ids: set[str], filters: Filters, number: int
             ) -> tuple[list[Video], Spend, queries.Listing]:
    """The page ``number`` of cards and the spend of every video matching ``filters`` among
    ``dag_ids`` (:func:`access.shown_dag_ids`: asked once per request)."""
    assets = access.readable_assets(user, store.videos_asset_ids())
    found = queries.listing(dag_ids, assets, filters,
                            offset=(number - 1) * page.PER_PAGE, limit=page.PER_PAGE)
    videos = build_videos(found.events, found.generations)
    runs = {(v.source.dag_id, v.source.run_id) for v in videos}
    return mark_reviews(videos, queries.reviews(runs)), rollup(found.groups, runs), found


def _stored_event(user: BaseUser, event_id: int) -> EventRow:
    event = store.load_event(event_id)
    if (event is None or not access.may_see_dag(user, event.source.dag_id)
            or event.asset_id not in access.readable_assets(user, [event.asset_id or 0])):
        raise HTTPException(status_code=404, detail=NOT_FOUND)
    return event


def _open(user: BaseUser, event_id: int) -> files.Stored:
    """The verified stored file of event ``event_id`` (the caller closes it), or 404."""
    event = _stored_event(user, event_id)
    uri, generation_id = event.extra.get("uri"), event.extra.get("generation_id")
    try:
        if not isinstance(uri, str) or not isinstance(generation_id, (str, type(None))):
            raise files.NotServedError("the event records no file URI")
        if store.owner_dag(uri) != event.source.dag_id:
            raise files.NotServedError(f"{uri!r} was first recorded by another DAG")
        return files.open_verified(uri, generation_id, files.configured_roots())
    except files.NotServedError as why:
        log.warning("Kling videos page: not serving the file of Asset event %d: %s", event_id, why)
        raise HTTPException(status_code=404, detail=NOT_FOUND) from None


def _login(request: Request) -> Response:
    login = access.auth_manager().get_url_login(next_url=str(request.url))
    return RedirectResponse(login, status_code=303)


def gallery_page(request: Request,
                 user: Annotated[BaseUser | None, Depends(access.optional_user)]) -> Response:
    if user is None:
        return _login(request)
    filters, number, dag_ids = _filters(request), _page_number(request), access.shown_dag_ids(user)
    now = datetime.now(timezone.utc)
    videos, spend, found = _listing(user, dag_ids, filters, number)
    html = page.render(videos, spend, filters, dag_ids=found.dag_ids, models=found.models,
                       number=number, posters=shutil.which("ffmpeg") is not None,
                       badges=feeds.badges({v.model for v in videos if v.model}),
                       in_flight=inflight.render(_in_flight(dag_ids, filters),
                                                 inflight.latest_video(dag_ids)),
                       money=budgets.render(budgets.load(dag_ids, now), now))
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


def review(request: Request, dag_id: str, run_id: str, task_id: str, map_index: int = -1,
           user: Annotated[BaseUser | None, Depends(access.optional_user)] = None) -> Response:
    """One review's candidates side by side (the link in its required action's body): shown
    under the videos page's rules, a DAG the user may not see is the same 404 as no review."""
    if user is None:
        return _login(request)
    found = queries.reviews([(dag_id, run_id)]) if access.may_see_dag(user, dag_id) else []
    mine = [r for r in found if (r.source.task_id, r.source.map_index) == (task_id, map_index)]
    if not mine:
        raise HTTPException(status_code=404, detail="No such review.")
    ids = review_page.generation_ids(mine[0].record)
    assets = access.readable_assets(user, store.videos_asset_ids())
    html = review_page.render(mine[0], queries.stored_copies(dag_id, run_id, ids, assets))
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


def list_videos(request: Request, user: User) -> dict[str, Any]:
    """One page of the matching videos (``page``, :data:`~kling_provider.gallery.page.PER_PAGE`
    each) and the spend of all of them (``by_run``: the runs of this page's videos)."""
    number = _page_number(request)
    videos, spend, _ = _listing(user, access.shown_dag_ids(user), _filters(request), number)
    return {"videos": [{**asdict(v), "url": page.video_url(v.event_id) if v.event_id else None}
                       for v in videos],
            "page": number, "per_page": page.PER_PAGE,
            "pages": page.pages(spend.total.count), "spend": asdict(spend)}


class _FileResponse(StreamingResponse):
    """Streams a stored file and closes it however the response ends (client gone included)."""

    def __init__(self, stored: files.Stored, start: int, length: int, **kwargs: Any) -> None:
        super().__init__(files.iter_bytes(stored.handle, start, length), media_type="video/mp4",
                         **kwargs)
        self.stored = stored

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.stored.handle.close()


def _in_flight(dag_ids: set[str], filters: Filters) -> list[inflight.InFlight]:
    return inflight.load(dag_ids, filters.generation_id, filters.dag_id)


def list_in_flight(request: Request, user: User) -> dict[str, Any]:
    """The generations in flight (same filters as the page), for the page's moving bars."""
    now, dag_ids = datetime.now(timezone.utc), access.shown_dag_ids(user)
    return {"in_flight": [inflight.as_json(item, now)
                          for item in _in_flight(dag_ids, _filters(request))],
            "latest_video": inflight.latest_video(dag_ids)}


def list_spend(user: User) -> dict[str, Any]:
    """The budgets and the reconciled spend the page shows (:mod:`~kling_provider.gallery.
    budgets`: from what tasks recorded; this never calls the API)."""
    now = datetime.now(timezone.utc)
    return {**budgets.as_json(budgets.load(access.shown_dag_ids(user), now), now),
            "as_of": now.isoformat()}


def video_file(event_id: int, request: Request, user: User) -> Response:
    stored = _open(user, event_id)
    size = stored.size
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=300"}
    wanted = ranges.parse_range(request.headers.get("range"), size)
    if isinstance(wanted, ranges.ByteRange):
        headers.update({"Content-Range": wanted.content_range(size),
                        "Content-Length": str(wanted.length)})
        return _FileResponse(stored, wanted.start, wanted.length, status_code=206,
                             headers=headers)
    if wanted is None:
        return _FileResponse(stored, 0, size, headers={**headers, "Content-Length": str(size)})
    stored.handle.close()  # ranges.UNSATISFIABLE
    return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})


_POSTERS: OrderedDict[str, bytes] = OrderedDict()
_POSTERS_KEPT = 64


def video_poster(event_id: int, user: User) -> Response:
    stored = _open(user, event_id)
    with stored.handle:
        jpeg = _POSTERS.get(stored.sha256)
        if jpeg is None and stored.local:
            jpeg = files.poster_jpeg(stored.handle)
    if jpeg is None:
        raise HTTPException(status_code=404, detail="No poster frame for this video.")
    _POSTERS[stored.sha256] = jpeg
    while len(_POSTERS) > _POSTERS_KEPT:
        _POSTERS.popitem(last=False)
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})


_ROUTES: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("/", gallery_page),
    ("/review", review),
    ("/api/videos", list_videos),
    ("/api/in-flight", list_in_flight),
    ("/api/spend", list_spend),
    ("/videos/{event_id}.mp4", video_file),
    ("/videos/{event_id}/poster.jpg", video_poster),
)


def create_app() -> FastAPI:
    """The app the plugin mounts at ``kling_provider.gallery.URL_PREFIX``.

    No ``/docs``, ``/redoc`` or ``/openapi.json``: they would answer without a login.
    """
    # openapi_url=None also turns off /docs and /redoc, which FastAPI serves only beside it.
    app = FastAPI(openapi_url=None)
    for path, endpoint in _ROUTES:  # GET only (FastAPI's default)
        app.add_api_route(path, endpoint)
    return app
