"""Regenerate ``kling_provider/data/catalogue.json`` from the AI/ML API reference schemas.

Maintainers run this when the reference snapshot changes::

    python tools/build_catalogue.py ../shared/reference/aimlapi

Nothing in the package or its tests reads the reference directory: the derived JSON file is
what ships. Descriptions and examples are dropped; only what validation needs is kept.

Several reference files can describe the same model on the same endpoint (a per-model page and a
shared page listing four models). They are merged leniently (union of properties, intersection of
required fields) because the catalogue must never reject a request the API accepts.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from kling_provider import _endpoints

#: Reference folder of each endpoint family (their paths: ``kling_provider/_endpoints.py``).
FAMILIES = {"legacy": "kling-legacy-endpoint", "unified": "kling-unified-endpoint"}
KEEP = {
    "type", "enum", "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems",
    "items", "properties", "required", "anyOf", "oneOf", "format", "default", "nullable",
}
# Fields the gateway documents for its own routing/bookkeeping, not generation parameters.
DROP_PROPERTIES = {"model"}
# Rules JSON Schema's ``required`` cannot say, written only in property descriptions:
# "Either prompt or multi_prompt must be provided, but not both." (v3) and "Mutually exclusive
# with prompt." (v3 turbo). A text-to-video model also needs some text: a request with neither
# would be billed for a video of nothing. Kept as ``x-one-of-required`` (at least one) and
# ``x-exclusive`` (at most one) lists of field groups.
EITHER = re.compile(r"Either (\w+) or (\w+) must be provided(, but not both)?")
EXCLUSIVE = re.compile(r"Mutually exclusive with (\w+)")
TEXT_INPUTS = ("prompt", "multi_prompt")
RULES = ("x-one-of-required", "x-exclusive")


def text_rules(model: str, schema: dict[str, Any]) -> dict[str, list[list[str]]]:
    """The at-least-one and at-most-one groups of a request schema."""
    props = schema.get("properties", {})
    needed: list[list[str]] = []
    exclusive: list[list[str]] = []
    for name, sub in props.items():
        description = str(sub.get("description", ""))
        if found := EITHER.search(description):
            needed.append([found[1], found[2]])
            if found[3]:
                exclusive.append([found[1], found[2]])
        if found := EXCLUSIVE.search(description):
            exclusive.append(sorted([name, found[1]], key=TEXT_INPUTS.index))
    texts = [t for t in TEXT_INPUTS if t in props]
    if kind_of(model) == "text-to-video" and texts and not set(texts) & set(
            schema.get("required", [])):
        needed.append(texts)
    rules = {"x-one-of-required": needed, "x-exclusive": exclusive}
    return {k: [list(g) for g in dict.fromkeys(map(tuple, v))] for k, v in rules.items() if v}


def prune(schema: Any) -> Any:
    if isinstance(schema, list):
        return [prune(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in KEEP:
            continue
        if key == "properties":
            out[key] = {name: prune(sub) for name, sub in value.items()}
        elif key in ("items", "anyOf", "oneOf"):
            out[key] = prune(value)
        else:
            out[key] = value
    return out


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    props = dict(a.get("properties", {}))
    for name, sub in b.get("properties", {}).items():
        if name in props and props[name] != sub:
            props[name] = {"anyOf": [props[name], sub]}
        else:
            props.setdefault(name, sub)
    required = [r for r in a.get("required", []) if r in set(b.get("required", []))]
    merged = {"type": "object", "properties": props, "required": required}
    for rule in RULES:  # lenient like ``required``: only what both pages state
        groups = [g for g in a.get(rule, []) if g in b.get(rule, [])]
        if groups:
            merged[rule] = groups
    return merged


def kind_of(model: str) -> str:
    for kind in (
        "multi-image-to-video", "image-to-video", "text-to-video", "reference-to-video",
        "video-to-video", "motion-control", "effects", "avatar",
    ):
        if kind in model:
            return kind
    return "other"


def build(reference: Path) -> dict[str, Any]:
    models: dict[str, dict[str, Any]] = {}
    for family, folder in FAMILIES.items():
        path = _endpoints.path(family)
        found: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for file in sorted((reference / folder).glob("*.json")):
            doc = json.loads(file.read_text())
            post = doc["paths"].get(path, {}).get("post")
            if post is None:
                continue
            schema = post["requestBody"]["content"]["application/json"]["schema"]
            ids = schema["properties"]["model"]["enum"]
            body = prune(schema)
            body["properties"] = {
                k: v for k, v in body["properties"].items() if k not in DROP_PROPERTIES
            }
            body["required"] = [r for r in body.get("required", []) if r != "model"]
            body["type"] = "object"
            for model in ids:
                found.setdefault(model, []).append((len(ids), {**body, **text_rules(model, schema)}))
        for model, bodies in found.items():
            # A page written for this one model beats a page shared by several.
            narrowest = min(n for n, _ in bodies)
            chosen = [b for n, b in bodies if n == narrowest]
            merged = chosen[0]
            for other in chosen[1:]:
                merged = merge(merged, other)
            entry = models.setdefault(model, {"kind": kind_of(model), "families": {}})
            entry["families"][family] = merged
    return {
        "generated_by": "tools/build_catalogue.py",
        "models": dict(sorted(models.items())),
    }


def main() -> None:
    reference = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/reference/aimlapi")
    target = Path(__file__).resolve().parent.parent / "kling_provider" / "data" / "catalogue.json"
    catalogue = build(reference)
    target.write_text(json.dumps(catalogue, indent=1, sort_keys=False) + "\n")
    fams = [len(m["families"]) for m in catalogue["models"].values()]
    print(f"{len(fams)} models, {sum(fams)} model x endpoint entries -> {target}")


if __name__ == "__main__":
    main()
