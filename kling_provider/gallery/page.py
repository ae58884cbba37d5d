"""The gallery page as one self-contained HTML document (no JavaScript build, no CDN assets).

Pure: everything user- or API-supplied (prompts, ids, model names) goes through ``html.escape``;
URLs are built from quoted path segments. Links to Airflow's own pages target ``_top`` because
the Airflow UI shows this page in an iframe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from html import escape
from urllib.parse import quote, urlencode

from kling_provider.gallery import URL_PREFIX, budgets, inflight
from kling_provider.gallery.records import Filters, Spend, SpendLine, TaskRef, Video

_STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;color:#1a202c;background:#fff}
h1{font-size:1.4rem;margin:0 0 12px} h2{font-size:1rem;margin:16px 0 6px}
form{display:flex;gap:8px;flex-wrap:wrap;align-items:end;margin-bottom:12px}
label{display:flex;flex-direction:column;font-size:.8rem;gap:2px}
.spend{display:flex;gap:24px;flex-wrap:wrap} table{border-collapse:collapse;font-size:.85rem}
td,th{border-bottom:1px solid #e2e8f0;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:14px}
.card{border:1px solid #e2e8f0;border-radius:8px;padding:10px;background:#f7fafc}
.card.focus{border:2px solid #3182ce} .retiring{background:#fefcbf;color:#744210;
border-radius:4px;padding:0 4px;font-size:.75rem} video{width:100%;border-radius:4px;background:#000}
.pending{display:flex;align-items:center;justify-content:center;height:160px;background:#edf2f7;
border-radius:4px;color:#4a5568} .prompt{font-weight:600;margin:6px 0}
dl{display:grid;grid-template-columns:auto 1fr;gap:2px 8px;font-size:.8rem;margin:4px 0}
dt{color:#718096} dd{margin:0;overflow-wrap:anywhere} .links a{margin-right:10px;font-size:.85rem}
.empty{color:#718096} .pager a{margin-left:10px}
"""

# Fills "duration" from the player when neither the task nor the event reported it.
_SCRIPT = """
document.querySelectorAll('video').forEach(function (v) {
  v.addEventListener('loadedmetadata', function () {
    var cell = document.getElementById('duration-' + v.dataset.key);
    if (cell && cell.textContent === '-') { cell.textContent = v.duration.toFixed(1) + ' s'; }
  });
});
"""


#: Cards per page (the spend on top always covers every matching video).
PER_PAGE = 30


