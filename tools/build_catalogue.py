"""Regenerate ``kling_provider/data/catalogue.json`` from the AI/ML API reference schemas.

Maintainers run this when the reference snapshot changes::

    python tools/build_catalogue.py ../shared/reference/aimlapi

Nothing in the package or its tests reads the reference directory: the derived JSON file is
what ships.

The catalogue and the model deprecation feed must agree (``replaced_by`` a model the catalogue
knows, no alias that is another catalogue model, one entry per model). The snapshot of the feed
that ships (``kling_provider/data/deprecations.json``, what a task uses when the live feed cannot
be read) is refreshed from a saved answer of ``GET /v1/models/deprecations``, keeping the Kling
entries, and every run checks the two files against each other::

    curl -s https://api.aimlapi.com/v1/models/deprecations > feed.json
    python tools/build_catalogue.py ../shared/reference/aimlapi --deprecations feed.json
    python tools/build_catalogue.py --check      # the shipped pair only; exits 1 on a problem

Descriptions and examples are dropped; only what validation needs is kept.

Several reference files can describe the same model on the same endpoint (a per-model page and a
shared page listing four models). They are merged leniently (union of properties, intersection of
required fields) because the catalogue must never reject a request the API accepts.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from kling_provider import _endpoints
from kling_provider._models import retirement

DATA = Path(__file__).resolve().parent.parent / "kling_provider" / "data"

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


def kling_entries(feed: Any, models: list[str]) -> list[dict[str, Any]]:
    """The feed's entries about Kling models: named in the catalogue (by id, alias or
    ``replaced_by``) or Kling by name; in the feed's own order and shape."""
    known = set(models)
    entries = retirement.entries_from(feed)
    if entries is None:
        raise SystemExit("the deprecation feed file is not a feed answer ({'data': [...]})")
    return [retirement.as_item(e) for e in entries
            if known & {*e.names, e.replaced_by or ""} or any("kling" in n for n in e.names)]


def check(catalogue: dict[str, Any], snapshot: dict[str, Any]) -> list[str]:
    """What contradicts between a catalogue and a feed snapshot (``[]``: consistent)."""
    return retirement.inconsistencies(retirement.entries_from(snapshot) or (),
                                      list(catalogue["models"]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reference", nargs="?", default="../shared/reference/aimlapi")
    parser.add_argument("--deprecations", type=Path,
                        help="a saved answer of GET /v1/models/deprecations to ship")
    parser.add_argument("--check", action="store_true",
                        help="only check the shipped catalogue against the shipped feed")
    parser.add_argument("--data", type=Path, default=DATA, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    catalogue_file, feed_file = args.data / "catalogue.json", args.data / "deprecations.json"
    if args.check:
        catalogue = json.loads(catalogue_file.read_text())
    else:
        catalogue = build(Path(args.reference))
        catalogue_file.write_text(json.dumps(catalogue, indent=1, sort_keys=False) + "\n")
        fams = [len(m["families"]) for m in catalogue["models"].values()]
        print(f"{len(fams)} models, {sum(fams)} model x endpoint entries -> {catalogue_file}")
    snapshot = json.loads(feed_file.read_text())
    if args.deprecations is not None:
        feed = json.loads(args.deprecations.read_text())
        snapshot = {"generated_by": "tools/build_catalogue.py", "object": "list",
                    "generated_at": feed.get("generated_at"),
                    "data": kling_entries(feed, list(catalogue["models"]))}
        feed_file.write_text(json.dumps(snapshot, indent=1) + "\n")
        print(f"{len(snapshot['data'])} Kling entries of the deprecation feed -> {feed_file}")
    problems = check(catalogue, snapshot)
    for problem in problems:
        print(f"catalogue and deprecation feed disagree: {problem}", file=sys.stderr)
    if problems:
        raise SystemExit(1)
    print(f"catalogue and deprecation feed agree ({len(snapshot['data'])} entries)")


if __name__ == "__main__":
    main()
