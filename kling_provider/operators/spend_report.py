"""``KlingSpendReportOperator``: what tasks recorded against what the service billed, per day.

Reads the service's side, ``GET /v2/usage/detail?group_by=day,model`` over the last ``days``
UTC days (the connection's key), and reconciles it with ``recorded``: the provider's own record
per day and model, typically the output of a SQL task running the documented query over the
videos page's summary table (docs/spend.rst). The rows that differ are logged; every row is
returned (XCom-safe: amounts as exact decimal text), and the whole report is pushed as the
``kling_spend_report`` XCom the videos page shows (:mod:`kling_provider._money.readings`). The
rules: :mod:`kling_provider._money.reconcile`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from kling_provider import DEFAULT_CONN_ID
from kling_provider.exceptions import KlingValidationError
from kling_provider.hooks._task import TaskHook, closes_hook

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["KlingSpendReportOperator"]

#: The longest report: the service answers at most 92 days per window.
MAX_DAYS = 92


class KlingSpendReportOperator(TaskHook, BaseOperator):
    """Reconcile recorded spend with the service's bill, per UTC day and model.

    :param recorded: rows of (day, model, usd) or mappings with those keys (templated: an
        XComArg of a SQL task); ``None`` reports what was billed, every row "billed, not
        recorded".
    :param days: how many UTC days back, today included (1-92).
    :param kling_conn_id: the connection whose key's bill is read.
    """

    template_fields: Sequence[str] = ("recorded",)

    def __init__(self, *, recorded: Any = None, days: int = 7,
                 kling_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
            raise KlingValidationError(
                f"Task {self.task_id!r}: invalid parameter 'days'={days!r}: a whole number of "
                f"days from 1 to {MAX_DAYS} (the service reports at most 92 days at once).")
        self.recorded, self.days, self.kling_conn_id = recorded, days, kling_conn_id

    @closes_hook
    def execute(self, context: Context) -> list[dict[str, str]]:
        # execute time only (parse cost)
        from kling_provider._money.readings import REPORT_XCOM_KEY, SpendReport
        from kling_provider._money.reconcile import reconcile, recorded_rows, report_lines
        from kling_provider._task.reservations import key_id

        recorded = recorded_rows(self.recorded or [])
        now = datetime.fromtimestamp(self.hook.clock.now(), timezone.utc)
        first = (now - timedelta(days=self.days - 1)).date()
        start = datetime(first.year, first.month, first.day, tzinfo=timezone.utc)
        total, groups = self.hook.get_usage_detail(
            start.isoformat().replace("+00:00", "Z"), now.isoformat().replace("+00:00", "Z"))
        recorded = {k: v for k, v in recorded.items() if k[0] >= first.isoformat()}
        rows = reconcile(recorded, [(g.day, g.model, g.usd) for g in groups])
        self.log.info("Spend of connection %r from %s to %s (UTC days), billed %s in total:",
                      self.kling_conn_id, first.isoformat(), now.date().isoformat(), total)
        for line in report_lines(rows):
            self.log.info("%s", line)
        report = SpendReport(key=key_id(self.hook.settings.api_key), conn_id=self.kling_conn_id,
                             first_day=first.isoformat(), last_day=now.date().isoformat(),
                             billed_total=total, rows=tuple(rows), reported_at=now)
        context["ti"].xcom_push(key=REPORT_XCOM_KEY, value=report.to_record())
        return [row.to_dict() for row in rows]