def pages(count: int) -> int:
    """How many pages ``count`` matching videos fill (at least one, the empty page)."""
    return max(1, -(-count // PER_PAGE))


def video_url(event_id: int) -> str:
    return f"{URL_PREFIX}/videos/{event_id}.mp4"


def poster_url(event_id: int) -> str:
    return f"{URL_PREFIX}/videos/{event_id}/poster.jpg"


def run_url(ref: TaskRef) -> str:
    return f"/dags/{quote(ref.dag_id, safe='')}/runs/{quote(ref.run_id, safe='')}"


def task_url(ref: TaskRef) -> str:
    url = f"{run_url(ref)}/tasks/{quote(ref.task_id, safe='')}"
    return f"{url}/mapped/{ref.map_index}" if ref.map_index >= 0 else url


def _money(value: Decimal | None, unit: str) -> str:
    """``$4.20`` (sub-cent amounts keep their digits: ``$0.00124``), ``8,400,000`` credits."""
    if value is None:
        return "-"
    if unit != "usd":
        return f"{value:,.0f}"
    return f"${value:,.2f}" if value == 0 or abs(value) >= Decimal("0.01") else f"${value:f}"


def _seconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:,.0f} s"


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{size:,} bytes"


def _options(name: str, values: Iterable[str], chosen: str | None) -> str:
    items = ['<option value="">all</option>']
    for value in sorted(set(values)):
        selected = " selected" if value == chosen else ""
        items.append(f'<option value="{escape(value)}"{selected}>{escape(value)}</option>')
    return f'<select name="{name}">{"".join(items)}</select>'


def _query(filters: Filters, **changes: object) -> str:
    """The page's URL for ``filters`` with ``changes`` (a page number, a run)."""
    values = {"dag_id": filters.dag_id, "run_id": filters.run_id, "model": filters.model,
              "since": filters.since, "until": filters.until,
              "generation_id": filters.generation_id, **changes}
    return f"{URL_PREFIX}/?" + urlencode({k: str(v) for k, v in values.items() if v})


def _filters(filters: Filters, dag_ids: Iterable[str], models: Iterable[str]) -> str:
    since = filters.since.isoformat() if filters.since else ""
    until = filters.until.isoformat() if filters.until else ""
    return (f'<form method="get" action="{URL_PREFIX}/">'
            f'<label>DAG{_options("dag_id", dag_ids, filters.dag_id)}</label>'
            f'<label>DAG run<input name="run_id" value="{escape(filters.run_id or "")}" '
            'placeholder="any run id"></label>'
            f'<label>Model{_options("model", models, filters.model)}</label>'
            f'<label>From<input type="date" name="since" value="{since}"></label>'
            f'<label>To<input type="date" name="until" value="{until}"></label>'
            '<button type="submit">Filter</button>'
            f'<a href="{URL_PREFIX}/">reset</a></form>')


def _spend_table(title: str, lines: Sequence[SpendLine], filters: Filters | None = None,
                 table_id: str = "") -> str:
    rows = []
    for line in lines:
        label = escape(line.label)
        if filters is not None and line.dag_id is not None:  # a run: its link narrows to it
            label = (f'<a href="{escape(_query(Filters(), dag_id=line.dag_id, run_id=line.run_id))}"'
                     f">{label}</a>")
        rows.append(f"<tr><td>{label}</td><td>{line.count}</td>"
                    f"<td>{_money(line.credits, 'credits')}</td><td>{_money(line.usd, 'usd')}</td>"
                    "</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    return (f'<table{ident}><tr><th>{title}</th><th>videos</th><th>credits</th><th>USD</th></tr>'
            f'{"".join(rows)}</table>')


def _pager(filters: Filters, number: int, count: int) -> str:
    last = pages(count)
    first_card = min(count, (number - 1) * PER_PAGE + 1)
    shown = f"{first_card:,}-{min(count, number * PER_PAGE):,} of {count:,}" if count else "0"
    links = []
    if number > 1:
        links.append(f'<a rel="prev" href="{escape(_query(filters, page=number - 1))}">newer</a>')
    if number < last:
        links.append(f'<a rel="next" href="{escape(_query(filters, page=number + 1))}">older</a>')
    return (f'<p class="pager" id="pager">Page {number:,} of {last:,} ({shown} generations) '
            f'{" ".join(links)}</p>')


def _spend(spend: Spend, filters: Filters) -> str:
    total = spend.total
    amounts = [f"{_money(total.usd, 'usd')}"] if total.usd is not None else []
    if total.credits is not None:
        amounts.append(f"{_money(total.credits, 'credits')} credits")
    spent = " = ".join(amounts) or "not reported"
    return (f"<h2>Spend: {spent} for {total.count} generation(s)</h2>"
            f'<div class="spend" id="spend">{_spend_table("day (UTC)", spend.by_day)}'
            f'{_spend_table("model", spend.by_model)}'
            f'{_spend_table("DAG run (of this page)", spend.by_run, filters, "runs")}</div>')


def _player(video: Video, key: str, posters: bool) -> str:
    if video.event_id is None:
        return f'<div class="pending">{escape(video.status)}: not downloaded</div>'
    poster = f' poster="{poster_url(video.event_id)}"' if posters else ""
    return (f'<video controls preload="metadata" data-key="{key}"{poster} '
            f'src="{video_url(video.event_id)}"></video>')


def _review(video: Video) -> str:
    """The card's review line: picked or not picked, by whom, when, and the note."""
    if not video.review:
        return ""
    review = video.review
    who = review.get("reviewer") or "the timeout's default"
    note = f": {review['note']}" if review.get("note") else ""
    return (f'<dt>review</dt><dd class="review">{escape(str(review.get("status")))} '
            f'({escape(str(review.get("task_id")))}, {escape(str(who))}, '
            f'{escape(str(review.get("reviewed_at") or "-"))}){escape(note)}</dd>')


def _model(model: str | None, badges: Mapping[str, str]) -> str:
    """A card's model, badged when the deprecation feed lists it (the API is retiring it)."""
    badge = badges.get(model or "")
    return escape(model or "-") + (f' <span class="retiring">{escape(badge)}</span>'
                                   if badge else "")


def _card(video: Video, index: int, focus: str | None, posters: bool,
          badges: Mapping[str, str]) -> str:
    key = f"v{index}"
    duration = f"{video.duration:g} s" if video.duration is not None else "-"
    links = [f'<a target="_top" href="{escape(run_url(video.source))}">DAG run</a>',
             f'<a target="_top" href="{escape(task_url(video.source))}">task</a>']
    if video.generate_task and video.generate_task != video.source:
        links.append(f'<a target="_top" href="{escape(task_url(video.generate_task))}">'
                     "generate task</a>")
    focused = " focus" if focus and video.generation_id == focus else ""
    return (f'<div class="card{focused}" data-generation-id="{escape(video.generation_id or "")}">'
            f"{_player(video, key, posters)}"
            f'<div class="prompt">{escape(video.prompt or "(no prompt recorded)")}</div><dl>'
            f"<dt>model</dt><dd>{_model(video.model, badges)}</dd>"
            f'<dt>duration</dt><dd id="duration-{key}">{duration}</dd>'
            f"<dt>size</dt><dd>{_size(video.size)}</dd>"
            f"<dt>credits</dt><dd>{_money(video.credits_used, 'credits')}</dd>"
            f"<dt>USD</dt><dd>{_money(video.usd_spent, 'usd')}</dd>"
            f"<dt>generated in</dt><dd>{_seconds(video.generation_seconds)}</dd>"
            f"<dt>status</dt><dd>{escape(video.status)}</dd>"
            f"<dt>when</dt><dd>{video.timestamp:%Y-%m-%d %H:%M:%S} UTC</dd>"
            f"<dt>DAG</dt><dd>{escape(video.source.dag_id)}</dd>"
            f"<dt>generation</dt><dd>{escape(video.generation_id or '-')}</dd>"
            f"{_review(video)}</dl>"
            f'<div class="links">{"".join(links)}</div></div>')


def render(videos: Sequence[Video], spend: Spend, filters: Filters, *, dag_ids: Iterable[str],
           models: Iterable[str], posters: bool, in_flight: str = "", number: int = 1,
           badges: Mapping[str, str] | None = None, money: str = "") -> str:
    """Page ``number`` of the cards, ``videos`` (already authorised and filtered), under the
    ``spend`` of every matching video; ``in_flight`` is the section of
    :func:`kling_provider.gallery.inflight.render`, shown on top; ``badges``: model -> its
    retirement label; ``money``: the budgets and reconciliation of
    :func:`kling_provider.gallery.budgets.render`, above the spend."""
    cards = "".join(_card(v, i, filters.generation_id, posters, badges or {})
                    for i, v in enumerate(videos))
    body = (f'<div class="grid">{cards}</div>' if videos else
            '<p class="empty">No Kling videos match (or none you may see). Videos appear here '
            "when a Kling generate or download task has run.</p>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Kling videos</title>"
            f"<style>{_STYLE}{inflight.STYLE}{budgets.STYLE}</style></head><body><h1>Kling videos</h1>"
            f"{_filters(filters, dag_ids, models)}{in_flight}{money}{_spend(spend, filters)}"
            f"<h2>Generations</h2>{_pager(filters, number, spend.total.count)}{body}"
            f"<script>{_SCRIPT}{inflight.SCRIPT}</script></body></html>")
