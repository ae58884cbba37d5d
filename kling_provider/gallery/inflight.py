"""Generations in flight: how far along each is against its model's expected time, for the page.

A generation is in flight while the task that submitted it has not finished: its ``generation_id``
XCom is pushed right after the create POST, and the task is still deferred (waiting in the
triggerer), running (waiting on a worker) or about to resume. The expected time comes from the
same table the waits schedule their polls with (:func:`kling_provider._wait.timings.
documented_expectation`, per model and video length); the model is read off the generation id,
the length from the trigger's arguments when the task is deferred (5 s otherwise, the API's
default). ``progress`` and ``as_json`` are pure; ``load`` is the database edge; ``render`` and
:data:`SCRIPT` are the page's section, which re-reads ``api/in-flight`` to move the bars without
a reload (and reloads once the set of generations in flight changes, or a new video is stored:
a finished generation gets its player once its download has stored it).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from typing import Any

from sqlalchemy import select, tuple_

from kling_provider.gallery.records import TaskRef

#: Task instance states in which a submitted generation is still being waited for.
WAITING_STATES = ("deferred", "running", "queued", "scheduled", "up_for_reschedule", "restarting")


@dataclass(frozen=True)
class InFlight:
    """One generation being waited for."""

    generation_id: str
    source: TaskRef
    state: str
    submitted_at: datetime
    model: str | None
    duration: int | None
    early: float
    typical: float
    late: float


@dataclass(frozen=True)
class Progress:
    """Where a generation stands at one instant (seconds; ``fraction`` in [0, 0.99))."""

    elapsed: float
    fraction: float
    remaining: float
    late: bool


def expected(generation_id: str, duration: int | None) -> tuple[str | None, float, float, float]:
    """The model a generation id names and its ``(early, typical, late)`` seconds."""
    # the timings table: read only for a card in flight
    from kling_provider._wait.timings import documented_expectation, model_from_generation_id

    model = model_from_generation_id(generation_id)
    window = documented_expectation(model, duration)
    return model, window.early, window.typical, window.late


def progress(item: InFlight, now: datetime) -> Progress:
    """Elapsed against the typical time: 90 % at the typical time, then creeping towards 99 %
    (never done before it is; never moving back)."""
    elapsed = max(0.0, (now - item.submitted_at).total_seconds())
    typical = max(item.typical, 1.0)
    fraction = 0.9 * elapsed / typical if elapsed <= typical else 0.99 - 0.09 * typical / elapsed
    return Progress(elapsed=elapsed, fraction=fraction,
                    remaining=max(0.0, item.typical - elapsed), late=elapsed > item.late)


def as_json(item: InFlight, now: datetime) -> dict[str, Any]:
    where = progress(item, now)
    return {"generation_id": item.generation_id, "dag_id": item.source.dag_id,
            "run_id": item.source.run_id, "task_id": item.source.task_id,
            "map_index": item.source.map_index, "state": item.state, "model": item.model,
            "duration": item.duration, "submitted_at": item.submitted_at.isoformat(),
            "expected_seconds": {"early": item.early, "typical": item.typical, "late": item.late},
            "elapsed_seconds": round(where.elapsed, 1), "progress": round(where.fraction, 4),
            "eta_seconds": round(where.remaining, 1), "late": where.late}


def _duration(kwargs: dict[str, Any] | None) -> int | None:
    value = (kwargs or {}).get("duration")
    return int(value) if isinstance(value, (int, float, str)) and str(value).isdigit() else None


def load(dag_ids: Collection[str], generation_id: str | None = None,
         dag_id: str | None = None) -> list[InFlight]:
    """The generations in flight of ``dag_ids``, oldest submission first."""
    # ORM models (~0.4 s): every Airflow process loads this plugin, only page requests use them
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    wanted = set(dag_ids) & ({dag_id} if dag_id else set(dag_ids))
    if not wanted:
        return []
    # From the task instances still waiting (few, found by the state index) to their pushed
    # ids: the other way round reads every generation id ever pushed (0.2-0.9 s at 100,000).
    waiting = (select(TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id,
                      TaskInstance.map_index, TaskInstance.state, TaskInstance.trigger_id)
               .where(TaskInstance.state.in_(WAITING_STATES), TaskInstance.dag_id.in_(wanted)))
    found = []
    with create_session() as session:
        states = {tuple(row[:4]): (row[4], row[5]) for row in session.execute(waiting)}
        keys = list(states)
        rows: list[Any] = []
        for start in range(0, len(keys), 500):  # bound parameters per statement
            rows += session.scalars(select(XComModel).where(
                XComModel.key == "generation_id",
                tuple_(XComModel.dag_id, XComModel.run_id, XComModel.task_id,
                       XComModel.map_index).in_(keys[start:start + 500]))).all()
        for row in sorted(rows, key=lambda row: row.timestamp):
            state, trigger_id = states[(row.dag_id, row.run_id, row.task_id, row.map_index)]
            pushed = XComModel.deserialize_value(row)
            if not isinstance(pushed, str) or not pushed:
                continue
            if generation_id is not None and pushed != generation_id:
                continue
            kwargs = None
            if trigger_id is not None:
                trigger = session.get(Trigger, trigger_id)
                try:
                    kwargs = trigger.kwargs if trigger is not None else None
                except Exception:  # unreadable kwargs (another Fernet key): the default 5 s
                    kwargs = None
            duration = _duration(kwargs)
            model, early, typical, late = expected(pushed, duration)
            found.append(InFlight(
                generation_id=pushed, source=TaskRef(row.dag_id, row.run_id, row.task_id,
                                                     row.map_index),
                state=str(state), submitted_at=row.timestamp, model=model, duration=duration,
                early=early, typical=typical, late=late))
    return found


def latest_video(dag_ids: Collection[str]) -> int:
    """The newest stored video's Asset event id among ``dag_ids`` (0: none): the page reloads
    when it changes."""
    # ORM models (~0.4 s): every Airflow process loads this plugin, only page requests use them
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import func

    from kling_provider.gallery.store import VIDEOS_ASSET_URIS  # with them: it reads them too

    if not dag_ids:
        return 0
    with create_session() as session:
        newest = session.scalar(
            select(func.max(AssetEvent.id)).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri.in_(VIDEOS_ASSET_URIS), AssetEvent.source_dag_id.in_(dag_ids)))
    return int(newest or 0)


def _clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def render(items: Sequence[InFlight], latest: int = 0, now: datetime | None = None) -> str:
    """The "In flight" section (empty when nothing is): one card per generation with a bar;
    ``latest`` is :func:`latest_video`'s answer when the page was made."""
    if not items:
        return f'<section id="in-flight" data-ids="" data-latest="{latest}"></section>'
    now = now or datetime.now(timezone.utc)
    cards = []
    for item in items:
        where = progress(item, now)
        key = escape(item.generation_id, quote=True)
        eta = ("running late (expected by " + _clock(item.late) + ")" if where.late
               else "about " + _clock(where.remaining) + " left")
        cards.append(
            f'<div class="card inflight" data-generation-id="{key}" '
            f'data-submitted="{escape(item.submitted_at.isoformat(), quote=True)}" '
            f'data-typical="{item.typical}" data-late="{item.late}">'
            f'<div class="prompt">{escape(item.model or "unknown model")} '
            f'<small>({escape(item.state)}: {escape(item.source.dag_id)} / '
            f'{escape(item.source.task_id)})</small></div>'
            f'<progress max="1" value="{where.fraction:.4f}"></progress>'
            f'<div class="eta"><span class="elapsed">{_clock(where.elapsed)}</span> of about '
            f'{_clock(item.typical)} expected; <span class="left">{escape(eta)}</span></div>'
            f'<dl><dt>generation</dt><dd>{escape(item.generation_id)}</dd></dl></div>')
    ids = escape(" ".join(sorted(i.generation_id for i in items)), quote=True)
    return (f'<section id="in-flight" data-ids="{ids}" data-latest="{latest}"><h2>In flight</h2>'
            f'<div class="grid">{"".join(cards)}</div></section>')


