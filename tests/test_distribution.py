"""The package as a user gets it: built wheel and sdist, installed into a clean Airflow.

`python -m build` makes both (the wheel from the sdist, so the sdist is complete), `twine check`
accepts them, and the wheel goes into a new virtualenv holding only the released Airflow our lock
pins and the provider's own dependencies. There, outside this checkout, Airflow must find the
provider (`airflow providers get`) and build its connection form, and no test or development tool
may have come along.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import kling_provider

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PACKAGE_DATA = ("kling_provider/py.typed", "kling_provider/data/catalogue.json",
                "kling_provider/testing/sample.mp4")


def _names(lines: list[str]) -> set[str]:
    names = set()
    for line in lines:
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)", line.split("#")[0])
        if match:
            names.add(re.sub(r"[-_.]+", "-", match.group(1)).lower())
    return names


def _run(argv: list[str], cwd: Path | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    clean["PATH"] = f"{BIN}{os.pathsep}{clean.get('PATH', '')}"  # build finds our pinned uv
    clean.update(env or {})
    done = subprocess.run(argv, capture_output=True, text=True, env=clean, cwd=cwd, check=False,
                          timeout=600)
    assert done.returncode == 0, f"{argv}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("checkout") / "dist"  # named as `make dist` names it
    _run([sys.executable, "-m", "build", "--installer", "uv", "--outdir", str(out), str(ROOT)])
    return out


def test_wheel_and_sdist_carry_the_single_sourced_version_and_the_data(dist: Path) -> None:
    version = kling_provider.__version__
    wheel = dist / f"airflow_provider_kling-{version}-py3-none-any.whl"
    sdist = dist / f"airflow_provider_kling-{version}.tar.gz"
    assert sorted(p.name for p in dist.iterdir()) == sorted([wheel.name, sdist.name])
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"airflow_provider_kling-{version}.dist-info/METADATA").decode()
        entry_points = archive.read(f"airflow_provider_kling-{version}.dist-info/entry_points.txt")
    assert set(PACKAGE_DATA) <= names
    assert not any(n.startswith(("tests/", "dags/", "tools/", "docs/")) for n in names)
    assert f"Version: {version}\n" in metadata
    assert b"provider_info = kling_provider:get_provider_info" in entry_points
    with tarfile.open(sdist) as archive:
        members = {m.split("/", 1)[1] for m in archive.getnames() if "/" in m}
    assert set(PACKAGE_DATA) <= members
    _run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)])


def test_wheel_registers_in_a_clean_airflow_without_dev_dependencies(
        dist: Path, tmp_path: Path) -> None:
    wheel = next(dist.glob("*.whl"))
    lock = ROOT / "requirements" / "dev.lock"
    airflow_pin = next(line for line in lock.read_text().splitlines()
                       if line.startswith("apache-airflow=="))
    venv = tmp_path / "airflow-venv"
    _run([str(BIN / "uv"), "venv", "--quiet", "--seed", "--python", sys.executable, str(venv)])
    _run([str(BIN / "uv"), "pip", "install", "--quiet", "--system-certs", "--python",
          str(venv / "bin" / "python"), "--constraint", str(lock), airflow_pin])
    # The install commands the quick start shows, run as they are, in that venv.
    snippet = ROOT / "docs" / "snippets" / "install.sh"
    shown = _run(["bash", "-e", str(snippet)], cwd=dist.parent,
                 env={"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
                      "VIRTUAL_ENV": str(venv), "AIRFLOW_HOME": str(tmp_path / "home")}).stdout
    assert "airflow-provider-kling" in shown and kling_provider.__version__ in shown

    installed = _names(_run([str(BIN / "uv"), "pip", "freeze", "--python",
                             str(venv / "bin" / "python")]).stdout.splitlines())
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(archive.read(n).decode() for n in archive.namelist()
                        if n.endswith(".dist-info/METADATA"))
    runtime = _names([line.split(":", 1)[1] for line in metadata.splitlines()
                      if line.startswith("Requires-Dist:")])
    dev_only = _names((ROOT / "requirements" / "dev.in").read_text().splitlines()) - runtime
    assert "airflow-provider-kling" in installed
    assert not dev_only & installed, f"development packages pulled in: {sorted(dev_only & installed)}"

    env = {"AIRFLOW_HOME": str(tmp_path / "home")}
    got = json.loads(_run([str(venv / "bin" / "airflow"), "providers", "get",
                           "airflow-provider-kling", "-o", "json"], cwd=tmp_path, env=env).stdout)
    assert got == [{"Provider": "airflow-provider-kling", "Version": kling_provider.__version__}]

    probe = (
        "import json, kling_provider\n"
        "from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService\n"
        "forms = {m.connection_type: m.model_dump() for m in HookMetaService.hook_meta_data()}\n"
        "print(json.dumps({'file': kling_provider.__file__, 'form': forms['kling']}))\n")
    shown = json.loads(_run([str(venv / "bin" / "python"), "-c", probe], cwd=tmp_path,
                            env=env).stdout.splitlines()[-1])
    assert "site-packages" in shown["file"]  # the wheel's copy, not this checkout
    form = shown["form"]
    assert form["hook_name"] == "Kling (AI/ML API)"
    assert form["standard_fields"]["password"]["title"] == "API Key"
    assert form["standard_fields"]["login"]["hidden"] is True
    assert {"endpoint_family", "timeout", "max_retries"} <= set(form["extra_fields"])
