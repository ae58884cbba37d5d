"""Regenerate ``kling_provider/testing/published_specs.json`` from the AI/ML API reference.

Maintainers run this when the reference snapshot changes::

    python tools/extract_specs.py ../shared/reference/aimlapi

Every published Kling OpenAPI document (both endpoint families, each model's create operation
and each family's fetch operation) is kept whole except for prose: descriptions, summaries,
examples, titles, tags, code samples and servers are dropped. The simulator validates create
requests against these documents (its own reading of the contract, independent of the
provider's catalogue) and ``tests/test_simulator_contract.py`` runs Schemathesis over each of
them against the simulator. Nothing in the package or its tests reads the reference directory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "kling_provider" / "testing" / "published_specs.json"
FAMILIES = {"legacy": "kling-legacy-endpoint", "unified": "kling-unified-endpoint"}
#: Prose and presentation only: nothing here changes what a request or an answer may be.
DROP = {"description", "summary", "example", "examples", "title", "tags", "servers",
        "x-codeSamples", "x-hideTryItPanel"}


def strip(node: Any, *, names: bool = False) -> Any:
    """``node`` without :data:`DROP` keys (``names``: the keys are property names, kept all)."""
    if isinstance(node, dict):
        return {key: value if key == "info" and not names  # its title is required, not prose
                else strip(value, names=key == "properties" and not names)
                for key, value in node.items() if names or key not in DROP}
    if isinstance(node, list):
        return [strip(value) for value in node]
    return node


def build(reference: Path) -> dict[str, Any]:
    specs: dict[str, Any] = {}
    for family, folder in FAMILIES.items():
        for path in sorted((reference / folder).glob("*.json")):
            specs[f"{family}/{path.stem}"] = strip(json.loads(path.read_text("utf-8")))
    return {"note": "Derived by tools/extract_specs.py from the AI/ML API's published Kling "
                    "OpenAPI documents (prose dropped). Do not edit by hand.",
            "specs": specs}


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    data = build(Path(sys.argv[1]))
    OUT.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n", "utf-8")
    print(f"{OUT}: {len(data['specs'])} documents, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
