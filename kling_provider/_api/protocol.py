"""The AI/ML API protocol as pure functions and I/O-free step generators.

This is the provider's single implementation of request building, status classification and
retry policy (what an answer means, and the error for a failed one: :mod:`kling_provider._api.answers`;
where each request goes: :mod:`kling_provider._endpoints`). It performs no I/O: the step generators *yield*
what they need (send this :class:`ApiRequest`, or sleep this many seconds) and receive the result.
:class:`~kling_provider.hooks.kling.KlingHook` drives them with a sync httpx client in workers and
with a shared async client in the triggerer, so both paths behave identically by construction
(the same trick as "sans-IO" protocol libraries such as h11).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TypeVar

import httpx

from kling_provider._api.answers import (
    NOT_SENT_ERRORS,
    detached,
    error_for_response,
    error_for_transport,
    json_object,
    scrub,
)
from kling_provider._endpoints import ENDPOINTS
from kling_provider._money.spend import with_cost_headers
from kling_provider.catalogue import endpoint_family
from kling_provider.exceptions import (
    KlingError,
    KlingGenerationFailedError,
    KlingServerError,
    KlingSubmissionUncertainError,
    KlingValidationError,
)
from kling_provider.types import Generation, Stage

log = logging.getLogger("kling_provider")

Operation = Literal["create", "fetch", "probe", "metrics", "account"]
#: What a driver hands back for an :class:`ApiRequest`: the response, or the request error
#: (a transport failure, or an answer whose content encoding cannot be decoded).
Outcome = httpx.Response | httpx.RequestError

#: Statuses after which the API cannot have created a generation (documented as rate/capacity
#: refusals), so even the paid POST may be sent again.
SAFE_POST_STATUSES = frozenset({429, 503})
RETRYABLE_GET_STATUSES = frozenset({429, 500, 502, 503, 504})
#: 4xx answers to a create that may not be refusals: a request timeout, a conflict.
NOT_REFUSALS = frozenset({408, 409})


def created_nothing(outcome: Outcome) -> bool:
    """Whether a create request that ended with ``outcome`` (retries spent) created nothing.

    True for a definite refusal (any 4xx but 408 and 409: a bad request, a bad key, no credit,
    an unknown path, or still rate limited) and for a request that never left (connect errors).
    Everything else after sending may hide a created, billed generation.
    """
    if isinstance(outcome, httpx.RequestError):
        return isinstance(outcome, NOT_SENT_ERRORS)
    return 400 <= outcome.status_code < 500 and outcome.status_code not in NOT_REFUSALS


@dataclass(frozen=True)
class ApiRequest:
    """One API call, before authentication is attached by the driver."""

    method: Literal["GET", "POST"]
    path: str
    operation: Operation
    params: Mapping[str, str] | None = None
    json: Mapping[str, Any] | None = None
    #: For messages only: the generation this request is about, or the model being created.
    subject: str = ""
    #: ``False`` for the keyless service endpoints (``/models/metrics``): the key is not sent.
    authenticated: bool = True
    #: Extra headers (``X-Client-Request-Id`` on the create POST); never authentication.
    headers: Mapping[str, str] | None = None


def api_request(endpoint: str, method: Literal["GET", "POST"], operation: Operation,
                **fields: Any) -> ApiRequest:
    """A request to the endpoint named ``endpoint`` in :data:`~kling_provider._endpoints.ENDPOINTS`:
    its path, and whether the key goes with it, come from that table."""
    where = ENDPOINTS[endpoint]
    return ApiRequest(method, where.path, operation, authenticated=where.authenticated, **fields)


#: A step is either a request to send or a number of seconds to sleep.
Step = ApiRequest | float
Steps = Generator[Step, Any, Any]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, and a cap on honoured ``Retry-After`` values."""

    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    retry_after_max: float = 60.0
    #: Source of jitter in [0, 1); tests pass a constant to make delays exact.
    rand: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def backoff(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1``: uniform in [ceiling/2, ceiling]."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return float(ceiling / 2 + self.rand() * ceiling / 2)


#: The request header the API stores and reports back as ``client_request_id`` (the usage logs'
#: key for finding a generation whose create answer was lost: :mod:`kling_provider._task.submission`).
#: The simulator spells it on its own: it plays the API, so a wrong name here fails the tests.
CLIENT_REQUEST_ID_HEADER = "X-Client-Request-Id"


def build_create_request(family: str, body: Mapping[str, Any],
                         client_request_id: str | None = None) -> ApiRequest:
    headers = {CLIENT_REQUEST_ID_HEADER: client_request_id} if client_request_id else None
    return api_request(endpoint_family(family), "POST", "create", json=dict(body),
                       subject=str(body.get("model", "")), headers=headers)


def build_fetch_request(family: str, generation_id: str) -> ApiRequest:
    if not generation_id or not isinstance(generation_id, str):
        raise KlingValidationError(
            f"Invalid parameter 'generation_id'={generation_id!r}: a non-empty generation id is "
            "required (the 'id' the create call returned)."
        )
    return api_request(endpoint_family(family), "GET", "fetch",
                       params={"generation_id": generation_id}, subject=generation_id)


def retry_delay(request: ApiRequest, outcome: Outcome, attempt: int,
                policy: RetryPolicy) -> float | None:
    """Seconds to wait before sending ``request`` again, or ``None`` when it must not be retried.

    GETs are idempotent and retried on any transport error, 429 and 500/502/503/504. The create
    POST is paid: it is retried only when the request cannot have created a generation (never
    sent, or refused with 429/503). A read timeout or 500/502/504 after sending may hide a
    generation that was created and billed, so it is reported instead of repeated.
    """
    if attempt >= policy.max_attempts:
        return None
    is_post = request.operation == "create"
    if isinstance(outcome, httpx.RequestError):
        if is_post and not isinstance(outcome, NOT_SENT_ERRORS):
            return None
        return policy.backoff(attempt)
    status = outcome.status_code
    allowed = SAFE_POST_STATUSES if is_post else RETRYABLE_GET_STATUSES
    if status not in allowed:
        return None
    retry_after = parse_retry_after(outcome.headers.get("retry-after"))
    if retry_after is not None:
        return min(retry_after, policy.retry_after_max)
    return policy.backoff(attempt)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or HTTP date form); ``None`` if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" parses as naive: HTTP dates are UTC
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def exchange(request: ApiRequest, policy: RetryPolicy, *, conn_id: str,
             secrets: tuple[str, ...] = ()) -> Generator[Step, Any, dict[str, Any]]:
    """Send ``request`` with retries; return the JSON body of the successful answer."""
    attempt = 0
    while True:
        attempt += 1
        outcome: Outcome = yield request
        if isinstance(outcome, httpx.Response) and outcome.is_success:
            body = json_object(outcome)
            if body is not None:
                scrubbed: dict[str, Any] = scrub(body, secrets)  # an echoed key must not
                return with_cost_headers(scrubbed, outcome.headers)  # reach XCom, events, errors
            if request.operation == "create":
                raise KlingSubmissionUncertainError(
                    f"The create request for model {request.subject!r} succeeded "
                    f"(HTTP {outcome.status_code}) but its body is not readable JSON, so the "
                    "generation id is unknown. A generation may have been created and billed; "
                    "check the AI/ML API dashboard before retrying this task."
                )
            if attempt >= policy.max_attempts:  # a GET: unreadable answers are retried
                raise KlingServerError(
                    f"The API answered HTTP {outcome.status_code} with a body that is not a JSON "
                    f"object while fetching {request.subject!r}, {attempt} times."
                )
            delay = policy.backoff(attempt)
        else:
            retry_in = retry_delay(request, outcome, attempt, policy)
            if retry_in is None:
                error = (error_for_response(request, outcome, conn_id=conn_id, secrets=secrets)
                         if isinstance(outcome, httpx.Response)
                         else error_for_transport(request, outcome, conn_id=conn_id))
                error.created_nothing = (request.operation == "create"
                                         and created_nothing(outcome))
                if isinstance(outcome, httpx.Response):
                    raise error
                raise error from detached(outcome, secrets)
            delay = retry_in
        log.warning("Kling API %s %s: attempt %d/%d failed (%s); retrying in %.1f s",
                    request.method, request.operation, attempt, policy.max_attempts,
                    _describe(outcome), delay)
        yield delay


