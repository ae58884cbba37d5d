"""The gallery's test site: the plugin's own app on a fresh metadata DB, under a real auth manager.

``make_site`` (behind each gallery test module's ``site`` fixture) copies the session's
migrated DB, points this process's Airflow at it, seeds DAGs owned by teams (multi-team mode:
``red_dag`` readable only by team red, ``blue_dag`` by team blue, ``public_dag`` by every
viewer) and a ``kling://videos`` Asset, and starts Airflow's SimpleAuthManager (or a subclass
from ``tests.gallery_auth``). Its JWTs are real: signed and checked by that auth manager. Videos
are stored as the download stores them (bytes, then the ``.kling.json`` sidecar) under the one
configured root.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from kling_provider._storage.identity import VideoIdentity, write_sidecar
from kling_provider.gallery import files
from kling_provider.gallery.app import create_app
from kling_provider.gallery.plugin import KlingGalleryPlugin

SAMPLE = Path(files.__file__).parent.parent / "testing" / "sample.mp4"
SIMPLE = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
ENTITIES = "tests.gallery_auth.EntityDenyingAuthManager"
DAG_DENYING = "tests.gallery_auth.DagDenyingAuthManager"
USERS = {"admin": ("admin", None), "red": ("viewer", "red"), "blue": ("viewer", "blue"),
         "nobody": ("viewer", None), "no_xcom": ("viewer", None), "no_ti": ("viewer", None),
         "no_asset": ("viewer", None)}


def _teams_supported() -> bool:
    """SimpleAuthManager has teams (multi-team mode) from Airflow 3.2; on 3.1 the same per-DAG
    refusals come from ``tests.gallery_auth.DagDenyingAuthManager``."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return "teams" in inspect.signature(SimpleAuthManagerUser.__init__).parameters


TEAMS = _teams_supported()


def _denied_without_teams() -> str:
    """What teams would refuse, as ``KLING_TEST_DENIED_DAGS`` says it."""
    return ",".join(
        f"{name}=" + "|".join(d for d, team in DAGS.items() if team and team != own)
        for name, (role, own) in USERS.items() if role != "admin")


@dataclass
class Site:
    """The plugin app on a fresh metadata DB, a video root, and a way to log users in."""

    app: FastAPI
    root: Path
    tmp: Path
    manager: Any
    next_run: int = 0

    def client(self, user: str | None = None) -> TestClient:
        client = TestClient(self.app, base_url="http://testserver")
        if user is not None:
            from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

            role, team = USERS[user]
            teams = {"teams": [team] if team else []} if TEAMS else {}
            token = self.manager.generate_jwt(SimpleAuthManagerUser(
                username=user, role=role, **teams))
            client.headers["Authorization"] = f"Bearer {token}"
        return client

    def store(self, name: str, generation_id: str | None, data: bytes | None = None,
              under: Path | None = None) -> Path:
        """A video as the download stores it: the bytes, then the sidecar beside them."""
        target = (under or self.root) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(SAMPLE.read_bytes() if data is None else data)
        body = target.read_bytes()
        write_sidecar(target, VideoIdentity.of(generation_id, f"https://cdn.test/{name}"),
                      size=len(body), sha256=hashlib.sha256(body).hexdigest())
        return target

    def event(self, dag_id: str | None, uri: str, generation_id: str | None = None,
              **extra: Any) -> int:
        """A ``kling://videos`` Asset event as a task of ``dag_id`` records it."""
        from airflow.models.asset import AssetEvent, AssetModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        values = {"uri": uri, **extra}
        if generation_id is not None:
            values["generation_id"] = generation_id
        with create_session() as session:
            asset = session.scalars(select(AssetModel).where(
                AssetModel.uri == "kling://videos/")).one()
            self.next_run += 1
            row = AssetEvent(asset_id=asset.id, extra=values, source_dag_id=dag_id,
                             source_task_id="download", source_run_id=f"run_{self.next_run}",
                             source_map_index=-1,
                             timestamp=datetime(2026, 11, 21, 10, self.next_run,
                                                tzinfo=timezone.utc))
            session.add(row)
            session.flush()
            return int(row.id)


def _seed(dags: dict[str, str | None]) -> None:
    from airflow.models.asset import AssetModel
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.team import Team
    from airflow.utils.session import create_session

    with create_session() as session:
        for team_name in {t for t in dags.values() if t}:
            bundle = DagBundleModel(name=f"{team_name}_bundle")
            if TEAMS:
                bundle.teams = [Team(name=team_name)]
            session.add(bundle)
        session.add(DagBundleModel(name="shared_bundle"))
        session.flush()
        for dag_id, team in dags.items():
            bundle_name = f"{team}_bundle" if team else "shared_bundle"
            session.add(DagModel(  # type: ignore[no-untyped-call]
                dag_id=dag_id, bundle_name=bundle_name, is_stale=False, max_active_tasks=16,
                max_consecutive_failed_dag_runs=0, has_task_concurrency_limits=False))
        session.add(AssetModel(name="kling_videos", uri="kling://videos/", group="asset"))


