"""The poll schedule (pure), the expected durations behind it, and every waiting path using it."""

from __future__ import annotations

import gc
import itertools
import json
import logging
import weakref
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_provider._runtime import client as _client
from kling_provider._wait.schedule import (
    BACKOFF,
    DENSE_GAP,
    JITTER_SPAN,
    PROBES,
    TAIL_GAP,
    PollSchedule,
    check_poll_schedule,
    phase_of,
)
from kling_provider._wait.timings import (
    Expectation,
    MetricsCache,
    documented_expectation,
    generation_id_path,
    live_expectation,
    model_from_generation_id,
)
from kling_provider._wait.waiting import seconds_text
from kling_provider.exceptions import KlingValidationError
from kling_provider.hooks.kling import KlingHook
from kling_provider.sensors.kling import KlingGenerationSensor
from kling_provider.testing.simulator import KlingSimulator
from kling_provider.triggers.kling import KlingGenerationTrigger
from kling_provider.types import Generation
from tests.conftest import FakeClock, Script, ok, run_async

MASTER = "klingai/v2-master-text-to-video"
GID = f"10c09c56-2e00-4a64-89ec-358ff71f8144:{generation_id_path(MASTER)}"


def first(schedule: PollSchedule, count: int) -> list[float]:
    return list(itertools.islice(schedule.offsets(), count))


def metrics_body(model: str, p50: float, p90: float, p99: float) -> dict[str, Any]:
    return {"window_seconds": 300, "generated_at": "2026-11-22T00:00:00.000Z", "models": [
        {"alias": model, "endpoint": "/v2/generate/video/kling/generation",
         "metrics": {"duration_ms": {"p50": p50, "p75": p50, "p90": p90, "p99": p99}}}]}


# -- the pure schedule -----------------------------------------------------------------------

@pytest.mark.parametrize("max_gap", [5.0, 10.0, 60.0, 600.0])
@pytest.mark.parametrize(("model", "duration"), [(MASTER, 5), (MASTER, 10),
                                                 ("klingai/video-o1-image-to-video", 5),
                                                 ("klingai/not-in-any-table", 5)])
@pytest.mark.parametrize("phase", [0.0, 0.37, 0.999])
def test_no_gap_exceeds_poll_interval(max_gap: float, model: str, duration: int,
                                      phase: float) -> None:
    offsets = first(PollSchedule("adaptive", 0.0, max_gap,
                                 documented_expectation(model, duration), phase), 1000)
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert 0 < offsets[0] <= max_gap
    assert all(0 < gap <= max_gap + 1e-9 for gap in gaps)
    assert offsets[-1] > 1800  # the schedule goes on as long as a wait may last


@given(phase=st.floats(0.0, 1.0, exclude_max=True), max_gap=st.floats(1.0, 900.0),
       early=st.floats(1.0, 3000.0), width=st.floats(0.0, 3000.0))
def test_any_jitter_keeps_polls_increasing_and_within_poll_interval(
        phase: float, max_gap: float, early: float, width: float) -> None:
    expected = Expectation.from_range(early, early + width, "documented")
    offsets = first(PollSchedule("adaptive", 0.0, max_gap, expected, phase), 400)
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert 0 < offsets[0] <= max_gap and all(0 < gap <= max_gap + 1e-6 for gap in gaps)


@pytest.mark.parametrize("phase", [0.0, 0.5, 0.999])
def test_two_probes_in_the_first_half_minute_catch_fast_failures(phase: float) -> None:
    """Moderation refusals and bad images fail 8-30 s after submission."""
    offsets = first(PollSchedule("adaptive", 0.0, 60.0, documented_expectation(MASTER, 5),
                                 phase), 3)
    assert offsets[0] <= 16 and offsets[1] <= 26 < 30 < offsets[2]
    assert offsets[0] == pytest.approx(PROBES[0] + phase * (PROBES[1] - PROBES[0]))


