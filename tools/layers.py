"""The architecture check run by ``make lint``: which part of ``kling_provider`` may import which.

The map (docs/development.rst, "Architecture") in code. Every module of the package belongs to one
*component* (its subpackage: a public one such as ``operators`` or a private group of modules by
concern such as ``_api``; or ``core`` for the modules directly under ``kling_provider/``, the
foundation every part shares); :data:`LAYERS` orders them. Importing any module runs the package's
``__init__`` first, so the cycle rule lets it import only modules that import nothing of the
package (``_endpoints.py``). The check reads the
source (``ast``, nothing is imported) and fails on:

1. an import from a component to one in the same or a higher layer (siblings of one layer are
   independent), whether at module level, inside a function or under ``TYPE_CHECKING``;
2. an import cycle between modules, counting module-level and in-function imports (a cycle
   through a function is still one when that function runs) but not ``TYPE_CHECKING`` ones;
3. an import inside a function without a one-line reason: a comment on the import, on the line
   above it, or on the import directly before it (one comment covers a group);
4. an entry of :data:`EXCEPTIONS` that no longer matches an import (delete it with the fix).

Stdlib only. ``python tools/layers.py`` prints each finding as ``path:line: what`` and exits 1.
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "kling_provider"

#: Top to bottom. A component may import the components of any lower layer, never one of its own
#: layer (they are independent siblings) or of a higher one. See docs/development.rst.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("operators", "sensors", "testing"),  # what Airflow runs as tasks; the offline simulator
    ("triggers",),                        # the triggerer's half of a wait (deferred to from above)
    ("hooks", "links"),                   # the API client users call; the task's UI link
    ("gallery",),                         # the videos page (links build its URLs)
    ("_runtime",),                        # what runs the steps: settings, clients, drivers (I/O)
    ("_wait",),                           # when to poll, timings, the trigger's arguments/events
    ("_storage", "_task"),                # a video on disk; one paid submission, a task's result
    ("_api",),                            # the protocol as I/O-free step generators
    ("_money", "_models"),                # costs and the guard; model retirement (feed, rules)
    ("core",),                            # __init__, exceptions, types, catalogue, metrics...
)

#: Imports allowed to break the layer and cycle rules, as (importer, imported) modules, each with
#: what removes it: for a change that must land in steps. None today (issue 19 removed the
#: trigger's and the sensor's imports of operators._flow); the check fails on an entry that
#: matches no import any more, so whoever removes the import deletes the entry.
EXCEPTIONS: Mapping[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    """One import statement's target module, where it is and how it runs."""

    importer: str
    target: str
    path: Path
    line: int
    in_function: bool
    type_checking: bool