STYLE = ".inflight progress{width:100%;height:14px} .eta{font-size:.85rem;color:#4a5568}"

# Moves the bars every second from the submission time; re-reads the list every 3 s and reloads
# the page when a generation left it (finished: its card now has a player) or a new one came.
SCRIPT = """
(function () {
  var section = document.getElementById('in-flight');
  if (!section) { return; }
  function clock(s) { s = Math.round(s); var m = Math.floor(s / 60), r = s % 60;
    return m ? m + ' min ' + (r < 10 ? '0' : '') + r + ' s' : r + ' s'; }
  function tick() {
    section.querySelectorAll('.inflight').forEach(function (card) {
      var elapsed = (Date.now() - Date.parse(card.dataset.submitted)) / 1000;
      var typical = Math.max(+card.dataset.typical, 1), late = +card.dataset.late;
      elapsed = Math.max(0, elapsed);
      card.querySelector('progress').value = elapsed <= typical ?
        0.9 * elapsed / typical : 0.99 - 0.09 * typical / elapsed;  // as progress() in Python
      card.querySelector('.elapsed').textContent = clock(elapsed);
      card.querySelector('.left').textContent = elapsed > late ?
        'running late (expected by ' + clock(late) + ')' :
        'about ' + clock(Math.max(0, typical - elapsed)) + ' left';
    });
  }
  function refresh() {
    fetch('api/in-flight' + location.search, {credentials: 'same-origin'})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (!body) { return; }
        var ids = body.in_flight.map(function (g) { return g.generation_id; }).sort().join(' ');
        if (ids !== section.dataset.ids || String(body.latest_video) !== section.dataset.latest) {
          location.reload();
        }
      }).catch(function () {});
  }
  setInterval(tick, 1000);
  setInterval(refresh, 3000);
})();
"""
