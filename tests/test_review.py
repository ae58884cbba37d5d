"""KlingReviewOperator: its options, its outcomes and the recorded pick.

The rules (:mod:`kling_provider._task.review`) are checked over inputs with Hypothesis; the operator
is the real class in a real DAG, resumed with the event Airflow's human-in-the-loop machinery
gives it (a reviewer's answer, or the timeout default), in a context holding what it reads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
from hypothesis import given
from hypothesis import strategies as st

from kling_provider._task.result import asset_extra, download_result
from kling_provider._task.review import (
    NONE_OPTION,
    REVIEW_XCOM_KEY,
    candidates,
    option_labels,
    outcome,
    review_body,
    timeout_default,
)
from kling_provider.exceptions import KlingValidationError
from kling_provider.operators.kling import KlingReviewOperator
from tests.conftest import context_for

MODEL = "kling-video/v1.6/standard/text-to-video"
AT = datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc)


def generation(n: int, **extra: Any) -> dict[str, Any]:
    return {"generation_id": f"gen-{n}", "video_url": f"http://127.0.0.1:1/v/{n}.mp4",
            "prompt": f"a raccoon, take {n}", "model": MODEL, "usd_spent": 0.28,
            "credits_used": 588000, "duration": 5.0, "status": "completed", **extra}


def review_dag(generations: Any, **kwargs: Any) -> tuple[KlingReviewOperator, DAG]:
    with DAG("review_dag", schedule=None) as dag:
        review = KlingReviewOperator(task_id="review", generations=generations, **kwargs)
        review >> [EmptyOperator(task_id="publish"), EmptyOperator(task_id="again")]
    return review, dag


def answer(option: str, note: str | None = None, user: str | None = "ana",
           timedout: bool = False) -> dict[str, Any]:
    return {"chosen_options": [option], "params_input": {} if note is None else {"note": note},
            "responded_at": AT, "responded_by_user": {"id": "7", "name": user} if user else None,
            "timedout": timedout}


def resume(review: KlingReviewOperator, event: dict[str, Any]) -> tuple[Any, dict[str, Any],
                                                                           list[str]]:
    """What the task returns, the XComs it pushed and the tasks it skipped."""
    context = context_for(None)
    context["task"] = review
    try:
        returned = review.execute_complete(context, event)
        skipped: list[str] = []
    except Exception as exc:  # Airflow's skip() ends the task by raising DownstreamTasksSkipped
        if type(exc).__name__ != "DownstreamTasksSkipped":
            raise
        returned, skipped = None, sorted(exc.tasks)  # type: ignore[attr-defined]
    return returned, context["ti"].xcom, skipped


# -- options -------------------------------------------------------------------------------

@given(st.integers(min_value=1, max_value=12))
def test_one_option_per_candidate_then_none(count: int) -> None:
    found = candidates([generation(n) for n in range(count)], task_id="t")
    labels = option_labels(found)
    assert labels[-1] == NONE_OPTION and len(set(labels)) == count + 1
    assert [c.generation_id for c in found] == [f"gen-{n}" for n in range(count)]
    assert timeout_default("first", found) == [labels[0]]
    assert timeout_default("skip", found) == [NONE_OPTION]


def test_one_generation_alone_is_one_candidate() -> None:
    assert [c.label for c in candidates(generation(1), task_id="t")] == ["Video 1"]


@given(st.sampled_from(["0.28", "1", "0.0012"]))
def test_costs_given_as_rendered_strings_are_read(text: str) -> None:
    found = candidates([generation(1, usd_spent=text)], task_id="t")
    assert found[0].usd_spent == float(text)


@pytest.mark.parametrize(("generations", "said"), [
    ([], "no generation to review"),
    ("gen-1", "expected a dict or a list of dicts"),
    (7, "expected a dict or a list of dicts"),
    ([generation(1), "gen-2"], "item 2 is not a dict"),
    ([{"video_url": "http://x/1.mp4"}], "item 1 has no 'generation_id'"),
    ([{"generation_id": "g", "status": "in_progress"}], "it is not a completed generation"),
    ([generation(1), generation(1)], "'gen-1' is given twice"),
])
def test_bad_generations_refused_when_the_dag_is_parsed(generations: Any, said: str) -> None:
    with pytest.raises(KlingValidationError) as refused:
        review_dag(generations)
    assert "'generations'" in str(refused.value) and said in str(refused.value)
    assert "'review'" in str(refused.value)


@pytest.mark.parametrize(("kwargs", "said"), [
    ({"on_timeout": "pick"}, "'on_timeout'='pick': must be one of 'skip', 'first'"),
    ({"response_timeout": 3600}, "'response_timeout'=3600: expected a positive"),
    ({"response_timeout": timedelta(0)}, "expected a positive datetime.timedelta"),
    ({"none_task_ids": [3]}, "'none_task_ids'=[3]"),
    ({"options": ["a"]}, "parameter 'options' is not accepted"),
    ({"defaults": ["a"]}, "parameter 'defaults' is not accepted"),
    ({"multiple": True}, "parameter 'multiple' is not accepted"),
])
def test_bad_options_refused_when_the_dag_is_parsed(kwargs: dict[str, Any], said: str) -> None:
    with pytest.raises(KlingValidationError, match="'review'") as refused:
        review_dag([generation(1)], **kwargs)
    assert said in str(refused.value)


def test_templated_generations_wait_for_the_run() -> None:
    review, _ = review_dag("{{ ti.xcom_pull('generate') }}")
    assert "generations" in review.template_fields


def test_none_task_ids_must_be_direct_downstream_tasks() -> None:
    review, _ = review_dag([generation(1)], none_task_ids=["elsewhere"])
    context = context_for(None)
    with pytest.raises(KlingValidationError, match=r"\['elsewhere'\] are not direct downstream"):
        review.execute(context)


def test_the_body_links_the_players_and_lists_each_candidate() -> None:
    found = candidates([generation(1), generation(2, prompt="a | b\nc", usd_spent=None)],
                       task_id="t")
    body = review_body(found, page_url="/kling/review?dag_id=d", intro="Pick for Monday")
    assert body.startswith("Pick for Monday\n\n[Watch the 2 candidates side by side]"
                           "(/kling/review?dag_id=d)")
    assert "| Video 1 | a raccoon, take 1 | " + MODEL + " | $0.28 | gen-1 |" in body
    assert "| Video 2 | a \\| b c |" in body and "| - | gen-2 |" in body


# -- outcomes ------------------------------------------------------------------------------

@given(st.integers(min_value=1, max_value=8), st.data())
def test_picking_video_n_returns_candidate_n(count: int, data: st.DataObject) -> None:
    found = candidates([generation(n) for n in range(count)], task_id="t")
    pick = data.draw(st.sampled_from(option_labels(found)))
    chosen, review = outcome(found, [pick], {"note": "ok"}, responded_by={"name": "ana"},
                             responded_at=AT, timed_out=False)
    if pick == NONE_OPTION:
        assert chosen is None and review.chosen is None
    else:
        assert chosen is not None and chosen.label == pick
        assert review.chosen == chosen.generation_id == chosen.result["generation_id"]
    assert review.candidates == tuple(c.generation_id for c in found)


@given(st.lists(st.text(max_size=12), min_size=1, max_size=3))
def test_an_answer_other_than_exactly_one_option_is_refused(chosen: list[str]) -> None:
    found = candidates([generation(1), generation(2)], task_id="t")
    if len(chosen) == 1 and chosen[0] in option_labels(found):
        return
    with pytest.raises(KlingValidationError, match="is not one of the options"):
        outcome(found, chosen, None, responded_by=None, responded_at=None, timed_out=False)


def test_a_pick_returns_that_generation_and_skips_the_none_branch() -> None:
    review, _ = review_dag([generation(1), generation(2), generation(3)],
                           none_task_ids="again")
    _returned, xcom, skipped = resume(review, answer("Video 2", note="  the better light "))
    assert skipped == ["again"]
    record = {"chosen": "gen-2", "choice": "Video 2", "note": "the better light",
              "reviewer": "ana", "reviewed_at": AT.isoformat(), "timed_out": False,
              "candidates": ["gen-1", "gen-2", "gen-3"], "status": "picked"}
    # skip() ends the task before Airflow pushes what it returns: the operator pushed it first
    assert xcom["return_value"] == {**generation(2), "review": record}
    assert {k: v for k, v in xcom[REVIEW_XCOM_KEY].items() if k != "details"} == record
    assert [d["generation_id"] for d in xcom[REVIEW_XCOM_KEY]["details"]] == \
        ["gen-1", "gen-2", "gen-3"]


def test_none_skips_the_publishing_branch_and_keeps_the_note() -> None:
    review, _ = review_dag([generation(1), generation(2)], none_task_ids=["again"])
    _returned, xcom, skipped = resume(review, answer(NONE_OPTION, note="slower, at dusk"))
    assert skipped == ["publish"] and "return_value" not in xcom
    assert xcom[REVIEW_XCOM_KEY]["status"] == "none"
    assert xcom[REVIEW_XCOM_KEY]["note"] == "slower, at dusk"
    assert xcom[REVIEW_XCOM_KEY]["chosen"] is None


def test_none_without_a_none_branch_skips_every_downstream_task() -> None:
    review, _ = review_dag([generation(1)])
    _, xcom, skipped = resume(review, answer(NONE_OPTION))
    assert skipped == ["again", "publish"] and xcom[REVIEW_XCOM_KEY]["note"] == ""


@pytest.mark.parametrize(("on_timeout", "chosen", "skipped"), [
    ("skip", None, ["again", "publish"]), ("first", "gen-1", []),
    (None, None, ["again", "publish"])])  # not given: "skip", as docs/howto/review.rst says
def test_a_timeout_takes_the_default_outcome(on_timeout: str | None, chosen: str | None,
                                             skipped: list[str]) -> None:
    chosen_outcome = {} if on_timeout is None else {"on_timeout": on_timeout}
    review, _ = review_dag([generation(1), generation(2)], response_timeout=timedelta(hours=4),
                           **chosen_outcome)
    review._offer()
    assert review.defaults is not None
    event = answer(review.defaults[0], user=None, timedout=True)  # what Airflow resumes with
    returned, xcom, were_skipped = resume(review, event)
    assert were_skipped == skipped
    record = xcom[REVIEW_XCOM_KEY]
    assert record["chosen"] == chosen and record["reviewer"] is None and record["timed_out"]
    assert (returned or {}).get("generation_id") == chosen


def test_the_chosen_videos_download_puts_the_review_on_its_asset_event() -> None:
    review, _ = review_dag([generation(1), generation(2)])
    returned, _, _ = resume(review, answer("Video 1", note="ship it"))
    extra = asset_extra(download_result(returned, uri="file:///v/gen-1.mp4", size=9,
                                        downloaded=True))
    assert extra["generation_id"] == "gen-1" and extra["review"]["note"] == "ship it"
    assert extra["review"]["reviewer"] == "ana" and extra["review"]["chosen"] == "gen-1"
    assert "review" not in asset_extra(download_result(generation(1), uri="u", size=1,
                                                       downloaded=True))


def test_waiting_it_writes_the_request_and_records_the_candidates(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The request Airflow stores (what the required-actions view shows) is made of the
    candidates, then the task waits without its worker: Airflow's edge records the request."""
    from airflow.providers.standard.operators import hitl

    written: list[dict[str, Any]] = []
    monkeypatch.setattr(hitl, "upsert_hitl_detail", lambda **request: written.append(request))
    review, _ = review_dag([generation(1), generation(2)], body="For the launch",
                           on_timeout="first", assigned_users={"id": "7", "name": "ana"})
    context = context_for(None)
    context["task_instance"] = context["ti"]
    context["ti"].id = "ti-uuid"
    with pytest.raises(BaseException) as waiting:  # Airflow's "wait for input" signals
        review.execute(context)
    assert type(waiting.value).__name__ in {"TaskAwaitingInput", "TaskDeferred"}
    [request] = written
    assert request["options"] == ["Video 1", "Video 2", NONE_OPTION]
    assert request["defaults"] == ["Video 1"] and request["multiple"] is False
    assert set(request["params"]) == {"note"}
    assert request["assigned_users"] == [{"id": "7", "name": "ana"}]  # passed through
    assert request["body"].startswith("For the launch\n\n[Watch the 2 candidates")
    assert ("(/kling/review?dag_id=dag&run_id=manual__2026-11-21T00%3A00%3A00%2B00%3A00"
            "&task_id=generate)") in request["body"]
    record = context["ti"].xcom[REVIEW_XCOM_KEY]
    assert record["status"] == "waiting"
    assert [d["generation_id"] for d in record["details"]] == ["gen-1", "gen-2"]


def test_json_round_trip_of_the_record() -> None:
    review, _ = review_dag([generation(1)])
    _, xcom, _ = resume(review, answer("Video 1"))
    assert json.loads(json.dumps(xcom[REVIEW_XCOM_KEY])) == xcom[REVIEW_XCOM_KEY]


def test_without_airflows_hitl_operators_the_error_names_the_minimum_version() -> None:
    """Airflow before 3.1 has no human-in-the-loop operators (its standard provider refuses to
    import them): the import fails saying which Airflow is needed."""
    code = ("import sys; sys.modules['airflow.providers.standard.operators.hitl'] = None\n"
            "from kling_provider.operators.kling import KlingReviewOperator")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode != 0
    assert "KlingReviewOperator needs Airflow 3.1 or newer" in done.stderr
    assert "installed: Airflow 3." in done.stderr
