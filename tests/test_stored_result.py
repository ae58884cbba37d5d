"""A task's result read back from XCom as JSON text (Airflow 3.3.2, a task that ended in the
triggerer) is the same result to every reader: ``_task.result.stored_result``, the review's
candidates and the spend line's running total. The download's case is in ``test_download``."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kling_provider._task.result import stored_result
from kling_provider._task.review import candidates
from kling_provider._task.run_results import flatten

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(), inner, max_size=3), max_leaves=8)


@given(st.dictionaries(st.text(), JSON, max_size=5))
def test_a_dict_and_its_json_text_are_one_result(result: dict[str, Any]) -> None:
    assert stored_result(json.dumps(result)) == result
    assert stored_result(" " + json.dumps(result)) == result
    assert stored_result(result) is result


@given(st.text().filter(lambda t: not t.lstrip().startswith("{")) | st.integers() | st.none())
def test_anything_else_comes_back_unchanged(value: Any) -> None:
    assert stored_result(value) is value


def test_text_that_is_not_an_object_comes_back_unchanged() -> None:
    for text in ("{not json", "[1, 2]", '"{}"', "{"):
        assert stored_result(text) is text


def result(number: int) -> dict[str, Any]:
    return {"generation_id": f"g{number}", "video_url": f"https://cdn.test/{number}.mp4",
            "usd_spent": 1.4, "model": "klingai/v2-master-text-to-video"}


def test_review_candidates_given_as_json_text_are_the_candidates() -> None:
    as_dicts = candidates([result(1), result(2)], task_id="review")
    as_text = candidates([json.dumps(result(1)), json.dumps(result(2))], task_id="review")
    lazy = candidates(iter([json.dumps(result(1)), json.dumps(result(2))]), task_id="review")
    alone = candidates(json.dumps(result(1)), task_id="review")
    assert as_text == as_dicts == lazy and alone == as_dicts[:1]
    assert [c.generation_id for c in as_text] == ["g1", "g2"]


def test_the_running_total_reads_json_text_results() -> None:
    assert flatten([json.dumps(result(1)), [result(2), json.dumps(result(3))], None]) == [
        result(1), result(2), result(3)]
    assert flatten("not a result") == ["not a result"]
