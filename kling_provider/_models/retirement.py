"""Model retirement as pure rules: the deprecation feed's entries, matching, and what they decide.

The AI/ML API publishes ``GET /v1/models/deprecations`` (read and cached by
:mod:`kling_provider._models.feeds`). Before the paid POST the hook's ``check_model`` finds the task's
model here and acts on :func:`verdict`: ``withdrawn`` fails (the API would answer 404),
``deprecated`` warns with the shutdown date, ``superseded`` notes the id the API resolves it to.
A create answered 404 names the entry through :func:`not_found_note`; ``tools/build_catalogue.py``
checks the shipped catalogue against the feed with :func:`inconsistencies`. No I/O here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from kling_provider.exceptions import KlingModelWithdrawnError

Status = Literal["deprecated", "superseded", "withdrawn"]
STATUSES: tuple[Status, ...] = ("deprecated", "superseded", "withdrawn")
#: How long a read feed is used before it is asked for again (the API's docs advise daily).
FRESH_SECONDS = 24 * 3600.0


class Retirement(NamedTuple):
    """One entry of the feed, as published (dates are ``YYYY-MM-DD`` strings or ``None``)."""

    id: str
    aliases: tuple[str, ...]
    status: Status
    deprecated_at: str | None = None
    shutdown_at: str | None = None
    replaced_by: str | None = None
    reason: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the model answers to: its id, then its aliases."""
        return (self.id, *self.aliases)


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def entry_from(item: Any) -> Retirement | None:
    """One feed item as a :class:`Retirement`, or ``None`` when it is not one (no id, an
    unknown status): a feed item the provider cannot read must not fail or block a task."""
    if not isinstance(item, Mapping):
        return None
    model, status = _text(item.get("id")), str(item.get("status") or "").strip().lower()
    if model is None or status not in STATUSES:
        return None
    aliases = item.get("aliases")
    names = tuple(a for a in map(_text, aliases if isinstance(aliases, list) else ()) if a)
    return Retirement(model, names, status, _text(item.get("deprecated_at")),
                      _text(item.get("shutdown_at")), _text(item.get("replaced_by")),
                      _text(item.get("reason")))


def entries_from(payload: Any) -> tuple[Retirement, ...] | None:
    """The readable entries of a feed answer (``{"object": "list", "data": [...]}``), or
    ``None`` when the answer is not a feed at all."""
    data = payload.get("data") if isinstance(payload, Mapping) else None
    if not isinstance(data, list):
        return None
    return tuple(e for e in map(entry_from, data) if e is not None)


def as_item(entry: Retirement) -> dict[str, Any]:
    """An entry in the feed's own JSON shape (what the caches and the shipped snapshot store)."""
    return {**entry._asdict(), "aliases": list(entry.aliases)}


def merged(shipped: Iterable[Retirement], live: Iterable[Retirement] | None
           ) -> tuple[Retirement, ...]:
    """The shipped snapshot overlaid with a read feed: the feed's entry wins for its model."""
    if live is None:
        return tuple(shipped)
    newer = tuple(live)
    known = {e.id for e in newer}
    return newer + tuple(e for e in shipped if e.id not in known)


def find(entries: Iterable[Retirement], model: str) -> Retirement | None:
    """The entry whose id or one of whose aliases is ``model`` (the name a DAG uses is often an
    alias). An exact id match wins over an alias match; surrounding blanks are ignored."""
    name = model.strip() if isinstance(model, str) else ""
    if not name:
        return None
    by_alias = None
    for entry in entries:
        if entry.id == name:
            return entry
        if by_alias is None and name in entry.aliases:
            by_alias = entry
    return by_alias


def _replacement(entry: Retirement) -> str:
    return (f"replaced by {entry.replaced_by!r}" if entry.replaced_by
            else "no replacement named (pick another model)")


