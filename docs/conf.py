"""Sphinx configuration for the concsignals documentation.

Build (from the repository root):

    sphinx-build -W --keep-going -b html docs docs/_build/html
    sphinx-build -W --keep-going -b doctest docs docs/_build/doctest

Sources are MyST Markdown; code examples are ``{doctest}`` / ``{testcode}``
blocks run by ``sphinx.ext.doctest``.  Nothing here needs the network.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import re
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

# The examples import what they use themselves, so each page can be copied
# from; the global setup only keeps the log quiet.
doctest_global_setup = """
import logging as _logging

# send_robust logs each failure on "concsignals" with its traceback; keep the
# doctest output clean.  Examples that show the log attach their own handler.
_log = _logging.getLogger("concsignals")
_log.propagate = False
if not any(isinstance(h, _logging.NullHandler) for h in _log.handlers):
    _log.addHandler(_logging.NullHandler())
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


# -- the tests and stress scenarios the guarantees page names exist ------------

_ROOT = Path(__file__).resolve().parent.parent
_TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`|`((?:test_|Test)\w+)`")
_HYPHENATED = re.compile(r"`([a-z0-9]+(?:-[a-z0-9]+)+)`")


def _names_in(path: Path) -> set[str]:
    """The module-level functions, classes and assigned names of ``path``."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _check_proofs(app: Any, docname: str, source: list[str]) -> None:
    """Warn if ``guarantees.md`` names a test or stress scenario that is gone.

    A bare ``test_...`` name belongs to the last ``tests/FILE::`` named before
    it.  Hyphenated names must be stress scenarios or self-test dispatchers.
    """
    if docname != "guarantees":
        return
    from sphinx.util import logging as sphinx_logging

    log = sphinx_logging.getLogger(__name__)
    from stress.broken import BROKEN
    from stress.catalog import BY_NAME

    current: Path | None = None
    for m in _TEST_REF.finditer(source[0]):
        if m.group(1):
            current, name = _ROOT / m.group(1), m.group(2)
        else:
            name = m.group(3)
        if current is None or not current.exists():
            log.warning("guarantees.md: %s names a missing test file", name)
        elif name not in _names_in(current):
            log.warning("guarantees.md: no test %s in %s", name, current.name)
    from tests.mutation.critical import MUTANTS

    known = set(BY_NAME) | set(BROKEN) | {mutant.name for mutant in MUTANTS}
    for m in _HYPHENATED.finditer(source[0]):
        if m.group(1) not in known:
            log.warning(
                "guarantees.md: no stress scenario or critical mutant %s", m.group(1)
            )


def setup(app: Any) -> None:
    app.connect("env-check-consistency", _check_public_names)
    app.connect("source-read", _check_proofs)
