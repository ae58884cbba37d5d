"""Exactly one paid generation per task: submission intent and recovery, as pure rules.

The API has no idempotency key, no list endpoint and no cancel. What it has: every request may
carry ``X-Client-Request-Id``, and ``GET /v2/logs`` lists requests with that id and the
generation id (``inference_id``) once an async video has finished. So a task

1. writes an *intent* (client request id, model, family, time) to ``task_state_store`` before it
   pays, and sends the POST with that id;
2. writes the generation id into the same record first thing after the answer;
3. on a later try (or after an uncertain answer in the same try) finds an intent without a
   generation id and looks the generation up in the logs instead of paying again.

Everything is I/O free, in three modules by concern, and this one is the name every user imports
(the operators' submission, record and recovery steps, the hooks, the tests), re-exporting them:

- :mod:`kling_provider._task.intent`: the client request ids and the record format;
- :mod:`kling_provider._task.recovery`: the decision table, and the logs query and its paging as
  a step generator (driven by :class:`~kling_provider.hooks.kling.KlingHook` with the same
  sync/async drivers as :mod:`kling_provider._api.protocol`);
- :mod:`kling_provider._task.rate_budget`: the rate budget all recoveries of one process share.
"""

from __future__ import annotations

# Defined where a DAG file parse finds them without loading these rules (parse cost).
from kling_provider import STATE_KEY as STATE_KEY
from kling_provider._checks import ON_UNCERTAIN_SUBMISSION as ON_UNCERTAIN_SUBMISSION
from kling_provider._checks import OnUncertainSubmission as OnUncertainSubmission
from kling_provider._checks import check_on_uncertain_submission as check_on_uncertain_submission
from kling_provider._task.intent import _PREFIX_MAX as _PREFIX_MAX  # the tests' edge cases
from kling_provider._task.intent import NONCE_HEX as NONCE_HEX
from kling_provider._task.intent import SubmissionRecord as SubmissionRecord
from kling_provider._task.intent import client_request_id as client_request_id
from kling_provider._task.intent import earlier_try as earlier_try
from kling_provider._task.intent import next_client_request_id as next_client_request_id
from kling_provider._task.intent import task_prefix as task_prefix
from kling_provider._task.rate_budget import LOGS_RATE_LIMIT as LOGS_RATE_LIMIT
from kling_provider._task.rate_budget import SHARED_LOGS_BUDGET as SHARED_LOGS_BUDGET
from kling_provider._task.rate_budget import RateBudget as RateBudget
from kling_provider._task.recovery import CLOCK_SKEW as CLOCK_SKEW
from kling_provider._task.recovery import LOGS_LAG as LOGS_LAG
from kling_provider._task.recovery import LOGS_PAGE_SIZE as LOGS_PAGE_SIZE
from kling_provider._task.recovery import Action as Action
from kling_provider._task.recovery import LogRow as LogRow
from kling_provider._task.recovery import Match as Match
from kling_provider._task.recovery import _iso as _iso  # operators/_recover's deadline line
from kling_provider._task.recovery import build_logs_request as build_logs_request
from kling_provider._task.recovery import decide as decide
from kling_provider._task.recovery import logs_window as logs_window
from kling_provider._task.recovery import lookup_deadline as lookup_deadline
from kling_provider._task.recovery import lookup_steps as lookup_steps
from kling_provider._task.recovery import parse_rows as parse_rows
from kling_provider._task.recovery import recover_steps as recover_steps
