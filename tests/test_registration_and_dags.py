"""Provider registration as Airflow sees it, and the example DAGs as the DAG processor sees them."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from kling_provider import get_provider_info
from kling_provider.hooks.kling import KlingHook

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "dags"


def airflow_schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(resources.files("airflow").joinpath(name).read_text())
    return data


def test_provider_info_matches_airflow_schema() -> None:
    info = get_provider_info()
    jsonschema.validate(info, airflow_schema("provider_info.schema.json"))
    # The declarative connection form is only described in provider.yaml's schema.
    yaml_schema = airflow_schema("provider.yaml.schema.json")
    connection_item = yaml_schema["properties"]["connection-types"]["items"]
    for connection in info["connection-types"]:
        jsonschema.validate(connection, connection_item)


def test_provider_info_names_importable_classes() -> None:
    import importlib

    info = get_provider_info()
    modules = [m for kind in ("hooks", "operators", "sensors", "triggers")
               for entry in info[kind] for m in entry["python-modules"]]
    paths = [c["hook-class-name"] for c in info["connection-types"]] + info["extra-links"]
    for module in modules:
        importlib.import_module(module)
    for path in paths:
        module, _, name = path.rpartition(".")
        assert hasattr(importlib.import_module(module), name), path
    assert info["connection-types"][0]["ui-field-behaviour"]["relabeling"]["password"] == "API Key"
    assert KlingHook.get_ui_field_behaviour()["relabeling"]["password"] == "API Key"


def test_every_example_dag_loads_without_errors_or_warnings() -> None:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        accepted = inspect.signature(DagBag).parameters  # 3.3 dropped include_examples
        options: dict[str, Any] = {"include_examples": False, "bundle_path": DAGS}
        bag = DagBag(dag_folder=DAGS, **{k: v for k, v in options.items() if k in accepted})
    assert bag.import_errors == {}
    files = {p.stem for p in DAGS.glob("kling_*.py")}
    assert files <= set(bag.dag_ids)
    ours = [w for w in caught if "kling" in str(w.filename) or "dags" in str(w.filename)]
    assert ours == [], [str(w.message) for w in ours]


@pytest.mark.integration
def test_airflow_cli_lists_the_provider(tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    airflow = str(Path(sys.executable).parent / "airflow")
    providers = subprocess.run([airflow, "providers", "list", "-o", "json"], env=env,
                               capture_output=True, text=True, check=True).stdout
    assert any(p["package_name"] == "airflow-provider-kling" for p in json.loads(providers))
    hooks = subprocess.run([airflow, "providers", "hooks", "-o", "json"], env=env,
                           capture_output=True, text=True, check=True).stdout
    kling = [h for h in json.loads(hooks) if h["connection_type"] == "kling"]
    assert kling and kling[0]["class"] == "kling_provider.hooks.kling.KlingHook"
