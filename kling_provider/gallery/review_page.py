"""The review page: one ``KlingReviewOperator``'s candidates side by side, playable.

Its required action's body links here (``/kling/review?dag_id=...&run_id=...&task_id=...``).
Built from the review task's ``kling_review`` XCom (:func:`kling_provider._task.review.record`)
by ``app.review``, which applies the videos page's access rules first. A candidate stored under
an Asset the user may read plays from the videos page's own route (its Asset event's file); one
not downloaded plays from the URL the API reported, which its generate task's XCom (readable by
the same user) already holds. Pure, like ``page``: every value goes through ``html.escape``.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any
from urllib.parse import quote, urlsplit

from kling_provider.gallery.page import video_url
from kling_provider.gallery.records import ReviewRow

_STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;color:#1a202c}
h1{font-size:1.3rem;margin:0 0 8px} .status{margin:0 0 12px;padding:8px;border-radius:6px;
background:#edf2f7} .row{display:flex;gap:14px;align-items:flex-start;overflow-x:auto}
.candidate{flex:1 1 0;min-width:280px;border:1px solid #e2e8f0;border-radius:8px;padding:10px;
background:#f7fafc} .candidate.picked{border:2px solid #38a169} video{width:100%;
background:#000;border-radius:4px} .label{font-weight:700} .prompt{margin:6px 0}
dl{display:grid;grid-template-columns:auto 1fr;gap:2px 8px;font-size:.8rem;margin:4px 0}
dt{color:#718096} dd{margin:0;overflow-wrap:anywhere} .none{color:#718096}
"""


def generation_ids(record: Mapping[str, Any]) -> list[str]:
    """The candidates' generation ids a review record names."""
    return [str(d["generation_id"]) for d in _details(record)]


def _details(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    details = record.get("details")
    return [d for d in details if isinstance(d, Mapping) and d.get("generation_id")] \
        if isinstance(details, list) else []


def _figure(value: Any, unit: str) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    return f"${value:,.2f}" if unit == "usd" else f"{value:,.0f}" if unit == "credits" \
        else f"{value:g} s"


def _player(candidate: Mapping[str, Any], event_id: int | None) -> str:
    if event_id is not None:
        source = video_url(event_id)
    else:
        remote = candidate.get("video_url")
        if not isinstance(remote, str) or urlsplit(remote).scheme not in ("http", "https"):
            return '<p class="none">No video to play.</p>'
        source = remote
    return f'<video controls preload="metadata" src="{escape(source)}"></video>'


def _status(row: ReviewRow) -> str:
    record = row.record
    note = record.get("note") or ""
    said = f" Note: {escape(str(note))}" if note else ""
    who = escape(str(record.get("reviewer") or "nobody (the timeout's default)"))
    when = escape(str(record.get("reviewed_at") or ""))
    if record.get("status") == "picked":
        return (f'<p class="status" id="status">Picked: {escape(str(record.get("choice")))} by '
                f"{who} at {when}.{said}</p>")
    if record.get("status") == "none":
        return f'<p class="status" id="status">None picked by {who} at {when}.{said}</p>'
    ref = row.source
    answer = (f"/dags/{quote(ref.dag_id, safe='')}/runs/{quote(ref.run_id, safe='')}/tasks/"
              f"{quote(ref.task_id, safe='')}/required_actions")
    return ('<p class="status" id="status">Waiting for a reviewer: watch the candidates, then '
            f'<a target="_top" href="{escape(answer)}">answer in Airflow</a>.</p>')


def _card(candidate: Mapping[str, Any], event_id: int | None, chosen: Any) -> str:
    number = candidate.get("number")
    picked = " picked" if chosen and candidate.get("generation_id") == chosen else ""
    return (f'<div class="candidate{picked}" data-generation-id='
            f'"{escape(str(candidate.get("generation_id")))}">'
            f'<div class="label">Video {escape(str(number))}{" (picked)" if picked else ""}</div>'
            f"{_player(candidate, event_id)}"
            f'<div class="prompt">{escape(str(candidate.get("prompt") or "(no prompt)"))}</div>'
            f'<dl><dt>model</dt><dd>{escape(str(candidate.get("model") or "-"))}</dd>'
            f'<dt>USD</dt><dd>{_figure(candidate.get("usd_spent"), "usd")}</dd>'
            f'<dt>credits</dt><dd>{_figure(candidate.get("credits_used"), "credits")}</dd>'
            f'<dt>duration</dt><dd>{_figure(candidate.get("duration"), "s")}</dd>'
            f'<dt>generation</dt><dd>{escape(str(candidate.get("generation_id")))}</dd></dl>'
            "</div>")


def render(row: ReviewRow, stored: Mapping[str, int]) -> str:
    """The page for review ``row``; ``stored`` maps a candidate's generation id to the event
    whose file the user may play."""
    chosen = row.record.get("chosen")
    cards = "".join(_card(d, stored.get(str(d["generation_id"])), chosen)
                    for d in _details(row.record))
    title = f"Review: {row.source.dag_id} / {row.source.run_id} / {row.source.task_id}"
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{escape(title)}</h1>{_status(row)}<div class=\"row\">{cards}</div>"
            "</body></html>")