def test_polls_are_densest_at_the_end_of_the_documented_window_and_few_before() -> None:
    schedule = PollSchedule("adaptive", 0.0, 60.0, documented_expectation(MASTER, 5))
    offsets = first(schedule, 60)
    before = [t for t in offsets if t <= 270]  # the page says 5-6 min for a 5 s video
    assert len(before) == 7  # two probes, then at most 60 s apart
    end_of_window = [t for t in offsets if 315 <= t <= 360]
    assert max(b - a for a, b in itertools.pairwise(end_of_window)) <= DENSE_GAP
    start_of_window = [t for t in offsets if 270 < t < 315]
    assert len(start_of_window) < len(end_of_window) / 2
    # Seen at the poll after 330 s (mid-window): the seed loop's 35th, this schedule's 13th.
    assert len([t for t in offsets if t <= 330]) + 1 <= 0.4 * 35
    tail = [t for t in offsets if t > 360][:12]
    gaps = [b - a for a, b in itertools.pairwise(tail)]
    assert gaps == sorted(gaps) and gaps[-1] == 60.0  # backs off up to poll_interval


def test_phase_is_fixed_by_the_generation_id_and_spreads_simultaneous_submissions() -> None:
    ids = [f"{n:08x}-0000-4000-8000-000000000000:{generation_id_path(MASTER)}"
           for n in range(1000)]
    assert [phase_of(i) for i in ids] == [phase_of(i) for i in ids]  # every process, every run
    assert all(0 <= phase_of(i) < 1 for i in ids)
    expected = documented_expectation(MASTER, 5)
    per_second: dict[int, int] = {}
    for generation_id in ids:  # a mapped task: 1,000 generations submitted in one second
        schedule = PollSchedule("adaptive", 0.0, 60.0, expected, phase_of(generation_id))
        for offset in itertools.takewhile(lambda t: t < 900, schedule.offsets()):
            per_second[int(offset)] = per_second.get(int(offset), 0) + 1
    assert max(per_second.values()) <= 250  # in lockstep, all 1,000 would poll in one second


def test_requested_duration_scales_the_schedule() -> None:
    five = documented_expectation(MASTER, 5)
    ten = documented_expectation(MASTER, 10)
    assert (five.early, five.late) == (300, 360)
    assert (ten.early, ten.late) == (660, 840)  # "11-14 min for 10 s"
    only_five = documented_expectation("klingai/avatar-pro", 10)  # no 10 s figure published
    assert only_five.typical == pytest.approx(2 * documented_expectation("klingai/avatar-pro").typical)


def test_resuming_later_keeps_the_same_poll_times() -> None:
    """What a triggerer hand-over relies on: the schedule depends on absolute times only."""
    schedule = PollSchedule("adaptive", 1_000.0, 60.0, documented_expectation(MASTER, 5),
                            phase_of(GID))
    planned = [1_000.0 + t for t in first(schedule, 30)]
    resumed_at = 1_000.0 + 250.0
    resumed = [resumed_at + schedule.first_delay(resumed_at)]
    while len(resumed) < 10:
        resumed.append(resumed[-1] + schedule.delay_after_poll(resumed[-1]))
    assert resumed == [t for t in planned if t >= resumed_at][:10]


def test_fixed_schedule_polls_at_once_then_every_interval() -> None:
    schedule = PollSchedule("fixed", 0.0, 10.0)
    assert schedule.first_delay(123.0) == 0.0
    assert schedule.delay_after_poll(130.0) == 10.0


def test_fixed_schedule_ignores_an_expectation_and_polls_every_interval_from_each_poll() -> None:
    schedule = PollSchedule("fixed", 100.0, 10.0, documented_expectation(MASTER, 5), 0.5)
    assert first(schedule, 4) == [0.0, 10.0, 20.0, 30.0]
    assert schedule.delay_after_poll(103.0) == 10.0  # from the poll, not from the grid
    assert first(PollSchedule("adaptive", 0.0, 7.5), 3) == [0.0, 7.5, 15.0]  # nothing expected


def test_a_wait_that_begins_on_a_poll_time_polls_at_once() -> None:
    schedule = PollSchedule("adaptive", 0.0, 60.0, documented_expectation(MASTER, 5), 0.25)
    offsets = first(schedule, 30)
    for at, following in itertools.pairwise(offsets):
        assert schedule.first_delay(at) == 0.0
        assert schedule.first_delay(at - 0.5) == pytest.approx(0.5)
        assert schedule.delay_after_poll(at) == pytest.approx(following - at)


