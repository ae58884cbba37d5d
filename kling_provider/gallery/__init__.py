"""The "Kling videos" page in the Airflow UI (an Airflow 3.1+ plugin shipped with the provider).

``plugin.py`` registers a FastAPI app on the api-server under :data:`URL_PREFIX` and a nav entry;
the pure pieces (``ranges``, ``records``, ``page``) hold the rules, ``store`` and ``files`` are
the database and storage edges, ``app`` wires them behind Airflow's own auth manager.
"""

from __future__ import annotations

#: Where the gallery app is mounted on the api-server (the extra link and the nav entry use it).
URL_PREFIX = "/kling"


def gallery_link(generation_id: str) -> str:
    """The gallery focused on one generation: what the tasks' "Kling video" link opens."""
    from urllib.parse import urlencode

    return f"{URL_PREFIX}/?{urlencode({'generation_id': generation_id})}"
