"""The AI/ML API protocol as pure functions and I/O-free step generators.

This is the provider's single implementation of request building, response parsing, status
classification, error mapping and retry policy. It performs no I/O: the step generators *yield*
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
from typing import Any, Literal

import httpx

from kling_provider._endpoints import ENDPOINTS
from kling_provider._network import failed_url, transport_cause
from kling_provider._spend import with_cost_headers
from kling_provider.catalogue import endpoint_family
from kling_provider.exceptions import (
    KlingAuthenticationError,
    KlingError,
    KlingGenerationFailedError,
    KlingGenerationNotFoundError,
    KlingNetworkError,
    KlingNoCreditsError,
    KlingRateLimitError,
    KlingServerError,
    KlingSubmissionUncertainError,
    KlingValidationError,
)
from kling_provider.types import Generation, StatusClass, describe_error

log = logging.getLogger("kling_provider")

Operation = Literal["create", "fetch", "probe", "metrics", "account"]
#: What a driver hands back for an :class:`ApiRequest`: the response, or the request error
#: (a transport failure, or an answer whose content encoding cannot be decoded).
Outcome = httpx.Response | httpx.RequestError

#: Transport errors raised before any byte of the request left: retrying cannot duplicate it.
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
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
#: key for finding a generation whose create answer was lost: :mod:`kling_provider._submission`).
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


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """Remove every secret from ``text``: server messages may echo request headers."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


#: Shorter "keys" are not scrubbed out of answers: real AI/ML API keys are far longer, and
#: replacing a one-letter test key everywhere would corrupt generation ids and video URLs.
MIN_SCRUBBED_SECRET = 8


def scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` (parsed JSON) with every secret removed from every string in it."""
    secrets = tuple(s for s in secrets if len(s) >= MIN_SCRUBBED_SECRET)
    if not secrets:
        return value
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {scrub(k, secrets): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    return value


def detached(error: httpx.RequestError, secrets: tuple[str, ...]) -> httpx.RequestError:
    """``error`` without its request, to chain as a cause: ``error.request.headers`` holds the
    ``Authorization`` header, which tracebacks, Sentry-like tools and ``__cause__`` walkers see."""
    message = redact(str(error), secrets)
    try:
        return type(error)(message)
    except Exception:  # a transport's own subclass with another signature: keep the kind
        return httpx.RequestError(f"{type(error).__name__}: {message}")


def _api_message(response: httpx.Response) -> tuple[str, str | None]:
    """The error body's ``message`` (and ``requestId``) per the error contract, else its text."""
    readable, body = read_json(response)
    if not readable:
        return (_text(response)[:500].strip() or response.reason_phrase), None
    if isinstance(body, dict):
        _, message = describe_error({k: body[k] for k in ("message", "error", "detail")
                                     if k in body} or body)
        request_id = body.get("requestId")
        return (message or response.reason_phrase)[:1000], (str(request_id) if request_id else None)
    return describe_error(body)[1] or response.reason_phrase, None


def read_json(response: httpx.Response) -> tuple[bool, Any]:
    """``(True, body)`` when the body is JSON, else ``(False, None)``; never raises.

    Every way a body can fail to decode counts (bad syntax, truncation, bad bytes, nesting deep
    enough to exhaust the parser's recursion): after a paid POST a raw exception would lose the
    fact that the request may have created a generation.
    """
    try:
        return True, response.json()
    except (ValueError, UnicodeDecodeError, RecursionError, TypeError):
        return False, None


def _text(response: httpx.Response) -> str:
    try:
        return response.text
    except (ValueError, LookupError, UnicodeDecodeError):
        return ""


def error_for_response(request: ApiRequest, response: httpx.Response, *, conn_id: str,
                       secrets: tuple[str, ...] = ()) -> KlingError:
    """Map an unsuccessful (or unreadable) API response to the provider's exception."""
    message, request_id = _api_message(response)
    message = redact(message, secrets)
    status = response.status_code
    ref = f" (requestId {request_id})" if request_id else ""
    what = (f"creating a generation of model {request.subject!r}" if request.operation == "create"
            else f"fetching generation {request.subject!r}" if request.operation == "fetch"
            else f"reading the live timings of {request.subject!r}" if request.operation == "metrics"
            else f"reading {request.subject}" if request.operation == "account"
            else "checking the connection")
    if status == 400:
        return KlingValidationError(f"The API rejected the request while {what} (400): {message}{ref}")
    if status == 401:
        return KlingAuthenticationError(
            f"The API rejected the API key of connection {conn_id!r} (401) while {what}: {message}. "
            "Check the connection's API Key (password field)."
        )
    if status == 403:
        return KlingNoCreditsError(
            f"The account behind connection {conn_id!r} may not do this (403) while {what}: "
            f"{message}{ref}. Top up credits or check the plan."
        )
    if status == 404 and request.operation == "fetch":
        return KlingGenerationNotFoundError(
            f"The API does not know generation {request.subject!r} (404). Check the id and that "
            f"connection {conn_id!r} uses the same endpoint family and account that created it."
        )
    if status == 404 and request.operation == "create":
        return KlingError(f"The API refused the request while {what} (404): {message}{ref}. "
                          "Check the connection's host and the model's endpoint family.")
    if status == 429:
        return KlingRateLimitError(
            f"Rate or concurrency limit (429) while {what}, still limited after retries: {message}{ref}"
        )
    if request.operation == "create" and (status >= 500 or status < 400):
        return KlingSubmissionUncertainError(
            f"The create request for model {request.subject!r} reached the API but failed "
            f"({status}: {message}{ref}). A generation may have been created and billed, so it "
            "was not sent again. Check the AI/ML API dashboard before retrying this task."
        )
    if status >= 500 or status < 400:
        return KlingServerError(f"The API failed (HTTP {status}) while {what}: {message}{ref}")
    return KlingError(f"Unexpected HTTP {status} while {what}: {message}{ref}")


def error_for_transport(request: ApiRequest, error: httpx.RequestError, *,
                        conn_id: str) -> KlingError:
    """Map a transport failure (after retries) to the provider's exception."""
    kind = type(error).__name__
    if request.operation == "create" and not isinstance(error, NOT_SENT_ERRORS):
        lost = ("its answer could not be decoded" if isinstance(error, httpx.DecodingError)
                else "no answer arrived")
        return KlingSubmissionUncertainError(
            f"The create request for model {request.subject!r} was sent but {lost} "
            f"({kind}). A generation may have been created and billed, so it was not sent again. "
            "Check the AI/ML API dashboard before retrying this task."
        )
    url = failed_url(error) or request.path
    return KlingNetworkError(
        f"Could not reach the AI/ML API of connection {conn_id!r} at {url} ({kind}) while "
        f"{'creating' if request.operation == 'create' else 'fetching'} "
        f"{request.subject!r}: {transport_cause(error, url)}"
    )


def exchange(request: ApiRequest, policy: RetryPolicy, *, conn_id: str,
             secrets: tuple[str, ...] = ()) -> Generator[Step, Any, dict[str, Any]]:
    """Send ``request`` with retries; return the JSON body of the successful answer."""
    attempt = 0
    while True:
        attempt += 1
        outcome: Outcome = yield request
        if isinstance(outcome, httpx.Response) and outcome.is_success:
            body = _json_object(outcome)
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


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or ``None`` when it is not one (an HTML error page, ...)."""
    body = read_json(response)[1]
    return body if isinstance(body, dict) else None


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
    if created.status_class is StatusClass.FAILURE:  # refused outright, e.g. by moderation
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
