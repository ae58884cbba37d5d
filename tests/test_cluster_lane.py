"""``make test``'s lanes (tools/run_tests.py) hold every test file, each once, by what it starts.

The ``clusters`` lane runs the files that start a whole real Airflow, one after the other; the
``suite`` lane runs every other file beside it. A new file that starts a cluster but is not named
in ``CLUSTER_TESTS`` would run in the suite lane, beside another cluster, and share the two cores
with it: this test names it instead.
"""

from __future__ import annotations

from pathlib import Path

from tools.run_tests import CLUSTER_TESTS, ROOT

#: What a test file starting a whole Airflow says: tools/cluster.py's cluster or a test fixture
#: built on it, or ``make airflow``.
STARTS_A_CLUSTER = ("local_cluster(", "production_cluster(", ".start_core(", "AirflowCluster(",
                    "test_real_airflow.cluster", '"make", "airflow"')


def test_every_file_starting_a_cluster_runs_in_the_clusters_lane() -> None:
    starting = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tests").glob("test_*.py")
                      if path.name != Path(__file__).name
                      and any(sign in path.read_text() for sign in STARTS_A_CLUSTER))
    assert starting == sorted(CLUSTER_TESTS)
    assert len(set(CLUSTER_TESTS)) == len(CLUSTER_TESTS)
    assert all((ROOT / path).is_file() for path in CLUSTER_TESTS)

