"""The one exception hierarchy of the Kling provider.

Every error the hook, operators, sensor and trigger raise on purpose is a :class:`KlingError`, and
so an :class:`~airflow.exceptions.AirflowException`: Airflow's retry machinery treats them like any
other task failure. Messages name the connection id, the generation id and what to check; they
never contain the API key (the hook builds them from response bodies it has already scrubbed).

Hierarchy::

    KlingError
    ├── KlingValidationError          bad input, found locally or by the API (400)
    ├── KlingAuthenticationError      401
    ├── KlingNoCreditsError           403
    │   └── KlingInsufficientBalanceError  balance below the estimate, before any POST
    ├── KlingCostLimitError           estimate above ``max_cost_usd``, before any POST
    ├── KlingModelWithdrawnError      the model was withdrawn (deprecation feed), before any POST
    ├── KlingGenerationNotFoundError  404 on fetch
    ├── KlingModelNotFoundError       404 on create (the model is gone, or the endpoint is wrong)
    ├── KlingRateLimitError           429 after retries
    ├── KlingServerError              5xx / malformed body after retries
    ├── KlingNetworkError             connect / read failure after retries
    ├── KlingSubmissionUncertainError POST may have created a generation; not retried
    ├── KlingGenerationFailedError    the generation ended in a failure status
    ├── KlingTimeoutError             the wait passed its deadline
    └── KlingDownloadError            the video could not be stored completely
"""

from __future__ import annotations

# Airflow 3.1's airflow.sdk.exceptions has no AirflowFailException (the version matrix caught
# it): the SDK class where it exists, else core's, as common.compat.sdk resolves them. Not through
# common.compat itself: loading its whole name map cost every DAG file parse ~5 ms.
from airflow.sdk.exceptions import AirflowException

try:
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # Airflow 3.1
    from airflow.exceptions import AirflowFailException  # type: ignore[no-redef,attr-defined,unused-ignore]


class KlingError(AirflowException):
    """Base class of every error raised by the Kling provider."""

    #: Whether waiting may go on after this error (the trigger and the wait loop keep polling).
    transient: bool = False
    #: Set on a create request's error when the API cannot have created anything (a definite
    #: refusal, or a request never sent): its submission intent is closed, and the next try
    #: submits at once with a new request id instead of looking the intent up in the logs.
    created_nothing: bool = False


class KlingValidationError(KlingError, ValueError):
    """Raised when request parameters are invalid, before any request or on an API 400."""


class KlingAuthenticationError(KlingError):
    """Raised when the API rejects the connection's API key (401)."""


class KlingNoCreditsError(KlingError):
    """Raised when the account has no credits left (403)."""


class KlingInsufficientBalanceError(KlingNoCreditsError):
    """Raised before any paid request when the account balance cannot cover the estimated price."""


class KlingCostLimitError(KlingError, AirflowFailException):
    """Raised before any paid request when the estimated price exceeds ``max_cost_usd``; no retry."""


class KlingModelWithdrawnError(KlingError, AirflowFailException):
    """Raised before any paid request for a model the API withdrew; no retry brings it back."""

    created_nothing = True


class KlingBudgetExceededError(KlingCostLimitError):
    """Raised before any paid request when spent + in flight + the estimate pass the budget."""


class KlingSpendUnknownError(KlingError):
    """Raised before any paid request when a budget's spend cannot be read (and must be)."""


class KlingGenerationNotFoundError(KlingError):
    """Raised when the API does not know the generation id (404 on fetch)."""


class KlingModelNotFoundError(KlingError):
    """Raised when the API answers a create with 404: a withdrawn model, or a wrong endpoint."""


class KlingRateLimitError(KlingError):
    """Raised when requests stay rate limited (429) after the retry budget is spent."""

    transient = True


class KlingServerError(KlingError):
    """Raised when the API keeps answering 5xx or an unreadable body after the retry budget."""

    transient = True


class KlingNetworkError(KlingError):
    """Raised when the API cannot be reached or the connection drops after the retry budget."""

    transient = True


class KlingSubmissionUncertainError(KlingError):
    """Raised when a create request failed in a way that may still have started a paid generation."""


class KlingGenerationFailedError(KlingError):
    """Raised when a generation ends in a failure status; carries the API's error name and message."""

    def __init__(self, message: str, *, generation_id: str, error_name: str | None = None,
                 error_message: str | None = None) -> None:
        super().__init__(message)
        self.generation_id = generation_id
        self.error_name = error_name
        self.error_message = error_message


class KlingTimeoutError(KlingError):
    """Raised when a generation is still not finished at the wait's deadline."""


class KlingDownloadError(KlingError):
    """Raised when a video cannot be downloaded completely; nothing is left at the destination."""
