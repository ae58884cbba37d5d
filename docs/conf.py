"""Sphinx configuration: the provider's documentation, built with warnings as errors (make docs).

Pages that describe data (the model list, the tested versions) are generated at build time from
the package itself by ``_ext/kling_docs.py``, so they cannot drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS.parent), str(DOCS / "_ext")]

import kling_provider  # noqa: E402

project = "airflow-provider-kling"
author = "airflow-provider-kling contributors"
copyright = "2026, airflow-provider-kling contributors"
release = version = kling_provider.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode", "kling_docs"]
exclude_patterns = ["_build", "_generated"]
html_theme = "furo"
html_title = f"Kling provider {release}"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Airflow's own classes are documented by Airflow; don't try to resolve every base-class reference.
suppress_warnings = ["ref.python"]
