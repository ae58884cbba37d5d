"""A test auth manager that can say "this user may not read that DAG".

SimpleAuthManager grants by role only (every viewer reads every DAG); per-DAG refusals there need
multi-team mode (teams on DAG bundles), whose set-up would test team plumbing rather than the
gallery's check. This subclass changes one answer, ``is_authorized_dag``, which is what Airflow's
default ``filter_authorized_dag_ids``/``get_authorized_dag_ids`` call too; login, tokens and roles
stay SimpleAuthManager's. Configured with ``[core] auth_manager = tests.gallery_auth.
DagDenyingAuthManager`` and ``KLING_TEST_DENIED_DAGS="user=dag_a|dag_b,..."``.
"""

from __future__ import annotations

import os
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager


def denied_dags(username: str) -> set[str]:
    for entry in os.environ.get("KLING_TEST_DENIED_DAGS", "").split(","):
        user, _, dags = entry.partition("=")
        if user.strip() == username:
            return {d.strip() for d in dags.split("|") if d.strip()}
    return set()


class DagDenyingAuthManager(SimpleAuthManager):
    """SimpleAuthManager, except that listed users may not read the DAGs listed for them."""

    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None,
                          details: Any = None) -> bool:
        if details is not None and details.id in denied_dags(user.get_name()):
            return False
        allowed: bool = super().is_authorized_dag(method=method, user=user,
                                                  access_entity=access_entity, details=details)
        return allowed
