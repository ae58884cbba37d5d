"""The page's spend sums: decimals of the reported figures (the JSON carries them as exact decimal
strings, tests/test_gallery_app.py), on the page too."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from kling_provider._money.spend import exact_amount as money
from kling_provider.gallery import page
from kling_provider.gallery.records import Filters, TaskRef, Video, summarise

WHEN = datetime(2026, 11, 30, tzinfo=timezone.utc)


def video(n: int, usd: float) -> Video:
    return Video(timestamp=WHEN, source=TaskRef("kling_media_pipeline", "run", "generate", n),
                 generation_id=f"g{n}", model="klingai/v2-master-text-to-video",
                 credits_used=money(2_800_000), usd_spent=money(usd))


def test_three_videos_at_1_40_cost_4_20_in_the_json_and_on_the_page() -> None:
    assert 1.4 + 1.4 + 1.4 == 4.199999999999999  # what a float sum reported
    videos = [video(n, 1.4) for n in range(3)]
    spend = summarise(videos)
    assert (spend.total.usd, spend.total.credits) == (Decimal("4.2"), Decimal(8_400_000))
    html = page.render(videos, spend, Filters(), dag_ids=["kling_media_pipeline"],
                       models=["klingai/v2-master-text-to-video"], posters=False)
    assert "Spend: $4.20 = 8,400,000 credits for 3 generation(s)" in html
    assert "4.19999" not in html
