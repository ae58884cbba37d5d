"""The "Kling videos" page in the Airflow UI (an Airflow 3.1+ plugin shipped with the provider).

``plugin.py`` registers a FastAPI app on the api-server under :data:`URL_PREFIX` and a nav entry;
the pure pieces (``ranges``, ``records``, ``page``) hold the rules, ``store`` and ``files`` are
the database and storage edges, ``app`` wires them behind Airflow's own auth manager.
"""

from __future__ import annotations

from urllib.parse import urlencode

#: Where the gallery app is mounted on the api-server (the extra link and the nav entry use it).
URL_PREFIX = "/kling"
#: The nav entry's route: the Airflow UI shows the page at ``/plugin/<NAV_ROUTE>``, inside its
#: own navigation, and opens ``/plugin/<NAV_ROUTE>/<path>?<query>`` as ``/<path>?<query>`` there.
NAV_ROUTE = "kling-videos"


def gallery_link(generation_id: str) -> str:
    """The gallery focused on one generation, inside the Airflow UI's navigation: what the tasks'
    "Kling video" link opens (the generation's card: its player, or its progress in flight)."""
    return f"/plugin/{NAV_ROUTE}{URL_PREFIX}/?{urlencode({'generation_id': generation_id})}"