def _describe(outcome: Outcome) -> str:
    if isinstance(outcome, httpx.Response):
        return f"HTTP {outcome.status_code}"
    return type(outcome).__name__


def create_steps(family: str, body: Mapping[str, Any], policy: RetryPolicy, *,
                 conn_id: str, secrets: tuple[str, ...] = (),
                 client_request_id: str | None = None) -> Generator[Step, Any, str]:
    """Create a generation and return its id (tagged with ``client_request_id`` when given)."""
    request = build_create_request(family, body, client_request_id)
    answer = yield from exchange(request, policy, conn_id=conn_id, secrets=secrets)
    generation_id = answer.get("id") or answer.get("generation_id")
    created = Generation.from_api(answer, generation_id=str(generation_id or ""))
    if created.stage is Stage.FAILED:  # refused outright, e.g. by moderation
        raise generation_failed(created)
    if not isinstance(generation_id, (str, int)) or isinstance(generation_id, bool) \
            or not str(generation_id).strip():
        raise KlingSubmissionUncertainError(
            f"The API accepted the create request for model {request.subject!r} but returned no "
            f"usable generation id (body keys: {sorted(map(str, answer))}). A generation may "
            "have been created; check the AI/ML API dashboard before retrying this task."
        )
    return str(generation_id).strip()


def fetch_steps(family: str, generation_id: str, policy: RetryPolicy, *, conn_id: str,
                secrets: tuple[str, ...] = ()) -> Generator[Step, Any, Generation]:
    """Fetch one generation's current state."""
    request = build_fetch_request(family, generation_id)
    answer = yield from exchange(request, policy, conn_id=conn_id, secrets=secrets)
    return Generation.from_api(answer, generation_id=generation_id)


def generation_failed(generation: Generation) -> KlingGenerationFailedError:
    """The error for a failed generation, naming the API's reason in whatever shape it came."""
    reason = ": ".join(x for x in (generation.error_name, generation.error_message) if x)
    subject = (f"Generation {generation.generation_id!r}" if generation.generation_id
               else "The create request")
    return KlingGenerationFailedError(
        f"{subject} ended with status {generation.status!r}: "
        f"{reason or 'the API gave no reason (its dashboard may show one)'}",
        generation_id=generation.generation_id,
        error_name=generation.error_name,
        error_message=generation.error_message,
    )


_T = TypeVar("_T")


def unless_transient(steps: Generator[Step, Any, _T], what: str,
                     going_on: str) -> Generator[Step, Any, _T | None]:
    """``steps``' answer, or ``None`` after a transient failure (network, 429, 5xx after the
    request's own retries), logged as ``<what> failed transiently, <going_on>: <error>``.

    The one "keep going" rule of the loops that must outlast a flaky API: the wait for a paid
    generation and the lookup of a lost create answer. Anything else (a bad key, no credits, a
    404, a refused request) is raised: waiting longer cannot fix it.
    """
    try:
        return (yield from steps)
    except KlingError as exc:
        if not exc.transient:
            raise
        log.warning("%s failed transiently, %s: %s", what, going_on, exc)
        return None
