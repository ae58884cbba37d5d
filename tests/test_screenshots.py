"""The README's and docs' pictures stay true: made by ``make screenshots``, captioned with the
figures they show, and those figures what ``make demo`` makes today.

``make screenshots`` (``tools/screenshots.py``) photographs a fresh demo's pages and records in
``docs/images/screenshots.json`` what the videos page reported (generations, credits, USD,
models) and each picture's SHA-256. Here, fast and offline: every picture a page shows is one it
made (the hash), every figure a caption states is the recorded one, and the record is what the
demo's DAG costs at the simulator's prices now. A stale caption or picture fails; the fix is
``make screenshots`` and the captions it names.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

from kling_provider._money.pricing import request_as_sent
from kling_provider.operators.kling import KlingGenerateVideoOperator
from kling_provider.testing._billing import CREDITS_PER_USD, price_of, simulator_price_list

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
MANIFEST = json.loads((IMAGES / "screenshots.json").read_text())
DEMO_DAG = ROOT / "dags" / "kling_raccoon.py"  # what tools/demo.py runs
WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


def captions() -> list[tuple[str, str, str]]:
    """(page, picture file name, caption) of every picture under docs/images/ a page shows."""
    found = []
    readme = (ROOT / "README.md").read_text()
    for caption, target in re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", readme):
        found.append(("README.md", target, caption))
    for page in sorted((ROOT / "docs").rglob("*.rst")):
        text = page.read_text()
        for target, options in re.findall(r"^\.\. (?:image|figure):: (\S+)\n((?:[ \t]+\S.*\n)*)",
                                          text, re.M):
            alt = re.search(r":alt:(.*?)(?=\n\s*:\w+:|\Z)", options, re.S)
            found.append((str(page.relative_to(ROOT)), target, alt.group(1) if alt else ""))
    return [(page, Path(target).name, " ".join(caption.split()))
            for page, target, caption in found if "images/" in target]


def figures(caption: str) -> dict[str, Any]:
    """The figures a caption states: counts of generations, credits, USD and model names."""
    def number(text: str) -> int:
        return WORDS.get(text.lower()) or int(text.replace(",", ""))

    word = r"\d[\d,]*|" + "|".join(WORDS)
    stated: dict[str, Any] = {}
    counts = {number(n) for n in re.findall(rf"\b({word}) (?:generations?|videos?)\b", caption,
                                             re.I)}
    credits = {number(n) for n in re.findall(r"\b(\d[\d,]*) credits\b", caption)}
    usd = {f"{float(n.replace(',', '')):.2f}" for n in re.findall(r"\$(\d[\d,]*(?:\.\d+)?)",
                                                                   caption)}
    models = set(re.findall(r"klingai/[\w.-]+[\w]", caption))
    for key, values in (("generations", counts), ("credits", credits), ("usd", usd),
                        ("models", models)):
        if values:
            stated[key] = values
    return stated


def test_figures_reads_what_a_caption_says() -> None:
    assert figures("the demo's two generations, one playing, 2,860,000 credits") == {
        "generations": {2}, "credits": {2_860_000}}
    assert figures("its 1 generation of klingai/v2-master-text-to-video, $1.40.") == {
        "generations": {1}, "usd": {"1.40"}, "models": {"klingai/v2-master-text-to-video"}}
    assert figures("3 videos, $4.2, and 8,400,000 credits") == {
        "generations": {3}, "usd": {"4.20"}, "credits": {8_400_000}}
    assert figures("a card with no figures") == {}


def test_every_picture_shown_was_made_by_make_screenshots() -> None:
    shown = captions()
    assert {name for _, name, _ in shown} == set(MANIFEST["pictures"]), (
        "every picture the docs show comes from make screenshots, and it makes none they do not "
        "show: add the page to tools/screenshots.py's SHOTS or drop the picture")
    assert {p.name for p in IMAGES.glob("*.png")} == set(MANIFEST["pictures"])
    for name, made in MANIFEST["pictures"].items():
        digest = hashlib.sha256((IMAGES / name).read_bytes()).hexdigest()
        assert digest == made["sha256"], f"docs/images/{name} was not made by make screenshots"
        assert (IMAGES / name).stat().st_size < 200_000, f"{name}: keep pictures small"


@pytest.mark.parametrize(("page", "picture", "caption"), captions())
def test_each_caption_states_the_demos_figures(page: str, picture: str, caption: str) -> None:
    assert caption, f"{page}: {picture} has no caption (alt text)"
    recorded = MANIFEST["demo"]
    expected = {"generations": {recorded["generations"]}, "credits": {recorded["credits"]},
                "usd": {recorded["usd"]}}
    for key, values in figures(caption).items():
        if key == "models":
            assert values <= set(recorded["models"]), (page, caption)
        else:
            assert values == expected[key], (
                f"{page}: the caption of {picture} says {key} {sorted(values)}, the demo's "
                f"page showed {sorted(expected[key])} (make screenshots; then the caption)")


def test_the_readme_caption_states_every_figure() -> None:
    # Otherwise a caption could drop its figures and never be checked again.
    readme = [caption for page, name, caption in captions()
              if page == "README.md" and name == "kling-gallery.png"]
    assert len(readme) == 1
    assert set(figures(readme[0])) == {"generations", "credits", "usd", "models"}


def test_the_recorded_figures_are_what_the_demo_makes_today() -> None:
    spec = importlib.util.spec_from_file_location("kling_raccoon_for_screenshots", DEMO_DAG)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = next(task.dag for task in vars(module).values()
               if isinstance(task, KlingGenerateVideoOperator))
    generates = [t for t in dag.tasks if isinstance(t, KlingGenerateVideoOperator)]
    usd = sum(price_of(simulator_price_list(), task.model, request_as_sent(
        task.model, {k: v for k, v in task.request_params().items() if v is not None}))
        for task in generates)
    made = MANIFEST["demo"]
    assert made["generations"] == len(generates) == MANIFEST["demo_create_requests"]
    assert made["models"] == sorted({task.model for task in generates})
    assert made["usd"] == f"{usd:.2f}", "the demo costs another price now: make screenshots"
    assert made["credits"] == round(usd * CREDITS_PER_USD)
