"""Sphinx configuration for the Flask-Confirm documentation.

Build with ``scripts/dev docs`` or ``tox -e docs``. Nothing here fetches from
the network: there is deliberately no intersphinx, so the docs build offline.
"""

from __future__ import annotations

import importlib.metadata
import typing as t

if t.TYPE_CHECKING:
    from sphinx.application import Sphinx

# -- Project -------------------------------------------------------------------

project = "Flask-Confirm"
author = "Flask-Confirm developers"
copyright = author
release = importlib.metadata.version("Flask-Confirm")
version = ".".join(release.split(".")[:2])

# -- General -------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]
exclude_patterns = ["_build"]

# Types go into the parameter descriptions, not the signatures, which stay
# readable; the package's own docstrings carry the reST field lists.
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_class_signature = "mixed"

# -- HTML ----------------------------------------------------------------------

html_theme = "furo"
html_title = f"Flask-Confirm {release}"


def _keep_own_source(app: Sphinx, modname: str, fullname: str) -> str | None:
    # The signals are blinker objects, whose __module__ is "blinker.base":
    # without this, viewcode would publish blinker's source for them.
    return modname if modname == "flask_confirm.signals" else None


def setup(app: Sphinx) -> None:
    app.connect("viewcode-follow-imported", _keep_own_source)