@pytest.mark.parametrize("phase", [0.3, 0.9])
def test_each_poll_is_shifted_by_its_phase_of_the_gap_to_the_next_at_most_jitter_span(
        phase: float) -> None:
    expected = documented_expectation(MASTER, 5)
    plain = first(PollSchedule("adaptive", 0.0, 600.0, expected), 31)
    shifted = first(PollSchedule("adaptive", 0.0, 600.0, expected, phase), 30)
    assert any(following - at < JITTER_SPAN for at, following in itertools.pairwise(plain))
    assert shifted == pytest.approx([at + phase * min(following - at, JITTER_SPAN)
                                     for at, following in itertools.pairwise(plain)])


def test_under_a_short_poll_interval_the_probes_come_every_interval_then_evenly() -> None:
    expected = Expectation.from_range(101.0, 120.0, "documented")  # the approach ends at 90.9 s
    offsets = first(PollSchedule("adaptive", 0.0, 4.5, expected), 21)
    assert offsets[:2] == [4.5, 9.0]
    assert offsets[2:] == pytest.approx([9.0 + i * (90.9 - 9.0) / 19 for i in range(1, 20)])


def test_a_poll_interval_under_the_dense_gap_holds_past_the_window_too() -> None:
    expected = Expectation(early=300.0, typical=330.0, late=360.0, tail=420.0)
    offsets = first(PollSchedule("adaptive", 0.0, 5.9, expected, 0.5), 120)
    past = [t for t in offsets if t > 360.0][:20]
    # Planned every 5.9 s from the window's end, each shifted by half of that gap.
    assert past == pytest.approx([360.0 + 0.5 * 5.9 + 5.9 * k for k in range(20)])


def test_past_the_window_gaps_grow_by_backoff_to_tail_gap_then_to_poll_interval() -> None:
    expected = Expectation(early=300.0, typical=330.0, late=360.0, tail=420.0)
    offsets = first(PollSchedule("adaptive", 0.0, 60.0, expected), 60)
    past = [t for t in offsets if t >= expected.late][:12]
    gaps = [b - a for a, b in itertools.pairwise(past)]
    grown, want, at = DENSE_GAP, [], expected.late
    for _ in gaps:
        grown = min(grown * BACKOFF, TAIL_GAP if at < expected.tail else 60.0)
        at += grown
        want.append(grown)
    assert gaps == pytest.approx(want)
    assert gaps[:4] == pytest.approx([7.8, 10.14, 13.182, TAIL_GAP])  # then 15 s until 420 s
    assert gaps[-1] == 60.0


def test_unknown_schedule_is_refused_naming_the_choices() -> None:
    with pytest.raises(KlingValidationError, match=r"'poll_schedule'='smart'.*'adaptive', 'fixed'"):
        check_poll_schedule("smart")


# -- expected durations ------------------------------------------------------------------------

def test_model_is_read_from_the_generation_id() -> None:
    assert model_from_generation_id(GID) == MASTER
    assert model_from_generation_id("x:kling-video/v1.6/pro/image-to-video") == \
        "kling-video/v1.6/pro/image-to-video"
    assert model_from_generation_id("x:kling-video/v9/unheard-of") is None
    assert model_from_generation_id("no-model-part") is None


def test_live_metrics_parsed_and_absence_means_no_data() -> None:
    live = live_expectation(metrics_body(MASTER, 200_000, 260_000, 400_000), MASTER)
    assert live == Expectation(140.0, 200.0, 260.0, 400.0)
    assert live is not None and live.source == "live"
    assert live_expectation(metrics_body("other/model", 1, 2, 3), MASTER) is None
    assert live_expectation({"models": [{"alias": MASTER, "metrics": {}}]}, MASTER) is None
    assert live_expectation("<html>", MASTER) is None


