"""A human pick among generations: the rules of :class:`KlingReviewOperator`, pure.

The review operator (``operators/review.py``) asks Airflow's human-in-the-loop machinery to
show a reviewer the candidates and waits without a worker slot; everything it decides is here,
without Airflow: which values are candidates (:func:`candidates`), what the reviewer is offered
(:func:`option_labels`, :func:`timeout_default`), what the request's body says
(:func:`review_body`), and what an answer means (:func:`outcome`: the chosen generation and the
:class:`Review` record). The record is a contract with the videos page (``gallery/``), which marks
the picked and unpicked candidates from the ``kling_review`` XCom, and with the Asset event of
the chosen video's download (its extra carries ``review``). Standard library only: parsing a DAG
file that builds a review loads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

from kling_provider._task.result import stored_result
from kling_provider.exceptions import KlingValidationError

__all__ = [
    "NONE_OPTION",
    "NOTE_PARAM",
    "ON_TIMEOUT",
    "REVIEW_PAGE",
    "REVIEW_XCOM_KEY",
    "Candidate",
    "OnTimeout",
    "Review",
    "candidates",
    "check_on_timeout",
    "option_labels",
    "outcome",
    "record",
    "review_body",
    "review_page_url",
    "timeout_default",
]

#: XCom of the review task: the candidates while it waits, then the :class:`Review` record.
REVIEW_XCOM_KEY = "kling_review"
#: The option that picks no video (the note says why; downstream is skipped).
NONE_OPTION = "None of these"
#: The form field of the reviewer's note.
NOTE_PARAM = "note"
#: What an unanswered review does when its ``response_timeout`` passes.
ON_TIMEOUT = ("skip", "first")
OnTimeout = Literal["skip", "first"]
#: The gallery's review page (under the plugin's ``/kling`` prefix, gallery.URL_PREFIX).
REVIEW_PAGE = "/kling/review"


@dataclass(frozen=True)
class Candidate:
    """One generation offered to the reviewer: what the review page and the body show."""

    number: int
    generation_id: str
    prompt: str | None
    model: str | None
    usd_spent: float | None
    credits_used: float | None
    duration: float | None
    video_url: str | None
    uri: str | None
    #: the generation's result as given (what a pick returns), not shown
    result: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def label(self) -> str:
        return f"Video {self.number}"

    def shown(self) -> dict[str, Any]:
        """What the review page shows of it (the XCom's ``details``): no result copy."""
        return {k: v for k, v in asdict(self).items() if k != "result"}


@dataclass(frozen=True)
class Review:
    """What the reviewer decided (the ``kling_review`` XCom and the chosen video's event).

    ``reviewer`` is ``None`` when nobody answered before ``response_timeout`` (``timed_out``)
    and the default outcome was taken."""

    chosen: str | None
    choice: str
    note: str
    reviewer: str | None
    reviewed_at: str | None
    timed_out: bool
    candidates: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["candidates"] = list(self.candidates)
        record["status"] = "picked" if self.chosen else "none"
        return record


def _number(value: Any) -> float | None:
    """A reported figure, also as a rendered template string (``"0.28"``); else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _refuse(task_id: str, value: Any, why: str) -> KlingValidationError:
    shown = repr(value)
    shown = shown if len(shown) <= 200 else shown[:200] + "…"
    return KlingValidationError(
        f"Task {task_id!r}: invalid parameter 'generations'={shown}: {why} Give one generation "
        "(the dict a Kling generate operator or the sensor returns) or a list of them, "
        "e.g. generations=generate.output of a mapped generate task.")


def candidates(generations: Any, *, task_id: str) -> list[Candidate]:
    """The candidates of ``generations`` (one result dict, or a sequence of them), in order.

    Each must name a completed generation (``generation_id`` and ``video_url``); one generation
    id given twice is refused, since the reviewer could not tell the two apart.
    """
    generations = stored_result(generations)
    if isinstance(generations, Mapping):
        generations = [generations]
    if isinstance(generations, (str, bytes)) or not isinstance(generations, Sequence):
        try:  # a mapped task's results arrive as a lazy sequence: any iterable of dicts
            generations = [stored_result(g) for g in generations]
        except TypeError:
            raise _refuse(task_id, generations, "expected a dict or a list of dicts.") from None
        if any(isinstance(g, (str, bytes, int)) for g in generations):
            raise _refuse(task_id, generations, "expected a dict or a list of dicts.")
    found: list[Candidate] = []
    seen: set[str] = set()
    for number, item in enumerate(generations, start=1):
        item = stored_result(item)
        if not isinstance(item, Mapping):
            raise _refuse(task_id, generations, f"item {number} is not a dict.")
        generation_id, video_url = _text(item.get("generation_id")), _text(item.get("video_url"))
        if generation_id is None:
            raise _refuse(task_id, generations, f"item {number} has no 'generation_id'.")
        if video_url is None:
            raise _refuse(task_id, generations, f"item {number} ({generation_id!r}) has no "
                                                "'video_url': it is not a completed generation.")
        if generation_id in seen:
            raise _refuse(task_id, generations, f"generation {generation_id!r} is given twice.")
        seen.add(generation_id)
        found.append(Candidate(
            number=number, generation_id=generation_id, prompt=_text(item.get("prompt")),
            model=_text(item.get("model")), usd_spent=_number(item.get("usd_spent")),
            credits_used=_number(item.get("credits_used")),
            duration=_number(item.get("duration")), video_url=video_url,
            uri=_text(item.get("uri")), result=dict(item)))
    if not found:
        raise _refuse(task_id, generations, "there is no generation to review.")
    return found


def check_on_timeout(value: Any, *, task_id: str) -> OnTimeout:
    if value not in ON_TIMEOUT:
        raise KlingValidationError(
            f"Task {task_id!r}: invalid parameter 'on_timeout'={value!r}: must be one of "
            f"{', '.join(repr(v) for v in ON_TIMEOUT)} ('skip': no video, downstream skipped; "
            "'first': the first candidate is picked).")
    return "skip" if value == "skip" else "first"


def option_labels(found: Sequence[Candidate]) -> list[str]:
    """What the reviewer chooses from: one option per candidate, then :data:`NONE_OPTION`."""
    return [c.label for c in found] + [NONE_OPTION]


def timeout_default(on_timeout: OnTimeout, found: Sequence[Candidate]) -> list[str]:
    """The option taken when nobody answers in time."""
    return [found[0].label] if on_timeout == "first" else [NONE_OPTION]


def review_page_url(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """The gallery's page showing this review's candidates side by side, playable."""
    query = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id}
    if map_index >= 0:
        query["map_index"] = str(map_index)
    return f"{REVIEW_PAGE}?{urlencode(query)}"


def _cell(value: str | None) -> str:
    """``value`` safe inside one Markdown table cell."""
    text = (value or "-").replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(text.split())[:200]


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def review_body(found: Sequence[Candidate], *, page_url: str, intro: str | None) -> str:
    """The request's Markdown: the user's text, the link to the players, one row per video."""
    rows = [f"| {c.label} | {_cell(c.prompt)} | {_cell(c.model)} | {_usd(c.usd_spent)} | "
            f"{_cell(c.generation_id)} |" for c in found]
    parts = [intro.strip()] if intro and intro.strip() else []
    parts += [f"[Watch the {len(found)} candidate{'s' if len(found) != 1 else ''} side by side]"
              f"({page_url})",
              "| Option | Prompt | Model | Cost | Generation |\n|---|---|---|---|---|\n"
              + "\n".join(rows),
              f"Pick one, or **{NONE_OPTION}** with a note saying what to change."]
    return "\n\n".join(parts)


def _reviewer(user: Any) -> str | None:
    if isinstance(user, Mapping):
        return _text(user.get("name")) or _text(user.get("id"))
    return None


def outcome(found: Sequence[Candidate], chosen_options: Sequence[str],
            params_input: Mapping[str, Any] | None, *, responded_by: Any,
            responded_at: Any, timed_out: bool) -> tuple[Candidate | None, Review]:
    """The chosen candidate (``None``: none of these) and the record of the decision.

    ``chosen_options`` must be exactly one of :func:`option_labels` (Airflow checks the answer
    against the options it stored; this is the one place that reads it)."""
    labels = option_labels(found)
    if len(chosen_options) != 1 or chosen_options[0] not in labels:
        raise KlingValidationError(
            f"Review answer {list(chosen_options)!r} is not one of the options {labels!r}.")
    choice = chosen_options[0]
    chosen = next((c for c in found if c.label == choice), None)
    note = (params_input or {}).get(NOTE_PARAM)
    at = responded_at.isoformat() if hasattr(responded_at, "isoformat") else _text(responded_at)
    review = Review(chosen=chosen.generation_id if chosen else None, choice=choice,
                    note=note.strip() if isinstance(note, str) else "",
                    reviewer=_reviewer(responded_by), reviewed_at=at, timed_out=timed_out,
                    candidates=tuple(c.generation_id for c in found))
    return chosen, review


def record(found: Sequence[Candidate], review: Review | None) -> dict[str, Any]:
    """The ``kling_review`` XCom: the candidates shown, and the decision once there is one."""
    decided = review.as_dict() if review else {"status": "waiting"}
    return {**decided, "details": [c.shown() for c in found]}