def module_name(path: Path, source_root: Path) -> str:
    parts = list(path.relative_to(source_root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def component(module: str, package: str = PACKAGE) -> str | None:
    """The component of a module of ``package`` (``None``: outside the package)."""
    if module == package:
        return "core"
    if not module.startswith(package + "."):
        return None
    first = module.split(".")[1]
    subpackages = {name for layer in LAYERS for name in layer} - {"core"}
    return first if first in subpackages else "core"


def layer_of(name: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if name in layer)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool,
             modules: set[str]) -> list[str]:
    """The modules an import statement loads: ``from pkg import sub`` loads ``pkg.sub`` when
    that is a module of the package, else ``pkg`` itself."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = importer.split(".") if is_package else importer.split(".")[:-1]
        parts = parts[:len(parts) - (node.level - 1)]
        base = ".".join([*parts, *([node.module] if node.module else [])])
    found = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
    return found if len(found) == len(node.names) else [base, *found]


def _walk(body: Iterable[ast.stmt], in_function: bool,
          type_checking: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, in_function, type_checking
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _walk(node.body, True, type_checking)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.body, in_function, True)
            yield from _walk(node.orelse, in_function, type_checking)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(node, field, None) or []
                for child in children:
                    if isinstance(child, (ast.ExceptHandler, ast.match_case)):
                        yield from _walk(child.body, in_function, type_checking)
                yield from _walk([c for c in children if isinstance(c, ast.stmt)], in_function,
                                 type_checking)


def _comment_lines(source: str) -> set[int]:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {token.start[0] for token in tokens if token.type == tokenize.COMMENT}


def scan(source_root: Path, package: str = PACKAGE) -> tuple[list[Import], list[tuple[Path, int]]]:
    """Every import of the package's modules, and each in-function import without a reason."""
    files = sorted((source_root / package).rglob("*.py"))
    modules = {module_name(path, source_root) for path in files}
    imports: list[Import] = []
    unexplained: list[tuple[Path, int]] = []
    for path in files:
        source = path.read_text(encoding="utf-8")
        importer = module_name(path, source_root)
        comments = _comment_lines(source)
        explained_until = -1  # last line of the previous in-function import, when it had a reason
        for node, in_function, type_checking in _walk(ast.parse(source).body, False, False):
            for target in _targets(node, importer, path.name == "__init__.py", modules):
                imports.append(Import(importer, target, path, node.lineno, in_function,
                                      type_checking))
            if not in_function:
                continue
            end = node.end_lineno or node.lineno
            reason = (any(line in comments for line in range(node.lineno - 1, end + 1))
                      or explained_until == node.lineno - 1)
            explained_until = end if reason else -1
            if not reason:
                unexplained.append((path, node.lineno))
    return imports, unexplained


def _ancestors(module: str, package: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))
            if ".".join(parts[:i]).startswith(package)]


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan), as one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group: list[str] = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in edges.get(node, ()):
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_one_cycle(sorted(group), edges) for group in groups]


def _one_cycle(group: Sequence[str], edges: Mapping[str, set[str]]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    queue = [start]
    for node in queue:
        for nxt in sorted(edges.get(node, set()) & members):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return [*group, start]  # pragma: no cover  (a strongly connected group always closes)


def check(source_root: Path = ROOT, package: str = PACKAGE, *,
          exceptions: Mapping[tuple[str, str], str] = EXCEPTIONS) -> list[str]:
    """What breaks the architecture, one line each (empty: nothing)."""
    imports, unexplained = scan(source_root, package)
    problems: list[str] = []
    used: set[tuple[str, str]] = set()
    edges: dict[str, set[str]] = {}
    where: dict[tuple[str, str], Import] = {}
    for found in imports:
        mine, theirs = component(found.importer, package), component(found.target, package)
        if theirs is None:
            continue
        key = (found.importer, found.target)
        if key in exceptions:
            used.add(key)
            continue
        assert mine is not None
        if mine != theirs and layer_of(theirs) <= layer_of(mine):
            how = "a sibling" if layer_of(theirs) == layer_of(mine) else "a higher layer"
            problems.append(
                f"{_rel(found.path, source_root)}:{found.line}: {found.importer} ({mine}) imports "
                f"{found.target} ({theirs}), {how}: see the layers in tools/layers.py")
        if not found.type_checking:
            for target in [found.target, *_ancestors(found.target, package)]:
                if target != found.importer and (found.importer, target) not in exceptions:
                    edges.setdefault(found.importer, set()).add(target)
                    where.setdefault((found.importer, target), found)
    for cycle in cycles(edges):
        first = where[(cycle[0], cycle[1])]
        problems.append(f"{_rel(first.path, source_root)}:{first.line}: import cycle "
                        f"{' -> '.join(cycle)} (an import under TYPE_CHECKING or a lower module "
                        "for what both need breaks it)")
    for path, line in unexplained:
        problems.append(f"{_rel(path, source_root)}:{line}: an import inside a function without a "
                        "one-line reason: say why it is not at the top (a comment on it or on "
                        "the line above), or move it there")
    for key in sorted(set(exceptions) - used):
        problems.append(f"tools/layers.py: EXCEPTIONS lists {key[0]} -> {key[1]}, which no "
                        "module imports any more: delete the entry")
    return problems


def _rel(path: Path, source_root: Path) -> str:
    try:
        return str(path.relative_to(source_root))
    except ValueError:  # pragma: no cover
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    problems = check()
    for problem in problems:
        print(problem)
    if problems:
        print(f"layers: {len(problems)} finding(s); the map is in docs/development.rst "
              "(Architecture)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
