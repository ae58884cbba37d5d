"""The Airflow plugin: the gallery app on the api-server and a "Kling videos" nav entry.

Registered through the ``airflow.plugins`` entry point of this package (pyproject.toml), which
Airflow loads in every configuration; a provider-info ``plugins`` entry would only be read with
``[core] lazy_discover_providers = False``.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from kling_provider.gallery import NAV_ROUTE, URL_PREFIX
from kling_provider.gallery.app import create_app

# A film-frame glyph; a data URI, so the nav icon needs no (unauthenticated) route of its own.
ICON = ("data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24' "
        "fill='none' stroke='%234a5568' stroke-width='2'><rect x='2' y='4' width='20' "
        "height='16' rx='2'/><path d='M10 9l5 3-5 3z'/></svg>")


class KlingGalleryPlugin(AirflowPlugin):
    """Adds the "Kling videos" page (videos, players, spend) to the Airflow UI."""

    name = "kling_gallery"
    fastapi_apps: list[Any] = [
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "Kling videos"}]
    external_views: list[Any] = [{
        "name": "Kling videos", "href": f"{URL_PREFIX}/", "destination": "nav",
        "url_route": NAV_ROUTE, "icon": ICON, "nav_top_level": True}]
