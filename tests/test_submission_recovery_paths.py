"""What a retry does with an earlier try's submission, as a user reads it (operators/_submission.py).

Against the simulator on loopback with the fake clock: a lookup in the worker (not deferred)
that finds the generation or does not (the error a user reads, or the resubmission with its new
request id), the lookup's event read without a state store, a retry on Airflow < 3.3 (no store:
the earlier try is found in the usage logs, within this run only), a stored generation
reattached or given up, and the lines a user reads when a create answer is lost or refused.
The connection's family is ``legacy`` and the task's ``unified`` here, so the ledger shows which
endpoint each read went to: a generation is read where it was created.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from kling_provider._task import submission as _submission
from kling_provider.catalogue import endpoint_path, list_models
from kling_provider.exceptions import KlingError, KlingSubmissionUncertainError
from kling_provider.hooks.kling import KlingHook
from kling_provider.operators.kling import STATE_KEY, KlingGenerateVideoOperator
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import FakeClock, StateStoreStub, context_for
from tests.test_airflow_layer import RACCOON
from tests.test_durable_submission import logged

MODEL = RACCOON["model"]
PREFIX = _submission.task_prefix("dag", "manual__2026-11-21T00:00:00+00:00", "generate", -1)
LEGACY, UNIFIED = endpoint_path("legacy"), endpoint_path("unified")


def generate(**kwargs: Any) -> KlingGenerateVideoOperator:
    return KlingGenerateVideoOperator(task_id="generate", poll_interval=20, timeout=600,
                                      **{**RACCOON, "endpoint_family": "unified", **kwargs})


def paid(clock: FakeClock, cri: str, **kwargs: Any) -> str:
    """A generation created with ``cri`` through the unified endpoint, then finished (an hour)."""
    generation_id = KlingHook(clock=clock).create_generation(
        MODEL, prompt="p", client_request_id=cri, endpoint_family="unified", **kwargs)
    clock.t += 3600
    return generation_id


def read_only_where_created(sim: KlingSimulator) -> None:
    """Every read of a generation went to the unified endpoint it was created on."""
    assert sim.ledger.count(method="GET", path=LEGACY) == 0
    assert sim.ledger.count(method="GET", path=UNIFIED) >= 1


def intent(store: StateStoreStub, cri: str, intent_at: float, family: str | None = "unified",
           **fields: Any) -> None:
    store.set(STATE_KEY, {"client_request_id": cri, "model": MODEL, "endpoint_family": family,
                          "intent_at": intent_at, **fields})


def not_found_message(cri: str) -> str:
    return (f"Task 'generate': no generation with client request id {cri!r} (model {MODEL!r}) "
            "appeared in the usage logs within the time a generation can take, so the create "
            "request most likely never reached the API.")


# -- a lookup in the worker -------------------------------------------------------------------------

def test_a_lookup_in_the_worker_that_finds_nothing_fails_saying_what_to_do(
        airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    cri = f"{PREFIX}.t1.0a1b2c3d4e5f"
    store = StateStoreStub()
    intent(store, cri, clock.now() - 7200)  # its lookup's deadline has passed: one look
    with pytest.raises(KlingSubmissionUncertainError) as failed:
        generate(deferrable=False).execute(context_for(store, try_number=2))
    assert str(failed.value) == (
        f"{not_found_message(cri)} It is not submitted again, which could pay twice: search the "
        "AI/ML API dashboard's usage logs for that client request id; if there is no "
        "generation, clear this task (it then submits anew), or set "
        "on_uncertain_submission='resubmit'.")
    assert airflow_sim.ledger.count(method="POST") == 0


@pytest.mark.parametrize(("family", "stored_family", "posted_to"), [
    ("unified", "unified", UNIFIED),
    (None, None, LEGACY),  # a record without a family (older provider): the legacy one
])
def test_resubmit_after_a_lookup_that_finds_nothing_makes_a_later_intent_of_the_same_try(
        airflow_sim: KlingSimulator, clock: FakeClock, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str], family: str | None, stored_family: str | None,
        posted_to: str) -> None:
    cri = f"{PREFIX}.t2.0a1b2c3d4e5f"  # this try's own intent: its answer was lost
    store = StateStoreStub()
    intent(store, cri, clock.now() - 7200, family=stored_family)
    result = generate(deferrable=False, wait_for_completion=False, endpoint_family=family,
                      on_uncertain_submission="resubmit").execute(
        context_for(store, try_number=2))
    assert (f"{not_found_message(cri)} Submitting anew (on_uncertain_submission='resubmit')."
            in logged(caplog, capsys))
    assert airflow_sim.ledger.count(method="POST", path=posted_to) == 1
    assert airflow_sim.ledger.count(method="POST") == 1
    record = store.data[STATE_KEY]
    assert re.fullmatch(re.escape(f"{PREFIX}.t2r1.") + r"[0-9a-f]+", record["client_request_id"])
    assert record["endpoint_family"] == ("unified" if family else "legacy")
    assert record["generation_id"] == result["generation_id"]


@pytest.mark.simulator(logs_lag=90)
def test_a_lookup_in_the_worker_finds_the_generation_polling_at_the_task_s_interval(
        airflow_sim: KlingSimulator, clock: FakeClock, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    cri = f"{PREFIX}.t1.0a1b2c3d4e5f"
    intent_at = clock.now()
    generation_id = KlingHook(clock=clock).create_generation(
        MODEL, prompt="p", client_request_id=cri, endpoint_family="unified")
    store = StateStoreStub()
    intent(store, cri, intent_at)
    context = context_for(store, try_number=2)
    airflow_sim.ledger.clear()
    clock.sleeps.clear()
    result = generate(deferrable=False, wait_for_completion=False).execute(context)
    assert result["generation_id"] == generation_id == context["ti"].xcom["generation_id"]
    assert clock.sleeps and set(clock.sleeps) == {20.0}  # the lookup waited: its row lagged
    record = store.data[STATE_KEY]
    assert (record["generation_id"], record["submitted_at"]) == (generation_id, clock.now())
    assert (f"Found generation {generation_id} of client request id {cri} in the usage logs."
            in logged(caplog, capsys))
    assert airflow_sim.ledger.count(method="POST") == 0
    read_only_where_created(airflow_sim)


# -- the lookup's event, read without a state store ------------------------------------------------

def test_a_found_event_without_a_store_names_its_request_and_reads_where_it_was_made(
        airflow_sim: KlingSimulator, clock: FakeClock, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    generation_id = paid(clock, "c.t1")
    airflow_sim.ledger.clear()
    result = generate(deferrable=False).execute_recovered(
        context_for(None), endpoint_family="unified",
        event={"status": "found", "generation_id": generation_id, "client_request_id": "c.t1"})
    assert result["generation_id"] == generation_id and result["endpoint_family"] == "unified"
    assert (f"Found generation {generation_id} of client request id c.t1 in the usage logs."
            in logged(caplog, capsys))
    read_only_where_created(airflow_sim)


def test_a_not_found_event_without_a_store_names_the_request_and_the_model(
        airflow_sim: KlingSimulator) -> None:
    with pytest.raises(KlingSubmissionUncertainError) as failed:
        generate().execute_recovered(context_for(None), endpoint_family="unified",
                                     event={"status": "not_found", "client_request_id": "c.t1"})
    assert str(failed.value).startswith(not_found_message("c.t1"))
    assert airflow_sim.ledger.count(method="POST") == 0


# -- Airflow < 3.3: no store, the earlier try is looked up in the usage logs -----------------------

def no_store_retry(try_number: int, started: float | None) -> Any:
    context = context_for(None, try_number=try_number)
    context["dag_run"] = SimpleNamespace(
        clear_number=0,
        start_date=None if started is None else datetime.fromtimestamp(started, timezone.utc))
    return context


def test_without_a_store_a_retry_reattaches_to_the_earlier_try_s_finished_video(
        airflow_sim: KlingSimulator, clock: FakeClock, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    started = clock.now()
    cri = f"{PREFIX}.t1.0a1b2c3d4e5f"
    generation_id = paid(clock, cri)
    airflow_sim.ledger.clear()
    context = no_store_retry(2, started)
    result = generate(wait_for_completion=False).execute(context)
    assert result["generation_id"] == generation_id
    assert context["ti"].xcom["generation_id"] == generation_id
    assert airflow_sim.ledger.count(method="POST") == 0
    assert (f"Earlier try's generation {generation_id} (client request id {cri}) found in the "
            "usage logs; reattaching." in logged(caplog, capsys))
    read_only_where_created(airflow_sim)


@pytest.mark.parametrize("earlier", ["failed", "before_this_run", "other_task"])
def test_without_a_store_a_retry_pays_anew_unless_this_run_s_earlier_try_succeeded(
        airflow_sim: KlingSimulator, clock: FakeClock, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str], earlier: str) -> None:
    started = clock.now()
    if earlier == "failed":  # an earlier try of this task whose generation failed
        paid(clock, f"{PREFIX}.t1.0a1b2c3d4e5f", extra_params={
            "simulator_faults": {"error": {"name": "Moderation", "message": "no"}}})
    elif earlier == "before_this_run":  # the run was cleared (started anew) since
        paid(clock, f"{PREFIX}.t1.0a1b2c3d4e5f")
        started = clock.now()
    else:  # another task's video of the same model
        paid(clock, _submission.task_prefix("dag", "manual__2026-11-21T00:00:00+00:00", "other", -1)
             + ".t1.0a1b2c3d4e5f")
    posts = airflow_sim.ledger.count(method="POST")
    generate(wait_for_completion=False).execute(no_store_retry(3, started))
    assert airflow_sim.ledger.count(method="POST") == posts + 1
    assert ("No finished generation of an earlier try of this task in the usage logs (Airflow "
            "< 3.3 keeps no record of one still running)." in logged(caplog, capsys))



def test_without_a_store_or_a_dag_run_a_retry_looks_back_a_day_and_pays_anew(
        airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    """A context without ``dag_run`` (no run start to bound the lookup): the retry still looks
    for an earlier try, over the last day, and pays once when there is none."""
    context = context_for(None, try_number=2)
    del context["dag_run"]
    generate(wait_for_completion=False).execute(context)
    assert airflow_sim.ledger.count(method="GET", path="/v2/logs") >= 1
    assert airflow_sim.ledger.count(method="POST") == 1


@pytest.mark.simulator(mixed_logs=400)  # a quarter of them another model's
def test_without_a_store_the_earlier_try_is_looked_for_in_the_task_s_model_only(
        airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    started = clock.now()
    generation_id = paid(clock, f"{PREFIX}.t1.0a1b2c3d4e5f")
    airflow_sim.ledger.clear()
    result = generate(wait_for_completion=False).execute(no_store_retry(2, started))
    assert result["generation_id"] == generation_id
    # 300 rows of the model it cannot use, newer than its own: pages of 100, the 4th has it.
    assert airflow_sim.ledger.count(method="GET", path="/v2/logs") == 4

# -- a stored generation: reattached or given up ----------------------------------------------------

def test_a_stored_generation_is_read_where_it_was_made_and_reattached_saying_so(
        airflow_sim: KlingSimulator, clock: FakeClock, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    generation_id = paid(clock, f"{PREFIX}.t1.0a1b2c3d4e5f")
    store = StateStoreStub()
    intent(store, f"{PREFIX}.t1.0a1b2c3d4e5f", clock.now() - 3600,
           generation_id=generation_id, submitted_at=clock.now() - 3600)
    airflow_sim.ledger.clear()
    result = generate(wait_for_completion=False).execute(context_for(store, try_number=2))
    assert result["generation_id"] == generation_id
    assert (f"Reattaching to generation {generation_id} from an earlier try (status "
            "'completed')." in logged(caplog, capsys))
    assert airflow_sim.ledger.count(method="POST") == 0
    read_only_where_created(airflow_sim)


def test_a_stored_generation_that_failed_is_named_with_its_status_when_paying_anew(
        airflow_sim: KlingSimulator, clock: FakeClock, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    failed = paid(clock, f"{PREFIX}.t1.0a1b2c3d4e5f", extra_params={
        "simulator_faults": {"error": {"name": "Moderation", "message": "no"}}})
    store = StateStoreStub()
    intent(store, f"{PREFIX}.t1.0a1b2c3d4e5f", clock.now() - 3600, generation_id=failed,
           submitted_at=clock.now() - 3600)
    generate(wait_for_completion=False).execute(context_for(store, try_number=2))
    assert store.data[STATE_KEY]["generation_id"] != failed
    assert (f"Earlier generation {failed} ended with status 'error'; submitting anew."
            in logged(caplog, capsys))


# -- paying: what the log says when the answer is lost, refused, or no store keeps the intent ------

def test_a_lost_create_answer_is_logged_with_its_reason_and_the_id_looked_up(
        airflow_sim: KlingSimulator, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    store = StateStoreStub()
    with pytest.raises(TaskDeferred) as deferred:
        generate(extra_params={"simulator_faults": {"create_drop": True}}).execute(
            context_for(store))
    cri = store.data[STATE_KEY]["client_request_id"]
    assert store.data[STATE_KEY]["endpoint_family"] == "unified"  # where the lookup's find is read
    assert deferred.value.kwargs == {"endpoint_family": "unified"}
    assert (f"The create request for model {MODEL!r} was sent but no answer arrived "
            "(RemoteProtocolError). A generation may have been created and billed, so it was not "
            "sent again. Check the AI/ML API dashboard before retrying this task. Looking the "
            f"generation up by its client request id {cri} instead." in logged(caplog, capsys))


def test_a_refused_create_is_logged_as_billing_nothing(
        airflow_sim: KlingSimulator, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    airflow_sim.faults.refusals = [403]
    store = StateStoreStub()
    with pytest.raises(KlingError):
        generate().execute(context_for(store))
    cri = store.data[STATE_KEY]["client_request_id"]
    assert (f"The API refused the create request with client request id {cri}; nothing was "
            "created or billed, so the next try submits anew." in logged(caplog, capsys))


def test_without_a_store_the_first_try_warns_naming_its_request_id(
        airflow_sim: KlingSimulator, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    generate(wait_for_completion=False).execute(context_for(None))
    assert airflow_sim.ledger.count(path="/v2/logs") == 0  # a first try has no earlier one
    [post] = airflow_sim.ledger.entries(method="POST")
    assert ("task_state_store is not available (Airflow < 3.3): if this try dies while its "
            "generation runs, a retry finds it only once it has finished (client request id "
            f"{post.headers['x-client-request-id']})." in logged(caplog, capsys))


def test_the_request_id_names_the_task_instance_it_pays_for(airflow_sim: KlingSimulator) -> None:
    """A user searches the dashboard's logs by DAG, run, task and map index: each comes from
    ``ti`` (none is a default that happens to match)."""
    store = StateStoreStub()
    context = context_for(store, try_number=4, clear_number=2)
    ti = context["ti"]
    ti.dag_id, ti.run_id, ti.task_id = "nightly_videos", "scheduled__2026-11-20", "make_clip"
    ti.map_index = 3
    result = generate(wait_for_completion=False).execute(context)
    assert (result["status"], result["prompt"]) == ("queued", RACCOON["prompt"])  # as sent
    cri = store.data[STATE_KEY]["client_request_id"]
    assert store.data[STATE_KEY]["clear_number"] == 2  # a later retry of this clear recovers
    assert re.fullmatch(r"kling:nightly_videos:scheduled__2026-11-20:make_clip:3\.t4\.[0-9a-f]+",
                        cri)
    [post] = airflow_sim.ledger.entries(method="POST")
    assert post.headers["x-client-request-id"] == cri


@pytest.mark.simulator(mixed_logs=400)  # a quarter of them another model's
def test_a_lookup_reads_only_the_task_s_model_in_the_usage_logs(
        airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    """The lookup asks the logs for the task's model: other models' rows a shared key holds are
    not paged through (the logs allow 200 requests a minute per key)."""
    cri = f"{PREFIX}.t1.0a1b2c3d4e5f"
    intent_at = clock.now()
    generation_id = paid(clock, cri)
    store = StateStoreStub()
    intent(store, cri, intent_at)
    airflow_sim.ledger.clear()
    result = generate(deferrable=False, wait_for_completion=False).execute(
        context_for(store, try_number=2))
    assert result["generation_id"] == generation_id
    # 300 rows of the model it cannot use, newer than its own: pages of 100, the 4th has it.
    assert airflow_sim.ledger.count(method="GET", path="/v2/logs") == 4


@pytest.mark.simulator(accept_unknown_models=True)
def test_a_try_validates_its_request_once_so_the_unknown_model_warning_shows_once(
        airflow_sim: KlingSimulator, caplog: pytest.LogCaptureFixture) -> None:
    operator = generate(model="klingai/v9-future-model", allow_unknown_model=True,
                        wait_for_completion=False)
    caplog.clear()  # what the DAG file's parse said
    operator.execute(context_for(StateStoreStub()))
    assert airflow_sim.ledger.count(method="POST") == 1
    warnings = [r.getMessage() for r in caplog.records
                if "is not in the Kling catalogue" in r.getMessage()]
    assert warnings == [
        f"Model 'klingai/v9-future-model' is not in the Kling catalogue ({len(list_models())} models); "
        "allow_unknown_model=True: sending it unvalidated to the unified endpoint "
        "(endpoint_family=... picks the other one)."]


def test_a_stored_generation_is_named_in_the_line_that_says_what_the_retry_does_with_it(
        airflow_sim: KlingSimulator, clock: FakeClock, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    cri = f"{PREFIX}.t1.0a1b2c3d4e5f"
    generation_id = paid(clock, cri)
    store = StateStoreStub()
    intent(store, cri, clock.now() - 3600, generation_id=generation_id,
           submitted_at=clock.now() - 3600)
    generate(wait_for_completion=False).execute(context_for(store, try_number=2))
    assert (f"Stored submission {cri}, generation {generation_id}: reattach."
            in logged(caplog, capsys))


def test_the_same_try_paying_anew_after_its_stored_generation_failed_makes_a_later_intent(
        airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    """The same try run again (a Celery worker lost before it acknowledged the task redelivers
    it): its own stored generation failed, so it pays anew with the try's next intent id, never
    the stored one's."""
    cri = f"{PREFIX}.t2.0a1b2c3d4e5f"
    failed = paid(clock, cri, extra_params={
        "simulator_faults": {"error": {"name": "Moderation", "message": "no"}}})
    store = StateStoreStub()
    intent(store, cri, clock.now() - 3600, generation_id=failed, submitted_at=clock.now() - 3600)
    generate(wait_for_completion=False).execute(context_for(store, try_number=2))
    record = store.data[STATE_KEY]
    assert record["generation_id"] != failed
    assert re.fullmatch(re.escape(f"{PREFIX}.t2r1.") + r"[0-9a-f]+", record["client_request_id"])


def test_a_resubmission_after_a_deferred_lookup_pays_on_the_stored_intent_s_endpoint(
        airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    """The try resumed from the recovery trigger is a new operator object: the request it pays
    anew is validated for the intent's endpoint family (``unified``), not the connection's
    (``legacy``)."""
    cri = f"{PREFIX}.t2.0a1b2c3d4e5f"
    store = StateStoreStub()
    intent(store, cri, clock.now() - 7200)
    result = generate(on_uncertain_submission="resubmit", wait_for_completion=False
                      ).execute_recovered(context_for(store, try_number=2),
                                          endpoint_family="unified",
                                          event={"status": "not_found", "client_request_id": cri})
    assert airflow_sim.ledger.count(method="POST", path=UNIFIED) == 1
    assert airflow_sim.ledger.count(method="POST") == 1
    assert store.data[STATE_KEY]["generation_id"] == result["generation_id"]
