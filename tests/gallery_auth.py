"""Test auth managers that say "this user may not read that" where SimpleAuthManager cannot.

SimpleAuthManager grants by role (every viewer reads every DAG, its task instances, XCom and
Assets) and, in multi-team mode, by team: the gallery's unit tests use it as is for per-DAG
refusals (``tests/test_gallery_app.py``). What it cannot express, these subclasses add, each by
changing one answer and keeping login, tokens and roles SimpleAuthManager's:

- ``DagDenyingAuthManager``: listed users may not read the listed DAGs
  (``KLING_TEST_DENIED_DAGS="user=dag_a|dag_b,..."``); what ``get_authorized_dag_ids`` asks too.
  The browser test's cluster uses it (multi-team needs team-owned DAG bundles).
- ``EntityDenyingAuthManager``: listed users may read DAGs but not the listed parts of them
  (``KLING_TEST_DENIED_ENTITIES="user=XCOM|TASK_INSTANCE|ASSET,..."``; ``ASSET``: no Asset read).
"""

from __future__ import annotations

import os
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager


def _listed(variable: str, username: str) -> set[str]:
    for entry in os.environ.get(variable, "").split(","):
        user, _, names = entry.partition("=")
        if user.strip() == username:
            return {d.strip() for d in names.split("|") if d.strip()}
    return set()


def denied_dags(username: str) -> set[str]:
    return _listed("KLING_TEST_DENIED_DAGS", username)


class DagDenyingAuthManager(SimpleAuthManager):
    """SimpleAuthManager, except that listed users may not read the DAGs listed for them."""

    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None,
                          details: Any = None) -> bool:
        if details is not None and details.id in denied_dags(user.get_name()):
            return False
        allowed: bool = super().is_authorized_dag(method=method, user=user,
                                                  access_entity=access_entity, details=details)
        return allowed


class EntityDenyingAuthManager(SimpleAuthManager):
    """SimpleAuthManager, except that listed users may not read the listed parts of DAGs."""

    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None,
                          details: Any = None) -> bool:
        denied = _listed("KLING_TEST_DENIED_ENTITIES", user.get_name())
        if access_entity is not None and access_entity.name in denied:
            return False
        allowed: bool = super().is_authorized_dag(method=method, user=user,
                                                  access_entity=access_entity, details=details)
        return allowed

    def is_authorized_asset(self, *, method: Any, user: Any, details: Any = None) -> bool:
        if "ASSET" in _listed("KLING_TEST_DENIED_ENTITIES", user.get_name()):
            return False
        allowed: bool = super().is_authorized_asset(method=method, user=user, details=details)
        return allowed