def verdict(model: str, entry: Retirement, source: str) -> tuple[int, str]:
    """What the task does before paying for ``model``, listed in the feed as ``entry``: the log
    level and line; raises :class:`KlingModelWithdrawnError` for a withdrawn model."""
    named = model if model == entry.id else f"{model} ({entry.id})"
    if entry.status == "withdrawn":
        raise KlingModelWithdrawnError(
            f"Not submitting: model {named} was withdrawn by the AI/ML API on "
            f"{entry.shutdown_at or entry.deprecated_at or 'an unpublished date'} and its "
            f"requests now fail (404); {_replacement(entry)}. Change the task's 'model'. "
            f"Nothing was sent to the API ({source}).")
    if entry.status == "deprecated":
        when = (f"shuts down on {entry.shutdown_at}" if entry.shutdown_at
                else "has no shutdown date yet")
        return logging.WARNING, (
            f"Model {named} is deprecated (since {entry.deprecated_at or 'an unpublished date'})"
            f" and {when}; {_replacement(entry)}. It still runs: move the task before the "
            f"shutdown ({source}).")
    return logging.INFO, (
        f"Model {named} is superseded: the API runs it as {entry.replaced_by!r} (an alias of it "
        f"since {entry.deprecated_at or 'an unpublished date'}); switch to that id when "
        f"convenient ({source}).")


def refuse_withdrawn(model: str, entry: Retirement | None, source: str) -> None:
    """Raise :func:`verdict`'s :class:`KlingModelWithdrawnError` when ``entry`` is withdrawn."""
    if entry is not None and entry.status == "withdrawn":
        verdict(model, entry, source)


def catalogue_model(model: str, entry: Retirement | None, known: Callable[[str], bool]
                    ) -> str | None:
    """The catalogue model whose parameters ``model`` takes, given its feed ``entry`` (``known``
    says whether the catalogue has an id): ``model`` itself when known; for a name the feed
    lists, its entry's id (an alias of a catalogue model), else the id a superseded model runs
    as (``replaced_by``); ``None`` for a withdrawn model or when none of these is known."""
    if known(model):
        return model
    if entry is None or entry.status == "withdrawn":
        return None
    if known(entry.id):
        return entry.id
    if entry.status == "superseded" and entry.replaced_by and known(entry.replaced_by):
        return entry.replaced_by
    return None


def not_found_note(entry: Retirement | None) -> str:
    """What a 404 answer to a create adds when the model is in the feed ('' when it is not)."""
    if entry is None:
        return ""
    dated = entry.shutdown_at or entry.deprecated_at
    return (f" The model deprecation feed lists {entry.id!r} as {entry.status}"
            f"{f' ({dated})' if dated else ''}, {_replacement(entry)}.")


def badge(entry: Retirement | None) -> str | None:
    """The short label the videos page shows beside a model, or ``None``."""
    if entry is None:
        return None
    if entry.status == "deprecated":
        return f"deprecated, shuts down {entry.shutdown_at}" if entry.shutdown_at else "deprecated"
    return entry.status


def fresh(fetched_at: float, now: float) -> bool:
    """Whether a feed read at ``fetched_at`` is still used as is at ``now`` (epoch seconds):
    within a day, and not from the future (a clock set back must not pin a feed forever)."""
    return 0 <= now - fetched_at < FRESH_SECONDS


def inconsistencies(entries: Sequence[Retirement], catalogue: Iterable[str]) -> list[str]:
    """What contradicts between the shipped catalogue's model ids and the feed's Kling entries.

    A ``replaced_by`` the catalogue does not know would send users to a model the provider
    refuses; an alias that is another catalogue model would retire the wrong one; a model listed
    twice makes the decision depend on order.
    """
    known = set(catalogue)
    problems: list[str] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        for name in dict.fromkeys(entry.names):
            if name in seen:
                problems.append(f"{name!r} is listed by both {entries[seen[name]].id!r} and "
                                f"{entry.id!r}")
            seen.setdefault(name, index)
        if entry.replaced_by and entry.replaced_by not in known:
            problems.append(f"{entry.id!r} is {entry.status}, replaced by "
                            f"{entry.replaced_by!r}, which the catalogue does not know")
        problems += [f"{entry.id!r} has the alias {alias!r}, another catalogue model"
                     for alias in entry.aliases if alias in known and alias != entry.id]
    return problems
