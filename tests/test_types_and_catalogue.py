"""Status classification, the Generation type, and catalogue validation for every model."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_provider.catalogue import get_model, list_models, prepare_request
from kling_provider.exceptions import KlingValidationError
from kling_provider.types import (
    FAILURE_STATUSES,
    PENDING_STATUSES,
    SUCCESS_STATUSES,
    Generation,
    Stage,
    StatusClass,
    classify_status,
)


@pytest.mark.parametrize("status", ["queued", "waiting", "active", "generating", "processing",
                                    " Generating "])
def test_pending_statuses(status: str) -> None:
    assert classify_status(status) is StatusClass.PENDING


@pytest.mark.parametrize("status", ["error", "failed", "cancelled", "canceled", "aborted",
                                    "rejected", "expired", "FAILED"])
def test_failure_statuses(status: str) -> None:
    assert classify_status(status) is StatusClass.FAILURE


def test_success_and_unknown() -> None:
    assert classify_status("completed") is StatusClass.SUCCESS
    assert classify_status("complete") is StatusClass.UNKNOWN
    assert classify_status("") is StatusClass.UNKNOWN
    assert classify_status(None) is StatusClass.UNKNOWN


KNOWN_STATUSES = sorted(PENDING_STATUSES | SUCCESS_STATUSES | FAILURE_STATUSES)


@given(status=st.one_of(st.sampled_from(KNOWN_STATUSES), st.text(max_size=12)).map(
           lambda s: s if len(s) % 2 else f" {s.upper()} "),
       video_url=st.sampled_from([None, "", "https://cdn.example/v.mp4"]))
def test_a_generation_is_done_only_completed_with_its_video_url(status: str,
                                                                video_url: str | None) -> None:
    """The one done/failed/pending decision: a completed answer without its URL (the URL can
    lag the status) is not done yet; a failure is failed whatever else it carries; anything
    else waits, a status never seen told apart so the wait can say so."""
    stage = Generation(generation_id="g", status=status, video_url=video_url).stage
    state = classify_status(status)
    expected = {StatusClass.SUCCESS: Stage.DONE if video_url else Stage.AWAITING_URL,
                StatusClass.FAILURE: Stage.FAILED, StatusClass.PENDING: Stage.PENDING,
                StatusClass.UNKNOWN: Stage.UNKNOWN}[state]
    assert stage is expected
    assert (stage is Stage.DONE) == (status.strip().lower() in SUCCESS_STATUSES
                                     and bool(video_url))


def test_generation_from_seed_response_round_trips_json() -> None:
    body = {"id": "10c09c56-2e00-4a64-89ec-358ff71f8144:kling-video/v2/master/text-to-video",
            "status": "completed",
            "video": {"url": "https://cdn.example/output.mp4", "content_type": "video/mp4",
                      "file_name": "output.mp4", "file_size": 11664920}}
    generation = Generation.from_api(body)
    assert generation.video_url == "https://cdn.example/output.mp4"
    assert generation.file_size == 11664920
    assert generation.status_class is StatusClass.SUCCESS
    assert Generation.from_dict(json.loads(json.dumps(generation.to_dict()))) == generation


def test_generation_reads_both_error_and_usage_shapes() -> None:
    unified = Generation.from_api({"id": "g", "status": "error",
                                   "error": {"name": "ContentPolicy", "message": "blocked"},
                                   "meta": {"usage": {"credits_used": 42}}})
    legacy = Generation.from_api({"id": "g", "status": "error", "error": "quota",
                                  "meta": {"usage": {"tokens_used": 7}}})
    assert (unified.error_name, unified.error_message, unified.credits_used) == (
        "ContentPolicy", "blocked", 42.0)
    assert (legacy.error_name, legacy.error_message, legacy.credits_used) == (None, "quota", 7.0)


def _minimal(value_schema: dict[str, Any]) -> Any:
    """A valid value for a schema: enum first, else a plausible value of its type."""
    if "anyOf" in value_schema:
        return _minimal(value_schema["anyOf"][0])
    if "enum" in value_schema:
        return value_schema["enum"][0]
    kind = value_schema.get("type")
    if kind == "array":
        count = value_schema.get("minItems", 1)
        return [_minimal(value_schema.get("items", {"type": "string"})) for _ in range(count)]
    if kind == "object":
        props = value_schema.get("properties", {})
        return {k: _minimal(props[k]) for k in value_schema.get("required", [])}
    return {"integer": 5, "number": 0.5, "boolean": True}.get(str(kind), "https://x.test/a.png")


CASES = [(m, f) for m in list_models() for f in get_model(m).families]  # type: ignore[union-attr]


def test_catalogue_covers_both_families() -> None:
    assert len(list_models()) >= 45
    assert {f for _, f in CASES} == {"legacy", "unified"}
    assert get_model("klingai/v2.1-master-text-to-video").families == (  # type: ignore[union-attr]
        "legacy", "unified")


@pytest.mark.parametrize(("model", "family"), CASES)
def test_every_model_accepts_its_required_fields(model: str, family: str) -> None:
    spec = get_model(model)
    assert spec is not None
    props = spec.schemas[family]["properties"]
    needed = [*spec.required(family),  # and one of each "either A or B" group
              *(group[0] for group in spec.schemas[family].get("x-one-of-required", ()))]
    params = {name: _minimal(props[name]) for name in needed}
    prepared = prepare_request(model, params, family=family)
    assert prepared.family == family
    assert prepared.body["model"] == model


@pytest.mark.parametrize(("model", "family"), [c for c in CASES if get_model(c[0]).required(c[1])])  # type: ignore[union-attr]
def test_every_model_names_a_missing_required_field(model: str, family: str) -> None:
    spec = get_model(model)
    assert spec is not None
    missing = spec.required(family)[0]
    with pytest.raises(KlingValidationError, match=f"Missing parameter '{missing}'"):
        prepare_request(model, {}, family=family)


@pytest.mark.parametrize(("params", "message"), [
    ({"duration": 7}, r"'duration'=7 .*must be one of 5, 10"),
    ({"aspect_ratio": "4:3"}, r"'aspect_ratio'='4:3' .*must be one of '16:9', '9:16', '1:1'"),
    ({"cfg_scale": 1.5}, r"'cfg_scale'=1.5 .*between 0 and 1"),
    ({"cfg_scale": "high"}, r"'cfg_scale'='high' .*a finite number between 0 and 1"),
    ({"camera_control": {"type": "simple", "config": {"zoom": 11}}},
     r"'camera_control.config.zoom'=11 .*between -10 and 10"),
    ({"camera_control": {"type": "spin"}}, r"'camera_control.type'='spin'"),
    ({"seed": 3}, r"'seed'=3 .*not a parameter of this model.*extra_params"),
])
def test_bad_input_names_parameter_value_and_allowed(params: dict[str, Any], message: str) -> None:
    with pytest.raises(KlingValidationError, match=message):
        prepare_request("klingai/v2.1-master-text-to-video", {"prompt": "p", **params})


def test_image_to_video_needs_image_url() -> None:
    with pytest.raises(KlingValidationError, match="Missing parameter 'image_url'"):
        prepare_request("klingai/v2.1-master-image-to-video", {"prompt": "p"})


def test_multi_image_counts_and_v3_durations() -> None:
    with pytest.raises(KlingValidationError, match="'image_list'.*1 items given, allowed 2 to 4"):
        prepare_request("kling-video/v1.6/standard/multi-image-to-video",
                        {"image_list": ["https://x.test/a.png"]})
    body = prepare_request("klingai/video-v3-pro-text-to-video", {"prompt": "p", "duration": 15},
                           family="unified").body
    assert body["duration"] == 15


def test_templated_numbers_are_coerced() -> None:
    body = prepare_request("klingai/v2-master-text-to-video",
                           {"prompt": "p", "duration": "5", "cfg_scale": "0.9"}).body
    assert body["duration"] == 5
    assert body["cfg_scale"] == 0.9


def test_unified_only_model_goes_to_unified_and_none_is_dropped() -> None:
    prepared = prepare_request("klingai/video-v3-pro-text-to-video",
                               {"prompt": "p", "negative_prompt": None}, family="legacy")
    assert prepared.family == "unified"
    assert "negative_prompt" not in prepared.body


def test_family_specific_schema_is_used() -> None:
    # camera_control is an object on the legacy endpoint and a preset string on the unified one.
    prepare_request("klingai/v2.1-master-text-to-video",
                    {"prompt": "p", "camera_control": "down_back"}, family="unified")
    with pytest.raises(KlingValidationError, match="camera_control"):
        prepare_request("klingai/v2.1-master-text-to-video",
                        {"prompt": "p", "camera_control": "down_back"}, family="legacy")


def test_unknown_model_refused_with_closest_ids() -> None:
    with pytest.raises(KlingValidationError) as error:
        prepare_request("klingai/v2.1-master-text-to-vidoe", {"prompt": "p"})
    message = str(error.value)
    assert "'model'='klingai/v2.1-master-text-to-vidoe'" in message
    assert "Did you mean 'klingai/v2.1-master-text-to-video'" in message
    assert "allow_unknown_model=True" in message
    with pytest.raises(KlingValidationError, match="Did you mean 'klingai/video-v3-pro-text"):
        prepare_request("KlingAI/Video-V3-Pro-Text-To-Video", {"prompt": "p"}, family="unified")
    with pytest.raises(KlingValidationError, match="list_models"):
        prepare_request("runway/gen-4", {"prompt": "p"})  # nothing close: where to look


def test_unknown_model_passes_when_allowed(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        prepared = prepare_request("klingai/v9-ultra-text-to-video", {"prompt": "p", "fps": 60},
                                   family="unified", allow_unknown_model=True)
    assert prepared.known_model is False
    assert prepared.family == "unified"
    assert prepared.body == {"model": "klingai/v9-ultra-text-to-video", "prompt": "p", "fps": 60}
    assert "not in the Kling catalogue" in caplog.text


TEXT_MODELS = [m for m in list_models() if get_model(m).kind == "text-to-video"]  # type: ignore[union-attr]


@pytest.mark.parametrize("model", TEXT_MODELS)
def test_every_text_to_video_model_needs_some_text(model: str) -> None:
    spec = get_model(model)
    assert spec is not None
    for family in spec.families:
        with pytest.raises(KlingValidationError, match="Missing parameter 'prompt'"):
            prepare_request(model, {"duration": 5}, family=family)
        with pytest.raises(KlingValidationError, match="'prompt'='  '.*empty"):
            prepare_request(model, {"prompt": "  "}, family=family)  # blank is no prompt
        assert prepare_request(model, {"prompt": "a fox"}, family=family).body["prompt"] == "a fox"
        assert prepare_request(model, {}, family=family, pending={"prompt"}).known_model


def test_v3_multi_prompt_instead_of_prompt_but_not_both() -> None:
    model = "klingai/video-v3-pro-text-to-video"
    body = prepare_request(model, {"multi_prompt": ["a fox", "a hound"]}, family="unified").body
    assert body["multi_prompt"] == ["a fox", "a hound"]
    with pytest.raises(KlingValidationError, match="'prompt' and 'multi_prompt'.*mutually excl"):
        prepare_request(model, {"prompt": "a", "multi_prompt": ["b"]}, family="unified")
    with pytest.raises(KlingValidationError, match="'prompt' or 'multi_prompt'"):
        prepare_request(model, {"multi_prompt": []}, family="unified")


def test_extra_params_pass_unvalidated() -> None:
    body = prepare_request("klingai/v2.1-master-text-to-video", {"prompt": "p"},
                           extra_params={"seed": 3, "watermark": False}).body
    assert body["seed"] == 3
    assert body["watermark"] is False


@pytest.mark.parametrize("allow_unknown_model", [False, True])
def test_extra_params_may_not_name_another_model(allow_unknown_model: bool) -> None:
    model = "klingai/v2.1-master-text-to-video" if not allow_unknown_model else "kling/next"
    with pytest.raises(KlingValidationError,
                       match=r"extra_params\['model'\]='kling/other'.*'model' parameter"):
        prepare_request(model, {"prompt": "p"}, extra_params={"model": "kling/other"},
                        allow_unknown_model=allow_unknown_model)


def test_bad_family_and_model() -> None:
    with pytest.raises(KlingValidationError, match="endpoint family 'v3'"):
        prepare_request("klingai/v2.1-master-text-to-video", {"prompt": "p"}, family="v3")
    with pytest.raises(KlingValidationError, match="'model'=''"):
        prepare_request("", {"prompt": "p"})
