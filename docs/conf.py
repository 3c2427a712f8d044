"""Sphinx configuration for the concsignals documentation.

Build (from the repository root):

    sphinx-build -W --keep-going -b html docs docs/_build/html
    sphinx-build -W --keep-going -b doctest docs docs/_build/doctest

Sources are MyST Markdown; code examples are ``{doctest}`` / ``{testcode}``
blocks run by ``sphinx.ext.doctest``.  Nothing here needs the network.
"""

from __future__ import annotations

import doctest
import importlib
import sys
from pathlib import Path
from typing import Any

# Document (and run the examples against) the checkout these docs sit in, even
# when another copy of concsignals is installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import concsignals

project = "concsignals"
author = "The concsignals developers"
copyright = "the concsignals developers"
release = concsignals.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# -- MyST ---------------------------------------------------------------------

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- autodoc ------------------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "undoc-members": False}

# -- doctest ------------------------------------------------------------------

# Every example starts from a clean logging setup and imports the package, so
# a page can be read (and run) from any of its examples.
doctest_global_setup = """
import logging
import concsignals
from concsignals import Signal, SignalView, receiver

# send_robust logs each failure on "concsignals" with its traceback; keep the
# doctest output clean.  Examples that show the log attach their own handler.
_concsignals_log = logging.getLogger("concsignals")
_concsignals_log.propagate = False
if not any(isinstance(h, logging.NullHandler) for h in _concsignals_log.handlers):
    _concsignals_log.addHandler(logging.NullHandler())
"""
doctest_default_flags = (
    doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.DONT_ACCEPT_TRUE_FOR_1
)
# Only the blocks written as ``{doctest}``/``{testcode}`` run; plain ``python``
# code blocks (process pools, Dask) are shown, not run.
doctest_test_doctest_blocks = ""

# -- HTML ---------------------------------------------------------------------

html_theme = "furo"
html_title = f"concsignals {release}"


# -- every public name is documented ------------------------------------------


def _check_public_names(app: Any, env: Any) -> None:
    """Warn (an error under ``-W``) if a name in ``__all__`` has no API entry.

    ``concsignals.__all__`` is the public surface; the API page must document
    every name in it, so a new public name cannot land undocumented.
    """
    documented = set(env.domaindata.get("py", {}).get("objects", {}))
    module = importlib.import_module("concsignals")
    for name in module.__all__:
        if f"concsignals.{name}" not in documented:
            from sphinx.util import logging as sphinx_logging

            sphinx_logging.getLogger(__name__).warning(
                "public name concsignals.%s is not documented in docs/api.md", name
            )


def setup(app: Any) -> None:
    app.connect("env-check-consistency", _check_public_names)
