"""The README's and docs' pictures stay true: made by ``make screenshots``, captioned with the
figures they show, and those figures what ``make demo`` and the example review DAG make today.

``make screenshots`` (``tools/screenshots.py``) photographs a fresh demo's pages, then a run of
``dags/kling_review.py`` on the same Airflow (its review waiting, then picked), and records in
``docs/images/screenshots.json`` what the videos page reported of each (generations, credits,
USD, models), the review's options and pick, and each picture's SHA-256 and record. Here, fast
and offline: every picture a page shows is one it made (the hash), every figure a caption states
is its record's, and the records are what the DAGs cost at the simulator's prices now. A stale
caption or picture fails; the fix is ``make screenshots`` and the captions it names.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG
from airflow.sdk.definitions.mappedoperator import MappedOperator

from kling_provider._money.pricing import request_as_sent
from kling_provider._task.review import NONE_OPTION
from kling_provider.operators.kling import KlingGenerateVideoOperator
from kling_provider.testing._billing import CREDITS_PER_USD, price_of, simulator_price_list

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
MANIFEST = json.loads((IMAGES / "screenshots.json").read_text())
#: Each record's DAG: what tools/demo.py runs, and the review tools/screenshots.py runs.
DAGS = {"demo": ROOT / "dags" / "kling_raccoon.py", "review": ROOT / "dags" / "kling_review.py"}
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
    """The figures a caption states: counts of generations, credits, USD, model names, and
    the option a review picked (``Picked: Video 2``)."""
    def number(text: str) -> int:
        return WORDS.get(text.lower()) or int(text.replace(",", ""))

    word = r"\d(?:[\d,]*\d)?|" + "|".join(WORDS)  # "Video 1, Video 2": no count of 1 video
    stated: dict[str, Any] = {}
    counts = {number(n) for n in re.findall(rf"\b({word}) (?:candidate )?(?:generations?|videos?)\b",
                                             caption, re.I)}
    credits = {number(n) for n in re.findall(r"\b(\d[\d,]*) credits\b", caption)}
    usd = {f"{float(n.replace(',', '')):.2f}" for n in re.findall(r"\$(\d[\d,]*(?:\.\d+)?)",
                                                                   caption)}
    models = set(re.findall(r"klingai/[\w.-]+[\w]", caption))
    choice = set(re.findall(r"Picked: (Video \d+)", caption))
    for key, values in (("generations", counts), ("credits", credits), ("usd", usd),
                        ("models", models), ("choice", choice)):
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
    assert figures("three candidate videos; Picked: Video 2 by admin") == {
        "generations": {3}, "choice": {"Video 2"}}
    assert figures("a card with no figures, buttons Video 1, Video 2 and Video 3") == {}


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
def test_each_caption_states_its_records_figures(page: str, picture: str, caption: str) -> None:
    assert caption, f"{page}: {picture} has no caption (alt text)"
    of = MANIFEST["pictures"][picture]["figures"]  # the demo's run, or the review's
    recorded = MANIFEST[of]
    expected = {key: {recorded[key]} if key in recorded else set()
                for key in ("generations", "credits", "usd", "choice")}
    for key, values in figures(caption).items():
        if key == "models":
            assert values <= set(recorded["models"]), (page, caption)
        else:
            assert values == expected[key], (
                f"{page}: the caption of {picture} says {key} {sorted(values)}, the {of}'s "
                f"page showed {sorted(expected[key])} (make screenshots; then the caption)")


def test_the_readme_caption_states_every_figure() -> None:
    # Otherwise a caption could drop its figures and never be checked again.
    readme = [caption for page, name, caption in captions()
              if page == "README.md" and name == "kling-gallery.png"]
    assert len(readme) == 1
    assert set(figures(readme[0])) == {"generations", "credits", "usd", "models"}


def generations(path: Path) -> list[KlingGenerateVideoOperator]:
    """The paid requests one run of the DAG file ``path`` makes with its default params: each
    generate task, a mapped one once per prompt of its ``variants`` (the review DAG's takes)."""
    spec = importlib.util.spec_from_file_location(f"{path.stem}_for_screenshots", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = next(v.dag for v in vars(module).values() if isinstance(getattr(v, "dag", None), DAG))
    found: list[KlingGenerateVideoOperator] = []
    for task in dag.tasks:
        if isinstance(task, KlingGenerateVideoOperator):
            found.append(task)
        elif isinstance(task, MappedOperator) and \
                issubclass(task.operator_class, KlingGenerateVideoOperator):
            for prompt in module.variants.function(dag.params["prompt"]):
                unmapped = task.unmap({"prompt": prompt})
                assert isinstance(unmapped, KlingGenerateVideoOperator)
                found.append(unmapped)
    return found


@pytest.mark.parametrize("record", sorted(DAGS))
def test_the_recorded_figures_are_what_the_dags_make_today(record: str) -> None:
    generates = generations(DAGS[record])
    usd = sum(price_of(simulator_price_list(), task.model, request_as_sent(
        task.model, {k: v for k, v in task.request_params().items() if v is not None}))
        for task in generates)
    made = MANIFEST[record]
    assert made["generations"] == len(generates)
    assert made["models"] == sorted({task.model for task in generates})
    assert made["usd"] == f"{usd:.2f}", f"the {record} costs another price now: make screenshots"
    assert made["credits"] == round(usd * CREDITS_PER_USD)


def test_the_demo_paid_for_what_its_page_shows() -> None:
    assert MANIFEST["demo"]["generations"] == MANIFEST["demo_create_requests"]


def test_the_review_offered_each_video_and_its_pick_was_published() -> None:
    review = MANIFEST["review"]
    assert review["options"] == [f"Video {n}" for n in range(1, review["generations"] + 1)] + [
        NONE_OPTION]
    assert review["choice"] in review["options"][:-1] and review["run_state"] == "success"