def test_cached_live_figures_are_scaled_for_longer_videos() -> None:
    cache = MetricsCache()
    cache.store(MASTER, Expectation(100, 200, 300, 400, "live"), now=0.0)
    ratio = documented_expectation(MASTER, 10).typical / documented_expectation(MASTER, 5).typical
    assert cache.expectation(MASTER, 10).typical == pytest.approx(200 * ratio)
    assert cache.expectation(MASTER, 5).source == "live"
    assert cache.expectation("klingai/avatar-pro", 5).source == "documented"
    assert not cache.due(MASTER, now=599.0) and cache.due(MASTER, now=600.0)


# -- the hook: one metrics request per model per process, keyless ------------------------------

def test_live_timings_fetched_once_without_the_key(mock_hook: Callable[..., KlingHook]) -> None:
    script = Script(ok(metrics_body(MASTER, 200_000, 260_000, 400_000)))
    hook = mock_hook(script, live_timings=True)
    assert hook.expected_duration(MASTER).typical == 200.0
    assert hook.expected_duration(MASTER, 10).source == "live"  # cached: no second request
    assert len(script.requests) == 1
    request = script.requests[0]
    assert (request.url.path, request.url.params.get_list("aliases")) == ("/models/metrics", [MASTER])
    assert "authorization" not in request.headers


def test_unreachable_metrics_fall_back_once_per_ttl(mock_hook: Callable[..., KlingHook],
                                                    clock: FakeClock) -> None:
    script = Script(httpx.ConnectError("down"), ok(metrics_body(MASTER, 1000, 2000, 3000)))
    hook = mock_hook(script, live_timings=True)
    assert hook.expected_duration(MASTER) == documented_expectation(MASTER)
    assert hook.expected_duration(MASTER) == documented_expectation(MASTER)
    assert len(script.requests) == 1  # not retried per wait
    clock.t += 600
    assert hook.expected_duration(MASTER).source == "live"


def test_live_timings_can_be_switched_off(mock_hook: Callable[..., KlingHook]) -> None:
    script = Script()
    assert mock_hook(script, live_timings="false").expected_duration(MASTER).source == "documented"
    assert script.requests == []


def test_a_waiting_trigger_keeps_nothing_of_the_last_answer_while_it_sleeps(
        mock_hook: Callable[..., KlingHook], clock: FakeClock) -> None:
    """A triggerer holds thousands of waits, and every full garbage collection walks what each
    keeps between polls: the last answer (response, body, parsed generation) must be gone."""
    gid = f"kept-between-polls:{generation_id_path(MASTER)}"
    refs: list[weakref.ref[httpx.Response]] = []

    def answer(status: str) -> Callable[[httpx.Request], httpx.Response]:
        def respond(request: httpx.Request) -> httpx.Response:
            response = ok({"id": gid, "status": status, "meta": {"usage": {"credits_used": 1}},
                           "video": {"url": "https://cdn.test/v.mp4"} if status == "completed"
                           else None})
            refs.append(weakref.ref(response))
            return response
        return respond

    hook = mock_hook(Script(answer("queued"), answer("generating"), answer("completed")))
    kept: list[list[str]] = []
    tick = clock.asleep

    async def asleep(seconds: float) -> None:
        gc.collect()
        kept.append([type(o).__name__ for o in gc.get_objects()
                     if type(o) is Generation and o.generation_id == gid]
                    + ["Response" for ref in refs if ref() is not None])
        await tick(seconds)

    clock.asleep = asleep  # type: ignore[method-assign]
    trigger = KlingGenerationTrigger(kling_conn_id="kling_default", generation_id=gid,
                                     poll_interval=10, deadline=clock.t + 600,
                                     poll_schedule="fixed")
    trigger._hook = lambda: hook  # type: ignore[method-assign]

    async def events() -> list[Any]:
        return [event async for event in trigger.run()]

    (event,) = run_async(events)
    assert event.payload["status"] == "success"
    assert len(refs) == 3
    assert kept == [[], []]  # one sleep after each of the two unfinished answers


# -- progress in the task log: one line per poll, never per unit of time ---------------------------

def progress_lines(hook: KlingHook, clock: FakeClock, caplog: pytest.LogCaptureFixture, *,
                   poll_interval: float, schedule: Any = "fixed") -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kling_provider"):
        hook.wait_for_generation(GID, poll_interval=poll_interval, timeout=86_400,
                                 poll_schedule=schedule, submitted_at=clock.now(), model=MASTER,
                                 duration=5)
    return [r.getMessage() for r in caplog.records if "(poll " in r.getMessage()]


