"""Reading the API's answers: JSON bodies, secrets scrubbed out, the provider's error for a failure.

Pure functions over ``httpx`` answers, used by the step generators of :mod:`kling_provider._api.protocol`
(which decide *whether* to retry; this module says *what* an answer means) and by the service
reads of :mod:`kling_provider._api.service`. Every message built here has the API key removed: a
server may echo request headers back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from kling_provider._api.network import failed_url, transport_cause
from kling_provider.exceptions import (
    KlingAuthenticationError,
    KlingError,
    KlingGenerationNotFoundError,
    KlingModelNotFoundError,
    KlingNetworkError,
    KlingNoCreditsError,
    KlingRateLimitError,
    KlingServerError,
    KlingSubmissionUncertainError,
    KlingValidationError,
)
from kling_provider.types import describe_error

if TYPE_CHECKING:  # the requests are built above this module, which only reads them
    from kling_provider._api.protocol import ApiRequest, Operation

#: Transport errors raised before any byte of the request left: retrying cannot duplicate it.
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


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


#: What a request was doing, per operation, as its error messages say it (``{}``: its subject).
#: One entry each: an operation without one fails loudly instead of borrowing another's words.
_DOING: dict[Operation, str] = {
    "create": "creating a generation of model {!r}", "fetch": "fetching generation {!r}",
    "metrics": "reading the live timings of {!r}", "account": "reading {}",
    "probe": "checking the connection"}


def error_for_response(request: ApiRequest, response: httpx.Response, *, conn_id: str,
                       secrets: tuple[str, ...] = ()) -> KlingError:
    """Map an unsuccessful (or unreadable) API response to the provider's exception."""
    message, request_id = _api_message(response)
    message = redact(message, secrets)
    status = response.status_code
    ref = f" (requestId {request_id})" if request_id else ""
    what = _DOING[request.operation].format(request.subject)
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
        return KlingModelNotFoundError(
            f"The API refused the request while {what} (404): {message}{ref}. Check the "
            "connection's host and the model's endpoint family.")
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


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or ``None`` when it is not one (an HTML error page, ...)."""
    body = read_json(response)[1]
    return body if isinstance(body, dict) else None
