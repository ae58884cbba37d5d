"""Who is asking, and what Airflow's own UI would show them: the gallery's only access rules.

Plugin apps get no authentication from Airflow, so every route resolves the caller through
Airflow's auth manager (the same JWT the UI holds in its ``_token`` cookie, or a Bearer header).
What the page shows of a DAG (prompts, generation ids, spend, task links) comes from its task
instances' XCom and its ``kling://videos`` Asset events, so a DAG is shown only to a user whom
the auth manager grants, as Airflow's own routes ask: the DAG read, its task instances read and
its XCom read; and its events only with the asset read too. Team-owned DAGs (multi-team mode)
are asked about with their team, as Airflow's ``requires_access_dag`` does.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Annotated, Any

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from fastapi import Depends, HTTPException, Request

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager


def auth_manager() -> BaseAuthManager[Any]:
    # the api-server's app (~1 s, and it loads this plugin): at request time
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


async def optional_user(request: Request) -> BaseUser | None:
    """The Airflow user behind the request's token, or ``None`` (no token, expired, forged)."""
    # loaded with the api-server's app: at request time (see auth_manager)
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from jwt import InvalidTokenError

    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    token = credentials if scheme.lower() == "bearer" else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    if not token:
        return None
    try:
        return await auth_manager().get_user_from_token(token)
    except InvalidTokenError:  # includes ExpiredSignatureError
        return None


async def required_user(user: Annotated[BaseUser | None, Depends(optional_user)]) -> BaseUser:
    if user is None:
        raise HTTPException(status_code=401, detail="Not authenticated: log in to Airflow first.",
                            headers={"WWW-Authenticate": "Bearer"})
    return user


User = Annotated[BaseUser, Depends(required_user)]


def _team_names(dag_ids: Collection[str]) -> dict[str, str | None]:
    """Each DAG's team (multi-team mode), as Airflow's own permission checks pass it."""
    # ORM models (~0.4 s): every Airflow process loads this plugin, only page requests use them
    from airflow.models.dag import DagModel

    mapping = getattr(DagModel, "get_dag_id_to_team_name_mapping", None)
    if mapping is None or not dag_ids:  # Airflow before multi-team: no teams to pass
        return {}
    teams: dict[str, str | None] = mapping(list(dag_ids))
    return teams


def _dag_requests(dag_id: str, team_name: str | None) -> list[Any]:
    # loaded with the api-server's app: at request time (see auth_manager)
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )

    details = DagDetails(id=dag_id, team_name=team_name)
    return [{"method": "GET", "details": details},
            {"method": "GET", "access_entity": DagAccessEntity.TASK_INSTANCE, "details": details},
            {"method": "GET", "access_entity": DagAccessEntity.XCOM, "details": details}]


def _dags_shown(user: BaseUser, dag_ids: Iterable[str]) -> set[str]:
    candidates = set(dag_ids)
    teams = _team_names(candidates)
    manager = auth_manager()
    return {dag_id for dag_id in candidates
            if manager.batch_is_authorized_dag(_dag_requests(dag_id, teams.get(dag_id)),
                                               user=user)}


def shown_dag_ids(user: BaseUser) -> set[str]:
    """The DAGs whose generations ``user`` may see on the page (DAG, task instance, XCom read)."""
    return _dags_shown(user, auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def may_see_dag(user: BaseUser, dag_id: str) -> bool:
    return dag_id in _dags_shown(user, [dag_id])


def readable_assets(user: BaseUser, asset_ids: Iterable[int]) -> set[int]:
    """Of ``asset_ids``, those whose events ``user`` may read (Airflow's asset read)."""
    # loaded with the api-server's app: at request time (see auth_manager)
    from airflow.api_fastapi.auth.managers.models.resource_details import AssetDetails

    manager = auth_manager()
    return {asset_id for asset_id in asset_ids
            if manager.is_authorized_asset(method="GET", details=AssetDetails(id=str(asset_id)),
                                           user=user)}