def answers(*statuses: str) -> Script:
    done = {"id": GID, "status": "completed", "video": {"url": "https://cdn.test/v.mp4"}}
    return Script(*(ok({"id": GID, "status": status}) for status in statuses), ok(done))


def test_each_poll_logs_status_elapsed_expected_window_and_next_poll(
        mock_hook: Callable[..., KlingHook], clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    hook = mock_hook(answers("queued", "generating", "generating"), live_timings=False)
    lines = progress_lines(hook, clock, caplog, poll_interval=200)
    assert lines == [
        f"Generation {GID} is queued (poll 1, 0 s in; expected done 5 min-6 min in, "
        "documented times; next poll in 3 min 20 s)",
        f"Generation {GID} is generating (poll 2, 3 min 20 s in; expected done 5 min-6 min in, "
        "documented times; next poll in 3 min 20 s)",
        f"Generation {GID} is generating (poll 3, 6 min 40 s in; expected done 5 min-6 min in, "
        "documented times: running late; next poll in 3 min 20 s)",
    ]


@pytest.mark.parametrize("schedule", ["fixed", "adaptive"])
def test_log_lines_grow_with_polls_never_with_time(mock_hook: Callable[..., KlingHook],
                                                   clock: FakeClock,
                                                   caplog: pytest.LogCaptureFixture,
                                                   schedule: str) -> None:
    """Five unfinished answers give five lines, whether they span a minute or five hours."""
    counts = []
    for poll_interval in (10, 3600):
        hook = mock_hook(answers(*["generating"] * 5), live_timings=False)
        counts.append(len(progress_lines(hook, clock, caplog, poll_interval=poll_interval,
                                         schedule=schedule)))
    assert counts == [5, 5]


def test_next_poll_in_the_log_is_the_sleep_that_follows(mock_hook: Callable[..., KlingHook],
                                                        clock: FakeClock,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    slept: list[float] = []
    tick = clock.sleep

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        tick(seconds)

    clock.sleep = sleep  # type: ignore[method-assign]
    hook = mock_hook(answers(*["generating"] * 12), live_timings=False)
    lines = progress_lines(hook, clock, caplog, poll_interval=60, schedule="adaptive")
    logged = [line.rsplit("next poll in ", 1)[1].rstrip(")") for line in lines]
    assert logged == [seconds_text(s) for s in slept[1:]]  # the first sleep precedes any poll


# -- the simulator serves /models/metrics as published -------------------------------------------

@pytest.mark.integration
def test_simulator_metrics_report_finished_generations(sim_hook: KlingHook,
                                                       simulator: KlingSimulator,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"{simulator.base_url}/models/metrics"
    assert httpx.get(url, params={"aliases": MASTER}).json()["models"] == []  # no data yet
    generation_id = sim_hook.create_generation(MASTER, prompt="p")
    sim_hook.wait_for_generation(generation_id)
    body = httpx.get(url, params=[("aliases", MASTER), ("aliases", "x/y")]).json()
    took = (simulator.queued_seconds + simulator.generating_seconds) * 1000
    assert body["window_seconds"] == 300
    assert body["models"][0]["alias"] == MASTER
    assert body["models"][0]["metrics"]["duration_ms"] == {"p50": took, "p75": took,
                                                           "p90": took, "p99": took}
    assert httpx.get(url, params={"alias": MASTER}).status_code == 400
    monkeypatch.setattr(_client, "TIMINGS", MetricsCache())  # a fresh triggerer process
    assert sim_hook.expected_duration(MASTER).typical == took / 1000


# -- every waiting path follows the schedule ---------------------------------------------------------

@pytest.mark.integration
def test_worker_wait_polls_on_the_adaptive_schedule(sim_hook: KlingHook, simulator: KlingSimulator,
                                                     clock: FakeClock) -> None:
    start = clock.now()
    generation_id = sim_hook.create_generation(MASTER, prompt="p")
    sim_hook.wait_for_generation(generation_id, model=MASTER, duration=5, submitted_at=start)
    polls = simulator.ledger.count(method="GET", generation_id=generation_id)
    planned = first(PollSchedule("adaptive", 0, 60, documented_expectation(MASTER, 5),
                                 phase_of(generation_id)), 40)
    # The simulator finishes at 320 s: found by the first planned poll after it.
    finished = simulator.queued_seconds + simulator.generating_seconds
    assert clock.now() - start == pytest.approx(next(t for t in planned if t >= finished))
    assert polls == len([t for t in planned if t <= clock.now() - start + 1e-6]) <= 13  # seed: 33


@pytest.mark.integration
def test_trigger_hand_over_resumes_the_same_schedule(airflow_sim: KlingSimulator,
                                                     clock: FakeClock) -> None:
    hook = KlingHook()
    start = clock.now()
    generation_id = hook.create_generation(MASTER, prompt="p")
    trigger = KlingGenerationTrigger(kling_conn_id="kling_default", generation_id=generation_id,
                                     poll_interval=60, deadline=start + 1800,
                                     poll_schedule="adaptive", submitted_at=start, model=MASTER,
                                     duration=5)
    _, kwargs = trigger.serialize()
    clock.t += 250  # the first triggerer died; another one picks the trigger up
    revived = KlingGenerationTrigger(**json.loads(json.dumps(kwargs)))

    async def collect() -> list[Any]:
        return [event.payload async for event in revived.run()]

    events = run_async(collect)
    planned = [start + t for t in first(PollSchedule("adaptive", 0, 60,
                                                     documented_expectation(MASTER, 5),
                                                     phase_of(generation_id)), 40)]
    assert events[0]["status"] == "success"
    assert clock.now() in planned  # ended on a planned poll, not 250 s + n * interval


@pytest.mark.integration
def test_sensor_in_poke_mode_follows_the_schedule(airflow_sim: KlingSimulator,
                                                  clock: FakeClock) -> None:
    sensor = KlingGenerationSensor(task_id="wait", generation_id=GID, deferrable=False)
    elapsed = [0.0]
    gaps = []
    for _ in range(8):
        gap = sensor._get_next_poke_interval(clock.now(), lambda: elapsed[0], 1)
        gaps.append(gap)
        elapsed[0] += gap
        clock.t += gap
    planned = first(PollSchedule("adaptive", 0, 60, documented_expectation(MASTER),
                                 phase_of(GID)), 8)
    assert [round(x, 6) for x in itertools.accumulate(gaps)] == [round(t, 6) for t in planned]
    fixed = KlingGenerationSensor(task_id="w2", generation_id=GID, deferrable=False,
                                  poll_schedule="fixed", poke_interval=15)
    assert fixed._get_next_poke_interval(clock.now(), lambda: 0.0, 1) == 15


@given(early=st.floats(60.0, 1500.0), width=st.floats(0.0, 600.0),
       max_gap=st.sampled_from([30.0, 60.0, 600.0]))
def test_the_documented_gaps_hold_for_any_expected_window(early: float, width: float,
                                                          max_gap: float) -> None:
    """docs/waiting.rst: from shortly before the expected window (a tenth of its start) at most
    18 s apart, at most 6 s apart over its last 45 s, polled at its end, then 15 s apart at most
    while slow generations still finish; never more than ``poll_interval``."""
    late = early + width
    expected = Expectation(early=early, typical=early + width / 2, late=late, tail=late + 60.0)
    offsets = first(PollSchedule("adaptive", 0.0, max_gap, expected), 400)
    approach_end = early * 0.9
    dense_from = max(late - 45.0, approach_end)
    eps = 1e-6
    for before, after in itertools.pairwise(offsets):
        gap = after - before
        assert gap <= max_gap + eps
        if before < 30.0:  # the two probes of the first half minute
            continue
        if approach_end - eps <= before and after <= dense_from + eps:
            assert gap <= 18.0 + eps, (before, after)
        elif dense_from - eps <= before and after <= late + eps:
            assert gap <= 6.0 + eps, (before, after)
        elif late - eps <= before and after <= late + 60.0:
            assert gap <= 15.0 + eps, (before, after)
    assert any(abs(t - late) < eps for t in offsets)  # the window's end is polled
