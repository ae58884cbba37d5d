"""Model retirement in a real Airflow task run: ``airflow dags test kling_retired_models``
(``tests/dags/kling_retired_models.py``) against the simulator, which lists one model as
withdrawn and one as deprecated. The withdrawn one fails before any paid request (the
simulator's ledger has no POST of it); the deprecated one runs, warns in its task log and sends
``kling.model.retiring`` through Airflow's own StatsD backend."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kling_provider.catalogue import endpoint_path
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import SECRET_KEY
from tests.dags.kling_retired_models import DEPRECATED, WITHDRAWN
from tests.test_dag_runs import AIRFLOW, ROOT, airflow_env
from tests.test_spend_airflow import StatsdListener
from tests.test_spend_airflow import statsd as statsd  # the fixture

pytestmark = pytest.mark.integration


@pytest.fixture
def retiring() -> Iterator[KlingSimulator]:
    """The simulator with the DAG's two models in its deprecation feed."""
    with KlingSimulator(time_scale=2000, api_keys={SECRET_KEY}) as sim:
        sim.retirements.retire(WITHDRAWN, "withdrawn", shutdown_at="2026-08-10",
                               replaced_by=DEPRECATED)
        sim.retirements.retire(DEPRECATED, "deprecated", shutdown_at="2099-12-31",
                               replaced_by="klingai/video-v3-pro-text-to-video")
        yield sim


def test_withdrawn_fails_before_paying_and_deprecated_warns(
        retiring: KlingSimulator, statsd: StatsdListener, airflow_db_template: Path,
        tmp_path: Path) -> None:
    home = tmp_path / "airflow"
    home.mkdir()
    shutil.copy(airflow_db_template, home / "airflow.db")
    connection = {"conn_type": "kling", "host": retiring.base_url, "password": SECRET_KEY}
    done = subprocess.run(
        [AIRFLOW, "dags", "test", "kling_retired_models"], capture_output=True, text=True,
        timeout=300, env={**os.environ, **airflow_env(home), **statsd.env(),
                          "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "tests" / "dags"),
                          "AIRFLOW_CONN_KLING_DEFAULT": json.dumps(connection)})
    posts = retiring.ledger.entries(method="POST", path=endpoint_path("legacy"))
    generations = retiring.generations_by_client_request_id()
    feed_reads = retiring.ledger.count(method="GET", path="/v1/models/deprecations")
    logs = "\n".join(p.read_text(errors="replace") for p in (home / "logs").rglob("*")
                     if p.is_file())
    output = done.stdout + done.stderr + logs
    assert "state=failed" in output, output[-5000:]  # the run fails: the withdrawn task did
    # Exactly one POST: the deprecated model's. The withdrawn one never reached the create.
    assert len(posts) == 1, output[-5000:]
    [(cri, ids)] = generations.items()
    assert cri and ":deprecated_model:" in cri and len(ids) == 1
    assert feed_reads >= 1
    assert "KlingModelWithdrawnError" in output
    assert f"Not submitting: model {WITHDRAWN} was withdrawn by the AI/ML API on 2026-08-10" \
           in output and f"replaced by {DEPRECATED!r}" in output
    assert f"Model {DEPRECATED} is deprecated" in output
    assert "shuts down on 2099-12-31; replaced by 'klingai/video-v3-pro-text-to-video'" in output
    counted = [(tags, value) for name, tags, value, _ in statsd.kling()
                if name == "airflow.kling.model.retiring"]
    assert ({"model": DEPRECATED, "status": "deprecated"}, "1") in counted, statsd.kling()
    assert ({"model": WITHDRAWN, "status": "withdrawn"}, "1") in counted
