"""Schemathesis runs every published Kling OpenAPI document against the simulator.

The documents are the package's own copy (``kling_provider/testing/published_specs.json``,
derived by ``tools/extract_specs.py``): each model's create operation, on both endpoint
families, is run together with its family's fetch operation (the two operations the path
serves), so undeclared methods are the ones neither declares. A bounded, derandomized number of
examples per operation (``KLING_CONTRACT_EXAMPLES``, default 8); every Schemathesis check
runs except the status-code check, since the documents list only ``200`` while the API's error
contract (400, 401, 403, 404, 429, 5xx, in one body shape) is published apart: the answers'
error bodies are checked against that contract here instead.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest

if sys.version_info < (3, 11):  # pragma: no cover - the version matrix's 3.10 run
    pytest.skip("Schemathesis (pinned 4.32.5) needs Python 3.11+; the 3.10 run of the version "
                "matrix skips the contract test and runs the unit suite",
                allow_module_level=True)

import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import negative_data_rejection, status_code_conformance

from kling_provider.testing._contract import create_schemas, specs
from kling_provider.testing.simulator import KlingSimulator

# Minutes of requests against a real server: run with the integration tests (``make test``).
pytestmark = pytest.mark.integration

KEY = "contract-test-key"
EXAMPLES = int(os.environ.get("KLING_CONTRACT_EXAMPLES", "8"))
CONFIG = SchemathesisConfig.from_dict({
    "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
    "headers": {"Authorization": f"Bearer {KEY}"},
})
ERROR_BODY = {"message", "path", "requestId", "statusCode", "timestamp"}


def documents() -> dict[str, dict[str, Any]]:
    """Each create document with its family's fetch operation on the same path."""
    published = specs()
    merged = {}
    for name, doc in published.items():
        family, page = name.split("/", 1)
        if page == "_fetch-generation":
            continue
        fetch = published[f"{family}/_fetch-generation"]
        doc = copy.deepcopy(doc)
        for path, operations in fetch["paths"].items():
            doc["paths"].setdefault(path, {}).update(copy.deepcopy(operations))
        for section, entries in fetch.get("components", {}).items():
            doc.setdefault("components", {}).setdefault(section, {}).update(entries)
        merged[name] = doc
    return merged


@pytest.fixture(scope="module")
def contract_simulator() -> Iterator[KlingSimulator]:
    """The CLI's simulator: real clocks, any amount of credit for hundreds of creates."""
    with KlingSimulator(api_keys={KEY}, time_scale=600, balance_usd=1e9) as sim:
        yield sim


def error_contract(ctx: Any, response: Any, case: Any) -> bool:
    """Every non-2xx answer is JSON in the API's error body, its ``statusCode`` the status."""
    if response.status_code < 400:
        return True
    body = response.json()
    assert set(body) == ERROR_BODY, body
    assert body["statusCode"] == response.status_code, body
    return True


def described_differently(name: str, doc: dict[str, Any]) -> bool:
    """Whether another page of the endpoint describes one of this page's models otherwise."""
    family = name.split("/", 1)[0]
    models = [m for operations in doc["paths"].values() for operation in operations.values()
              for m in operation.get("requestBody", {}).get("content", {})
              .get("application/json", {}).get("schema", {}).get("properties", {})
              .get("model", {}).get("enum", [])]
    return any(len({json.dumps(s, sort_keys=True) for s in create_schemas(family)[m]}) > 1
               for m in models)


def checker(excluded: list[Any]) -> Any:
    def check(case: Any, contract_simulator: KlingSimulator) -> None:
        response = case.call(base_url=contract_simulator.base_url)
        case.validate_response(response, excluded_checks=excluded,
                               additional_checks=[error_contract])

    return check


for _name, _doc in documents().items():
    _excluded = [status_code_conformance]
    if described_differently(_name, _doc):
        _excluded.append(negative_data_rejection)
    _test = schemathesis.openapi.from_dict(_doc, config=CONFIG).parametrize()(checker(_excluded))
    globals()["test_" + re.sub(r"\W", "_", _name)] = _test
