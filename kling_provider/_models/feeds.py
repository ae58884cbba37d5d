"""Where the model deprecation feed is kept: the snapshot the package ships, and the last feed
read from each API base URL (in memory, and on disk for other processes).

The hook's ``check_model`` reads the feed at most once a day per base URL
(:func:`kling_provider._api.service.retirement_steps`, through :data:`FEEDS`); the videos page,
the hook's request validation and a DAG file parse (the operators' literal checks: a withdrawn
model fails, an alias is accepted) must not make a request: they only look here, through
:func:`known_entries`. A cache file that cannot be read or written is ignored: the feed is
advice, and the API's own 404 still stops a withdrawn model.

The cache directory is ``$KLING_PROVIDER_CACHE_DIR``, else ``$XDG_CACHE_HOME/airflow-provider-kling``,
else ``~/.cache/airflow-provider-kling``; one JSON file per base URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from kling_provider._models import retirement as _retirement
from kling_provider._models.retirement import Retirement
from kling_provider.catalogue import get_model

CACHE_DIR_VARIABLE = "KLING_PROVIDER_CACHE_DIR"


class Feed(NamedTuple):
    """One base URL's last read feed: its entries, ``ETag`` and when it was read (epoch s)."""

    base_url: str
    etag: str | None
    fetched_at: float
    entries: tuple[Retirement, ...]


def cache_dir() -> Path:
    """The directory the feeds are kept in (read from the environment at each use)."""
    chosen = os.environ.get(CACHE_DIR_VARIABLE)
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "airflow-provider-kling"


def _file(directory: Path, base_url: str) -> Path:
    # A digest, not the URL: a base URL holds ':' and '/' and may be long.
    digest = hashlib.sha256(base_url.encode()).hexdigest()[:24]
    return directory / f"deprecations-{digest}.json"


class FeedCache:
    """The last feed per API base URL; ``directory=None`` follows :func:`cache_dir`."""

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory
        self._feeds: dict[str, Feed] = {}
        self._lock = threading.Lock()
        #: The last :meth:`every`: the directory listing it read, and its feeds.
        self._every: tuple[object, tuple[Feed, ...]] | None = None

    @property
    def directory(self) -> Path:
        return self._directory or cache_dir()

    def get(self, base_url: str) -> Feed | None:
        """The last feed read from ``base_url`` by this process, else from the cache file."""
        feed = self._feeds.get(base_url)
        if feed is None:
            feed = self._load(base_url)
            if feed is not None:
                with self._lock:
                    self._feeds[base_url] = feed
        return feed

    def store(self, feed: Feed) -> None:
        with self._lock:
            self._feeds[feed.base_url] = feed
        with contextlib.suppress(OSError):  # a read-only home: this process still has it
            self._save(feed)

    def every(self) -> list[Feed]:
        """Every cached feed, whichever process read it (the videos page and a DAG file parse
        know no base URL). The files are read again only when the directory's listing or a
        file's size or time changed: a parse of many tasks lists the directory once per task."""
        directory = self.directory
        try:
            files = sorted(directory.glob("deprecations-*.json"))
            stamp = (str(directory), tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size)
                                           for f in files))
        except OSError:
            return []
        seen = self._every
        if seen is None or seen[0] != stamp:
            seen = self._every = (stamp, tuple(f for f in map(self._read, files)
                                               if f is not None))
        return list(seen[1])

    def _load(self, base_url: str) -> Feed | None:
        feed = self._read(_file(self.directory, base_url))
        return feed if feed is not None and feed.base_url == base_url else None

    @staticmethod
    def _read(path: Path) -> Feed | None:
        try:
            saved = json.loads(path.read_text("utf-8"))
            entries, base_url = _retirement.entries_from(saved), saved.get("base_url")
            if entries is None or not isinstance(base_url, str):
                return None
            etag = saved.get("etag")
            return Feed(base_url, etag if isinstance(etag, str) else None,
                        float(saved["fetched_at"]), entries)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None

    def _save(self, feed: Feed) -> None:
        target = _file(self.directory, feed.base_url)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"base_url": feed.base_url, "etag": feed.etag,
                           "fetched_at": feed.fetched_at,
                           "data": [_retirement.as_item(e) for e in feed.entries]})
        # Whole or absent: a parse in another process may read it at any moment.
        handle, partial = tempfile.mkstemp(dir=target.parent, suffix=".partial")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(partial, target)
        except OSError:
            Path(partial).unlink(missing_ok=True)
            raise


#: The process-wide cache the hook uses (tests swap it for one in a temporary directory).
FEEDS = FeedCache()


@cache
def shipped() -> tuple[Retirement, ...]:
    """The feed's Kling entries as of this release (``data/deprecations.json``, kept by
    ``tools/build_catalogue.py``)."""
    text = resources.files("kling_provider").joinpath("data/deprecations.json").read_text("utf-8")
    return _retirement.entries_from(json.loads(text)) or ()


def known_entries(base_url: str | None = None, feeds: FeedCache | None = None
                  ) -> tuple[Retirement, ...]:
    """What is known without a request: the shipped snapshot overlaid with the last feed read
    from ``base_url``, or (``None``, for the videos page) with every cached feed."""
    feeds = feeds or FEEDS
    if base_url is not None:
        feed = feeds.get(base_url)
        return _retirement.merged(shipped(), feed.entries if feed else None)
    live: list[Retirement] = []
    for feed in feeds.every():
        live += feed.entries
    return _retirement.merged(shipped(), live or None)


def resolve(model: str, base_url: str | None = None) -> tuple[Retirement | None, str | None]:
    """``model``'s entry as far as it is known without a request (:func:`known_entries`), and
    the catalogue model whose parameters it takes (:func:`~kling_provider._models.retirement.
    catalogue_model`: an alias or a superseded id is checked as the model it names)."""
    entry = _retirement.find(known_entries(base_url), model)
    return entry, _retirement.catalogue_model(model, entry, lambda m: get_model(m) is not None)


def badges(models: Iterable[str]) -> dict[str, str]:
    """Model -> its label on the videos page, for the models the feed lists: from the shipped
    snapshot and every cached feed (the page itself never asks the API)."""
    entries = known_entries()
    found = {m: _retirement.badge(_retirement.find(entries, m)) for m in models}
    return {m: label for m, label in found.items() if label}
