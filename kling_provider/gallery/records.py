"""What the gallery lists, built from database rows by pure functions.

A video is one generation. Its stored copy comes from an Asset event on ``kling://videos`` (the
download operator's, or a generate task's with ``download_to``); what only the generate task
knows (status, credits, USD) comes from that task's XCom. Generations with no event yet (still
running, or never downloaded) are listed too, without a player. Only an Asset event's id can
name a file to serve, so the request never carries a path.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from kling_provider._money.spend import exact_amount

#: The XCom / extra fields the money side writes (absent on older runs: shown as "-").
CREDITS_KEYS = ("credits_used",)
USD_KEYS = ("usd_spent",)


@dataclass(frozen=True)
class TaskRef:
    """The task instance a record came from (for links and the per-DAG access check)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1


@dataclass(frozen=True)
class EventRow:
    """One ``kling://videos`` Asset event as read from the database."""

    event_id: int
    source: TaskRef
    timestamp: datetime
    extra: Mapping[str, Any]
    asset_id: int | None = None


@dataclass(frozen=True)
class GenerationRow:
    """A generate task's XCom: the ``generation_id`` it pushed and its return value, if any."""

    source: TaskRef
    timestamp: datetime
    generation_id: str
    result: Mapping[str, Any] | None


@dataclass(frozen=True)
class ReviewRow:
    """A review task's ``kling_review`` XCom (:func:`kling_provider._task.review.record`)."""

    source: TaskRef
    record: Mapping[str, Any]


@dataclass(frozen=True)
class Video:
    """One line of the gallery."""

    timestamp: datetime
    source: TaskRef
    generation_id: str | None = None
    event_id: int | None = None
    generate_task: TaskRef | None = None
    status: str = "stored"
    model: str | None = None
    prompt: str | None = None
    uri: str | None = None
    size: int | None = None
    duration: float | None = None
    credits_used: Decimal | None = None
    usd_spent: Decimal | None = None
    generation_seconds: float | None = None
    #: A decided review among whose candidates it was: ``status`` "picked" or "not picked",
    #: ``reviewer`` (``None``: the timeout's default), ``reviewed_at``, ``note``, ``task_id``.
    review: Mapping[str, Any] | None = None

    @property
    def stored(self) -> bool:
        return self.event_id is not None


@dataclass(frozen=True)
class Filters:
    """What the user narrowed the list to (all optional; dates are UTC days, inclusive). The
    database applies the same rules to every video (:mod:`~kling_provider.gallery.queries`)."""

    dag_id: str | None = None
    run_id: str | None = None
    model: str | None = None
    since: date | None = None
    until: date | None = None
    generation_id: str | None = None

    def accepts(self, video: Video) -> bool:
        day = video.timestamp.date()
        return ((self.dag_id is None or self.dag_id in (video.source.dag_id,
                                                          _dag_of(video.generate_task)))
                and (self.run_id is None or self.run_id in (video.source.run_id,
                                                            _run_of(video.generate_task)))
                and (self.model is None or video.model == self.model)
                and (self.since is None or day >= self.since)
                and (self.until is None or day <= self.until)
                and (self.generation_id is None or video.generation_id == self.generation_id))


@dataclass
class SpendLine:
    """Credits and USD of a group of generations; ``None`` sums: nothing reported.

    Sums of decimals (the figures as reported, ``Decimal(str(x))``): three $1.40 videos are
    $4.20, not the binary float sum 4.199999999999999.
    """

    label: str
    count: int = 0
    credits: Decimal | None = None
    usd: Decimal | None = None
    dag_id: str | None = None  # a DAG run's line: which run (the page links to it)
    run_id: str | None = None

    def add(self, count: int, credits: Decimal | None, usd: Decimal | None) -> None:
        self.count += count
        if credits is not None:
            self.credits = (self.credits or Decimal(0)) + credits
        if usd is not None:
            self.usd = (self.usd or Decimal(0)) + usd


