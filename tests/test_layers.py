"""The architecture check (tools/layers.py, run by ``make lint``) on small packages written here.

Each case writes a package with one rule broken (or kept) and asserts what the check reports, so
a check that stopped finding a kind of violation fails here, not silently in ``make lint``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tools.layers import LAYERS, ROOT, check, component, cycles

#: A minimal package shaped like the real one: one module per component.
BASE = {
    "__init__.py": "CONSTANT = 1\n",
    "exceptions.py": "class Error(Exception):\n    pass\n",
    "_rules.py": "from pkg.exceptions import Error\n",
    "hooks/__init__.py": "",
    "hooks/kling.py": "from pkg import _rules\n",
    "links/__init__.py": "",
    "links/kling.py": "from pkg import CONSTANT\n",
    "triggers/__init__.py": "",
    "triggers/kling.py": "from pkg.exceptions import Error\n",
    "operators/__init__.py": "",
    "operators/kling.py": "from pkg.hooks.kling import _rules\nfrom pkg.links import kling\n",
    "sensors/__init__.py": "",
    "sensors/kling.py": "from pkg.triggers.kling import Error\n",
}


def findings(tmp_path: Path, changes: dict[str, str], **kwargs: object) -> list[str]:
    for name, text in {**BASE, **changes}.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    kwargs = {"exceptions": {}, **kwargs}
    return check(tmp_path, "pkg", **kwargs)  # type: ignore[arg-type]


def test_the_package_keeps_its_architecture() -> None:
    assert check(ROOT) == []


def test_the_developers_guide_shows_the_layers_the_check_enforces() -> None:
    page = (ROOT / "docs" / "development.rst").read_text()
    after = page.split("Architecture\n------------\n", 1)[1].split(".. list-table::", 1)[1]
    table = []
    for line in after.splitlines()[1:]:
        if line and not line.startswith("   "):
            break
        table.append(line)
    rows = re.findall(r"^   \* - (.+)$", "\n".join(table), re.M)
    assert [tuple(re.findall(r"``(\w+)``", row)) for row in rows[1:]] == list(LAYERS)


def test_a_package_shaped_like_the_map_passes(tmp_path: Path) -> None:
    assert findings(tmp_path, {}) == []


def test_modules_belong_to_their_subpackage_or_the_core() -> None:
    assert [component(m, "pkg") for m in (
        "pkg", "pkg._rules", "pkg.types", "pkg._api.send", "pkg.hooks", "pkg.hooks.kling",
        "pkg.gallery.app", "pkg.testing.simulator", "other.hooks", "pkg._rules.x")] == [
        "core", "core", "core", "_api", "hooks", "hooks", "gallery", "testing", None, "core"]


@pytest.mark.parametrize(("changes", "found"), [
    # a trigger reaching up into the operators (what issue 19 removes), at the top ...
    ({"triggers/kling.py": "from pkg.operators.kling import _rules\n"},
     "pkg/triggers/kling.py:1: pkg.triggers.kling (triggers) imports pkg.operators.kling "
     "(operators), a higher layer"),
    # ... inside a function (a dependency all the same) and for type checking only
    ({"triggers/kling.py": "def f():\n    # why\n    from pkg.operators import kling\n"},
     "pkg/triggers/kling.py:3: pkg.triggers.kling (triggers) imports pkg.operators.kling"),
    ({"_rules.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                   "    from pkg.hooks.kling import _rules\n"},
     "pkg/_rules.py:3: pkg._rules (core) imports pkg.hooks.kling (hooks), a higher layer"),
    # siblings of one layer are independent
    ({"sensors/kling.py": "import pkg.operators.kling\n"},
     "pkg/sensors/kling.py:1: pkg.sensors.kling (sensors) imports pkg.operators.kling "
     "(operators), a sibling"),
    ({"hooks/kling.py": "from pkg.links.kling import CONSTANT\n"},
     "pkg/hooks/kling.py:1: pkg.hooks.kling (hooks) imports pkg.links.kling (links), a sibling"),
    # relative imports resolve like absolute ones
    ({"_rules.py": "from .links import kling\n"},
     "pkg/_rules.py:1: pkg._rules (core) imports pkg.links.kling (links), a higher layer"),
])
def test_an_import_up_or_across_the_layers_is_reported(tmp_path: Path, changes: dict[str, str],
                                                      found: str) -> None:
    problems = findings(tmp_path, changes)
    assert len(problems) == 1 and problems[0].startswith(found), problems


def test_an_import_cycle_is_reported_through_functions_but_not_type_checking(
        tmp_path: Path) -> None:
    cyclic = {"_a.py": "def f():\n    # why\n    from pkg import _b\n",
              "_b.py": "from pkg import _c\n", "_c.py": "import pkg._a\n"}
    problems = findings(tmp_path, cyclic)
    assert problems == ["pkg/_a.py:3: import cycle pkg._a -> pkg._b -> pkg._c -> pkg._a (an "
                        "import under TYPE_CHECKING or a lower module for what both need "
                        "breaks it)"]
    typed = {**cyclic, "_c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                "    import pkg._a\n"}
    assert findings(tmp_path, typed) == []


def test_the_package_init_imports_only_modules_that_import_nothing_of_the_package(
        tmp_path: Path) -> None:
    # Every import of a module runs pkg/__init__ first: what it imports must not need it back.
    assert findings(tmp_path, {"__init__.py": "from pkg import exceptions\n"}) == []
    problems = findings(tmp_path, {"__init__.py": "from pkg import _rules\n"})
    assert len(problems) == 1 and "import cycle pkg -> pkg._rules -> pkg" in problems[0]


def test_a_package_init_is_part_of_what_an_import_runs(tmp_path: Path) -> None:
    # pkg.hooks.kling imports pkg._rules, whose import runs pkg/__init__ ... and a subpackage's
    # __init__ importing back into its importer closes a cycle.
    problems = findings(tmp_path, {"_x/__init__.py": "from pkg import _rules\n",
                                   "_x/y.py": "", "_rules.py": "from pkg._x import y\n"})
    assert len(problems) == 1 and "import cycle pkg._rules -> pkg._x -> pkg._rules" in problems[0]


def test_cycles_finds_each_strongly_connected_group_once() -> None:
    edges = {"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"c"}, "e": {"e"}, "f": {"a"}}
    assert sorted(cycles(edges)) == [["a", "b", "a"], ["c", "d", "c"], ["e", "e"]]


def test_an_in_function_import_needs_a_one_line_reason(tmp_path: Path) -> None:
    body = ("def f():\n"
            "    # the HTTP stack: only f sends\n"
            "    import json\n"
            "    import os\n"           # the group goes on: covered by the comment above
            "    x = 1\n"
            "    import re  # re: cheap, but f is rare\n"
            "    return x\n"
            "\n"
            "def g():\n"
            "    x = 1\n"
            "    import json\n"         # no reason
            "    return x\n")
    problems = findings(tmp_path, {"_rules.py": body})
    assert problems == [
        "pkg/_rules.py:11: an import inside a function without a one-line reason: say why it is "
        "not at the top (a comment on it or on the line above), or move it there"]
    # a module-level or TYPE_CHECKING import needs none
    assert findings(tmp_path, {"_rules.py": "import json\nfrom typing import TYPE_CHECKING\n"
                                            "if TYPE_CHECKING:\n    import os\n"}) == []


def test_an_exception_lifts_exactly_its_import_and_must_be_deleted_with_it(
        tmp_path: Path) -> None:
    up = {"triggers/kling.py": "def f():\n    # why\n    from pkg.operators import kling\n"}
    listed = {("pkg.triggers.kling", "pkg.operators.kling"): "being removed"}
    assert findings(tmp_path, up, exceptions=listed) == []
    other = {("pkg.sensors.kling", "pkg.operators.kling"): "being removed"}
    assert findings(tmp_path, up, exceptions=other) == [
        "pkg/triggers/kling.py:3: pkg.triggers.kling (triggers) imports pkg.operators.kling "
        "(operators), a higher layer: see the layers in tools/layers.py",
        "tools/layers.py: EXCEPTIONS lists pkg.sensors.kling -> pkg.operators.kling, which no "
        "module imports any more: delete the entry"]