DAGS = {"red_dag": "red", "blue_dag": "blue", "public_dag": None}


def make_site(tmp_path: Path, template: Path, auth_manager: str, *, database: str | None = None,
              **env: str) -> Iterator[Site]:
    """The site on a copy of the SQLite ``template``, or on ``database`` (a SQLAlchemy URL of a
    migrated, empty metadata DB: :func:`postgres_database`)."""
    from airflow import settings
    from airflow.api_fastapi.app import init_auth_manager, purge_cached_app

    db = tmp_path / "airflow.db"
    if database is None:
        shutil.copy(template, db)
    root = tmp_path / "videos"
    root.mkdir()
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({name: f"{name}-pass" for name in USERS}))
    if not TEAMS and auth_manager == SIMPLE:
        auth_manager = DAG_DENYING
        env = {"KLING_TEST_DENIED_DAGS": _denied_without_teams(), **env}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database or f"sqlite:///{db}",
            "AIRFLOW__CORE__AUTH_MANAGER": auth_manager,
            "AIRFLOW__CORE__MULTI_TEAM": str(TEAMS),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                f"{name}:{role}" + (f":{team}" if team and TEAMS else "")
                for name, (role, team) in USERS.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API_AUTH__JWT_SECRET": "gallery-test-secret-" + "0123456789abcdef" * 4,
            "AIRFLOW__KLING__VIDEO_ROOTS": str(root),
            **env,
        }.items():
            patch.setenv(key, value)
        settings.configure_vars()  # type: ignore[no-untyped-call]
        settings.reconfigure_orm()  # type: ignore[no-untyped-call]
        purge_cached_app()
        try:
            _seed(DAGS)  # first: the auth manager checks its users' teams exist
            manager = init_auth_manager()
            # The app the plugin mounts, made afresh per site by the same create_app() (the
            # plugin's was made at import: a mutation test's mutant of create_app would never
            # reach it).
            (mounted,) = (entry["app"] for entry in KlingGalleryPlugin.fastapi_apps)
            app = create_app()
            assert [vars(r).get("path") for r in app.routes] == \
                [vars(r).get("path") for r in mounted.routes]
            yield Site(app=app, root=root, tmp=tmp_path, manager=manager)
        finally:
            purge_cached_app()
            settings.dispose_orm(do_log=False)
    settings.configure_vars()  # type: ignore[no-untyped-call]
    settings.configure_orm()  # type: ignore[no-untyped-call]


#: Airflow's production metadata DB: PostgreSQL on loopback, trust auth (skipped when absent).
POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432"


def postgres_admin(sql: str) -> None:
    """Run ``sql`` on the server's ``postgres`` database (CREATE / DROP DATABASE)."""
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres",
                            connect_timeout=3)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
    finally:
        conn.close()


def postgres_template(tmp: Path) -> Generator[str, None, None]:
    """A PostgreSQL database migrated by ``airflow db migrate`` (the name), dropped afterwards;
    skips when no PostgreSQL answers on 127.0.0.1:5432."""
    import os
    import secrets
    import subprocess
    import sys

    try:
        postgres_admin("SELECT 1")
    except Exception as exc:  # psycopg2.OperationalError, or psycopg2 missing
        pytest.skip(f"PostgreSQL is not reachable on 127.0.0.1:5432 ({exc})".strip())
    name = f"kling_gallery_{secrets.token_hex(4)}"
    postgres_admin(f"CREATE DATABASE {name}")
    try:
        env = {**os.environ, "AIRFLOW_HOME": str(tmp), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
               "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"{POSTGRES}/{name}"}
        subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=env,
                       check=True, capture_output=True, timeout=600)
        yield name
    finally:
        postgres_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def postgres_database(template: str) -> Iterator[str]:
    """A fresh copy of the migrated ``template`` (PostgreSQL copies it in a second): its URL."""
    import secrets

    name = f"{template}_{secrets.token_hex(3)}"
    postgres_admin(f"CREATE DATABASE {name} TEMPLATE {template}")
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        postgres_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def site_on_param(request: pytest.FixtureRequest, tmp_path: Path,
                  airflow_db_template: Path) -> Iterator[Site]:
    """The body of a ``site`` fixture parametrised by ``"sqlite"`` or ``"postgresql"``: a site with
    the simple auth manager on SQLite, or on a fresh PostgreSQL database made from the module's
    ``postgres_template_db`` fixture."""
    if request.param == "sqlite":
        yield from make_site(tmp_path, airflow_db_template, SIMPLE)
        return
    template = request.getfixturevalue("postgres_template_db")
    for url in postgres_database(template):
        yield from make_site(tmp_path, airflow_db_template, SIMPLE, database=url)