@dataclass(frozen=True)
class SpendGroup:
    """The videos of one UTC day, model and DAG run, summed (by the database, or by
    :func:`summarise` from listed videos): what :func:`rollup` builds the summary from."""

    day: str
    model: str | None
    dag_id: str
    run_id: str
    count: int
    credits: Decimal | None
    usd: Decimal | None
    newest: datetime


@dataclass
class Spend:
    """The summary on top of the page: per UTC day (newest first), per model, per DAG run
    (newest first), and in total."""

    by_day: list[SpendLine] = field(default_factory=list)
    by_model: list[SpendLine] = field(default_factory=list)
    by_run: list[SpendLine] = field(default_factory=list)
    total: SpendLine = field(default_factory=lambda: SpendLine("total"))


def _dag_of(ref: TaskRef | None) -> str | None:
    return ref.dag_id if ref else None


def _run_of(ref: TaskRef | None) -> str | None:
    return ref.run_id if ref else None


def plain(value: Decimal | None) -> Decimal | None:
    """``value`` without trailing zeros or an exponent: ``2.50`` and ``2.500000`` are ``2.5``,
    ``1E+2`` is ``100`` (how the page's JSON writes every sum)."""
    if value is None:
        return None
    exact = value.normalize()
    return exact.quantize(Decimal(1)) if exact == exact.to_integral_value() else exact


def _money(values: Mapping[str, Any], keys: Iterable[str]) -> Decimal | None:
    for key in keys:
        if isinstance(values.get(key), (int, float)) and not isinstance(values.get(key), bool):
            return exact_amount(values[key])
    return None


def _number(values: Mapping[str, Any], keys: Iterable[str]) -> float | None:
    for key in keys:
        value = values.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def _text(values: Mapping[str, Any], key: str) -> str | None:
    value = values.get(key)
    return value if isinstance(value, str) and value else None


def _size(values: Mapping[str, Any]) -> int | None:
    for key in ("size", "file_size"):
        value = values.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _from_event(row: EventRow) -> Video:
    extra = row.extra
    return Video(
        timestamp=row.timestamp, source=row.source, event_id=row.event_id,
        generation_id=_text(extra, "generation_id"), model=_text(extra, "model"),
        prompt=_text(extra, "prompt"), uri=_text(extra, "uri"), size=_size(extra),
        duration=_number(extra, ("duration",)), credits_used=_money(extra, CREDITS_KEYS),
        usd_spent=_money(extra, USD_KEYS))


def _from_generation(row: GenerationRow) -> Video:
    result = row.result or {}
    status = _text(result, "status") or ("submitted" if row.result is None else "unknown")
    return Video(
        timestamp=row.timestamp, source=row.source, generation_id=row.generation_id,
        generate_task=row.source, status=status, model=_text(result, "model"),
        prompt=_text(result, "prompt"), uri=_text(result, "uri"), size=_size(result),
        duration=_number(result, ("duration",)), credits_used=_money(result, CREDITS_KEYS),
        usd_spent=_money(result, USD_KEYS),
        generation_seconds=_number(result, ("generation_seconds",)))


def _merge(stored: Video, generated: Video) -> Video:
    """The event's copy, completed with what only the generate task knows."""
    return replace(
        stored, generate_task=generated.generate_task,
        model=stored.model or generated.model, prompt=stored.prompt or generated.prompt,
        duration=stored.duration if stored.duration is not None else generated.duration,
        credits_used=(stored.credits_used if stored.credits_used is not None
                      else generated.credits_used),
        usd_spent=stored.usd_spent if stored.usd_spent is not None else generated.usd_spent,
        generation_seconds=generated.generation_seconds)


