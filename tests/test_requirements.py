"""The locks agree with what they were compiled from, and the matrix runs every lock we ship.

A pin changed in requirements/dev.in but re-locked only in dev.lock would leave the other Airflow
minors' locks testing something else: caught here, offline.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tools.matrix import ENTRIES, PRODUCTION

PRODUCTION_LABEL = PRODUCTION[0]

REQ = Path(__file__).resolve().parent.parent / "requirements"
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)\s*(?:;\s*(.*))?$")
LOCKS = sorted(REQ.glob("*.lock"))


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, set[str]]:
    pins: dict[str, set[str]] = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            pins.setdefault(_norm(match.group(1)), set()).add(match.group(2))
    return pins


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_every_lock_pins_what_dev_in_pins(lock: Path) -> None:
    header = lock.read_text().splitlines()[1]
    assert "uv pip compile --universal --python-version 3.10 requirements/dev.in" in header
    overrides: dict[str, set[str]] = {}
    override = re.search(r"--override (\S+)", header)
    if override:
        overrides = _pins(REQ.parent / override.group(1))
    locked = _pins(lock)
    for name, versions in _pins(REQ / "dev.in").items():
        wanted = overrides.get(name, versions)
        assert wanted <= locked.get(name, set()), (
            f"{lock.name} pins {name}=={locked.get(name)} but its inputs say {wanted}: re-run the "
            f"command in its header")


def test_each_airflow_minor_has_a_lock_and_a_matrix_entry() -> None:
    minors = {}
    for lock in LOCKS:
        airflow = _pins(lock)["apache-airflow"]
        assert len(airflow) == 1
        minors[lock.name] = ".".join(next(iter(airflow)).split(".")[:2])
    assert sorted(minors.values()) == ["3.1", "3.2", "3.3"]
    matrix_locks = {Path(entry.lock).name for entry in ENTRIES} | {"dev.lock"}
    assert matrix_locks == set(minors)
    pythons = {entry.python for entry in ENTRIES}
    assert {"3.10", "3.13"} <= pythons


def test_readme_version_table_says_what_make_test_runs() -> None:
    readme = (REQ.parent / "README.md").read_text()
    airflow_row = next(line for line in readme.splitlines() if line.startswith("| Airflow |"))
    python_row = next(line for line in readme.splitlines() if line.startswith("| Python |"))
    versions = {next(iter(_pins(lock)["apache-airflow"])) for lock in LOCKS}
    for version in versions:
        assert version in airflow_row, f"README does not name the tested Airflow {version}"
    production = sorted({e.python for e in ENTRIES if PRODUCTION_LABEL in dict(e.runs)},
                        key=lambda v: tuple(map(int, v.split("."))))
    pythons = sorted({e.python for e in ENTRIES}, key=lambda v: tuple(map(int, v.split("."))))
    assert f"{pythons[0]} to {pythons[-1]}" in python_row
    assert ", ".join(production[:-1]) + f" and {production[-1]}" in python_row
