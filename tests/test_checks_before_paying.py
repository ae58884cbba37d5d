"""Everything that can be checked before paying is checked before paying.

Templates runs without a logical date cannot render, model id typos, and text-to-video requests
without any text are refused when the DAG is parsed (mapped tasks included), not after a paid
generation.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG

from kling_provider._task.templates import logical_date_keys
from kling_provider.exceptions import KlingValidationError
from kling_provider.operators.kling import (
    KlingDownloadVideoOperator,
    KlingGenerateVideoOperator,
    KlingTextToVideoOperator,
)
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import StateStoreStub, context_for


@pytest.mark.parametrize(("template", "keys"), [
    ("/data/{{ ds }}/", ["ds"]),
    ("/data/{{ macros.ds_add(ds, 1) }}/{{ ts_nodash }}.mp4", ["ds", "ts_nodash"]),
    ("/data/{{ logical_date.year }}/{{ data_interval_start | ds }}/",
     ["data_interval_start", "logical_date"]),
    ({"a": ["{{ prev_data_interval_end_success }}"]}, ["prev_data_interval_end_success"]),
    ("/data/{{ dag_run.run_after | ds }}/", []),  # the ds *filter* on a value every run has
    ("/data/{{ run_id }}/{{ ti.map_index }}.mp4", []),
    ("{% set ds = 'x' %}/data/{{ ds }}/", []),  # defined by the template itself
    ("/data/ds/ts/", []),
    ("/data/{{ ds ", []),  # a syntax error is Airflow's to report
    (None, []),
])
def test_logical_date_keys(template: Any, keys: list[str]) -> None:
    assert logical_date_keys(template) == keys


def test_destination_needing_a_logical_date_fails_at_parse_time() -> None:
    with pytest.raises(KlingValidationError) as error:
        KlingDownloadVideoOperator(task_id="download", generation_id="g",
                                   destination="/data/kling/{{ ds }}/")
    message = str(error.value)
    assert "Task 'download'" in message and "'destination'" in message
    assert "{{ ds }}" in message
    assert "REST API" in message and "Asset-triggered" in message  # which runs it breaks
    assert "{{ dag_run.run_after | ds }}" in message  # and what to write instead
    with pytest.raises(KlingValidationError, match=r"'download_to'.*\{\{ ts \}\}"):
        KlingTextToVideoOperator(task_id="g", prompt="p", download_to="/data/{{ ts }}.mp4")
    KlingDownloadVideoOperator(task_id="ok", generation_id="g",
                               destination="/data/{{ dag_run.run_after | ds }}/")


def test_mapped_tasks_are_checked_at_parse_time_too() -> None:
    with DAG(dag_id="mapped", schedule=None, start_date=datetime(2026, 1, 1)):
        with pytest.raises(KlingValidationError, match=r"Task 'download'.*\{\{ ds \}\}"):
            KlingDownloadVideoOperator.partial(
                task_id="download", destination="/data/{{ ds }}/{{ ti.map_index }}.mp4",
            ).expand(generation_id=["a", "b"])
        with pytest.raises(KlingValidationError, match=r"'download_to'.*logical_date"):
            KlingTextToVideoOperator.partial(
                task_id="generate", download_to="/data/{{ logical_date }}/",
            ).expand(prompt=["a", "b"])
        with pytest.raises(KlingValidationError,
                           match="Did you mean 'klingai/v2.1-master-text-to-video'"):
            KlingGenerateVideoOperator.partial(
                task_id="typo", model="klingai/v2.1-mastr-text-to-video",
            ).expand(prompt=["a", "b"])
        mapped = KlingTextToVideoOperator.partial(
            task_id="fine", download_to="/data/{{ run_id }}/").expand(prompt=["a", "b"])
        allowed = KlingGenerateVideoOperator.partial(
            task_id="new", model="klingai/v9-text-to-video", allow_unknown_model=True,
        ).expand(prompt=["a"])
    assert mapped.partial_kwargs["download_to"] == "/data/{{ run_id }}/"
    assert allowed.partial_kwargs["allow_unknown_model"] is True


def test_model_typo_fails_at_parse_time_with_closest_ids() -> None:
    with pytest.raises(KlingValidationError) as error:
        KlingGenerateVideoOperator(task_id="g", model="klingai/v2-mastr-text-to-video",
                                   prompt="p")
    assert "Task 'g'" in str(error.value)
    assert "Did you mean 'klingai/v2-master-text-to-video'" in str(error.value)
    assert "allow_unknown_model=True" in str(error.value)


def test_allowed_unknown_model_is_sent_unvalidated(kling_env: Any, clock: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from kling_provider.hooks import _base as hook_base

    with KlingSimulator(clock=clock.monotonic, api_keys=None, accept_unknown_models=True) as sim:
        kling_env(sim.base_url)
        monkeypatch.setattr(hook_base, "SystemClock", lambda: clock)
        operator = KlingGenerateVideoOperator(
            task_id="g", model="klingai/v9-text-to-video", prompt="p", endpoint_family="unified",
            allow_unknown_model=True, deferrable=False, poll_interval=60)
        result = operator.execute(context_for(StateStoreStub()))
        (post,) = sim.ledger.entries(method="POST")
    assert result["status"] == "completed"
    assert post.path == "/v2/video/generations"


def test_text_to_video_without_text_is_refused_before_paying(
        airflow_sim: KlingSimulator) -> None:
    with pytest.raises(KlingValidationError,
                       match=r"Task 'v3'.*Missing parameter 'prompt' or 'multi_prompt'"):
        KlingTextToVideoOperator(task_id="v3", model="klingai/video-v3-pro-text-to-video",
                                 duration=5)
    KlingTextToVideoOperator(task_id="v3", model="klingai/video-v3-pro-text-to-video",
                             parameters={"multi_prompt": ["a fox", "a hound"]})
    templated = KlingTextToVideoOperator(task_id="t", model="klingai/video-v3-pro-text-to-video",
                                         prompt="{{ params.prompt }}", deferrable=False)
    templated.prompt = " "  # as if the template rendered an empty param
    with pytest.raises(KlingValidationError, match="'prompt'=' '.*empty"):
        templated.execute(context_for(StateStoreStub()))
    assert airflow_sim.ledger.count(method="POST") == 0


def test_readme_dag_parses_and_renders_in_every_kind_of_run() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(r"<!-- readme-snippet: dag -->\n```python\n(.*?)```", readme, re.S)
    assert block is not None
    namespace: dict[str, Any] = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)  # parsing = constructing
    (download,) = [t for t in namespace["video"].dag.tasks if t.task_id == "download"]
    assert logical_date_keys(download.destination) == []
    assert "{{ dag_run.run_after | ds }}" in download.destination