def build_videos(events: Iterable[EventRow], generations: Iterable[GenerationRow]) -> list[Video]:
    """One video per generation of a DAG run, newest first; the newest event wins for it. An
    event of another DAG or run naming the same id is another video (as in the summary)."""
    stored: dict[tuple[str, str, str], Video] = {}
    anonymous: list[Video] = []
    for row in sorted(events, key=lambda r: (r.timestamp, r.event_id), reverse=True):
        video = _from_event(row)
        if video.generation_id is None:
            anonymous.append(video)
        else:
            stored.setdefault((row.source.dag_id, row.source.run_id, video.generation_id), video)
    pending: list[Video] = []
    for generation in generations:
        video = _from_generation(generation)
        key = (generation.source.dag_id, generation.source.run_id, generation.generation_id)
        if key in stored:
            stored[key] = _merge(stored[key], video)
        else:
            pending.append(video)
    videos = [*stored.values(), *anonymous, *pending]
    return sorted(videos, key=lambda v: v.timestamp, reverse=True)


def summarise(videos: Iterable[Video]) -> Spend:
    """The spend of the listed generations (each counted once), as :func:`rollup` sums the
    database's groups."""
    groups = [SpendGroup(day=v.timestamp.date().isoformat(), model=v.model,
                         dag_id=v.source.dag_id, run_id=v.source.run_id, count=1,
                         credits=v.credits_used, usd=v.usd_spent, newest=v.timestamp)
              for v in videos]
    return rollup(groups)


def rollup(groups: Iterable[SpendGroup], runs: Collection[tuple[str, str]] | None = None
           ) -> Spend:
    """Per-day, per-model, per-run and total spend of ``groups``; ``by_run`` lists only
    ``runs`` (``(dag_id, run_id)``; ``None``: every run), newest first."""
    days: dict[str, SpendLine] = {}
    models: dict[str, SpendLine] = {}
    by_run: dict[tuple[str, str], SpendLine] = {}
    newest: dict[tuple[str, str], datetime] = {}
    spend = Spend()
    for group in groups:
        amounts = (group.count, group.credits, group.usd)
        days.setdefault(group.day, SpendLine(group.day)).add(*amounts)
        model = group.model or "(unknown model)"
        models.setdefault(model, SpendLine(model)).add(*amounts)
        run = (group.dag_id, group.run_id)
        if runs is None or run in runs:
            line = by_run.setdefault(run, SpendLine(f"{group.dag_id} / {group.run_id}",
                                                    dag_id=group.dag_id, run_id=group.run_id))
            line.add(*amounts)
            newest[run] = max(newest.get(run, group.newest), group.newest)
        spend.total.add(*amounts)
    for line in [*days.values(), *models.values(), *by_run.values(), spend.total]:
        line.credits, line.usd = plain(line.credits), plain(line.usd)
    spend.by_day = [days[d] for d in sorted(days, reverse=True)]
    spend.by_model = sorted(models.values(), key=lambda line: (-(line.usd or 0), line.label))
    spend.by_run = [by_run[r] for r in sorted(by_run, key=lambda r: (newest[r], r),
                                              reverse=True)]
    return spend


def mark_reviews(videos: Iterable[Video], reviews: Iterable[ReviewRow]) -> list[Video]:
    """``videos`` with each decided review's candidates marked picked or not picked (a
    candidate is the generation of that id in the review's DAG run; the newest review wins)."""
    marks: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in sorted(reviews, key=lambda r: str(r.record.get("reviewed_at") or "")):
        record, chosen = row.record, row.record.get("chosen")
        ids = record.get("candidates")
        if record.get("status") not in ("picked", "none") or not isinstance(ids, list):
            continue  # still waiting: nothing decided
        for generation_id in ids:
            marks[(row.source.dag_id, row.source.run_id, str(generation_id))] = {
                "status": "picked" if generation_id == chosen else "not picked",
                "reviewer": _text(record, "reviewer"), "note": _text(record, "note"),
                "reviewed_at": _text(record, "reviewed_at"), "task_id": row.source.task_id}
    return [replace(v, review=marks.get((v.source.dag_id, v.source.run_id, v.generation_id or "")))
            if v.generation_id else v for v in videos]
