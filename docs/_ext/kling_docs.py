"""Pages generated at build time from the package, so the docs cannot drift from the code.

- ``_generated/models.rst``: every catalogue model, its endpoint families, and per family each
  request field with its type, allowed values, range and default (from ``kling_provider/data``).
- ``_generated/versions.rst``: the tested Airflow x Python matrix (from ``tools/matrix.py``).
- ``_generated/connection_form.rst``: the connection form fields (from ``get_provider_info()``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

from kling_provider import get_provider_info
from kling_provider.catalogue import endpoint_path, get_model, list_models
from tools.matrix import ENTRIES


def describe(schema: Mapping[str, Any]) -> str:
    """One line for a JSON-schema field: type, allowed values, range, default, nested keys."""
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        kind = " or ".join(str(k) for k in kind)
    parts = [f"{kind}"]
    if "format" in schema:
        parts[0] += f" ({schema['format']})"
    if "enum" in schema:
        parts.append("one of " + ", ".join(f"``{json.dumps(v)}``" for v in schema["enum"]))
    if "minimum" in schema or "maximum" in schema:
        parts.append(f"from {schema.get('minimum', '-inf')} to {schema.get('maximum', 'inf')}")
    for key, word in (("minLength", "min length"), ("maxLength", "max length"),
                      ("minItems", "min items"), ("maxItems", "max items")):
        if key in schema:
            parts.append(f"{word} {schema[key]}")
    if "default" in schema:
        parts.append(f"default ``{json.dumps(schema['default'])}``")
    if kind == "object" and schema.get("properties"):
        inner = "; ".join(f"``{name}``: {describe(sub)}" for name, sub in schema["properties"].items())
        parts.append(f"keys: {inner}")
    if kind == "array" and isinstance(schema.get("items"), Mapping):
        parts.append(f"items: {describe(schema['items'])}")
    return "; ".join(parts)


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def models_page() -> str:
    models = list_models()
    lines = [
        ".. This page is generated from kling_provider/data/catalogue.json by docs/_ext/kling_docs.py.",
        "",
        "Models and their fields",
        "=======================",
        "",
        f"The provider's catalogue knows {len(models)} Kling models. Each is served by one or both",
        "endpoint families (see :doc:`/connection`); the fields differ by family. Values are",
        "checked before any paid request; a field not listed here can still be sent with",
        "``extra_params={...}`` (unvalidated). A model id not listed fails when the DAG is parsed,",
        "naming the closest ids, unless the task sets ``allow_unknown_model=True``",
        "(:doc:`/howto/generate`).",
        "",
    ]
    for model in models:
        spec = get_model(model)
        assert spec is not None
        title = f"``{model}``"
        lines += [title, "-" * len(title), "",
                  f"Kind: {spec.kind}. Endpoint families: "
                  + ", ".join(f"``{f}`` (``{endpoint_path(f)}``)" for f in spec.families) + ".", ""]
        for family in spec.families:
            schema = spec.schemas[family]
            required = set(spec.required(family))
            lines += [f".. list-table:: ``{family}`` family", "   :header-rows: 1",
                      "   :widths: 20 10 70", "", "   * - field", "     - required", "     - allowed"]
            for name, field in schema.get("properties", {}).items():
                lines += [f"   * - ``{name}``", f"     - {'yes' if name in required else ''}",
                          f"     - {_escape(describe(field))}"]
            lines.append("")
    return "\n".join(lines) + "\n"


def versions_page() -> str:
    lines = [
        ".. This page is generated from tools/matrix.py by docs/_ext/kling_docs.py.",
        "",
        ".. list-table:: What ``make test`` (and so CI) runs",
        "   :header-rows: 1",
        "",
        "   * - venv",
        "     - lock",
        "     - Python",
        "     - tests",
        "   * - ``.venv``",
        "     - ``requirements/dev.lock`` (Airflow 3.3)",
        "     - the default ``python3``",
        "     - lint, the whole suite, the docs build",
    ]
    for entry in ENTRIES:
        lines += [f"   * - ``.venv-{entry.name}``", f"     - ``{entry.lock}``", f"     - {entry.python}",
                  "     - " + ", ".join(label for label, _ in entry.runs)]
    return "\n".join(lines) + "\n"


def connection_page() -> str:
    """The connection form as Airflow renders it, from the provider info Airflow reads."""
    (conn,) = get_provider_info()["connection-types"]
    behaviour = conn["ui-field-behaviour"]
    lines = [
        ".. This page is generated from kling_provider.get_provider_info() by docs/_ext/kling_docs.py.",
        "",
        f".. list-table:: The connection form (type ``{conn['connection-type']}``, "
        f"shown as \"{conn['hook-name']}\")",
        "   :header-rows: 1",
        "   :widths: 25 25 50",
        "",
        "   * - form field",
        "     - stored in",
        "     - meaning",
    ]
    for name, label in behaviour["relabeling"].items():
        hint = behaviour.get("placeholders", {}).get(name, "")
        lines += [f"   * - {label}", f"     - ``{name}``",
                  f"     - placeholder: ``{hint}``" if hint else "     -"]
    for name, spec in conn["conn-fields"].items():
        schema = spec["schema"]
        text = spec.get("description", "")
        text = (text + " " if text else "") + f"Default ``{json.dumps(schema.get('default'))}``."
        lines += [f"   * - {spec['label']}", f"     - extra ``{name}``", f"     - {_escape(text)}"]
    hidden = ", ".join(f"``{name}``" for name in behaviour["hidden-fields"])
    lines += ["", f"Hidden in the form: {hidden}.", ""]
    return "\n".join(lines) + "\n"


def generate(app: Sphinx) -> None:
    out = Path(app.srcdir) / "_generated"
    out.mkdir(exist_ok=True)
    for name, text in (("models.rst", models_page()), ("versions.rst", versions_page()),
                       ("connection_form.rst", connection_page())):
        target = out / name
        if not target.exists() or target.read_text() != text:  # unchanged: no rebuild
            target.write_text(text)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True, "version": "1"}
