"""Packaging: one version, the licence, what the sdist needs to test itself."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import concsignals

ROOT = Path(__file__).resolve().parent.parent


def test_version_is_the_installed_distributions() -> None:
    # pyproject.toml reads the version from concsignals/__init__.py (hatch's
    # dynamic version): the two can only differ if that wiring breaks.
    assert concsignals.__version__ == importlib.metadata.version("concsignals")


def test_the_licence_is_in_the_metadata() -> None:
    meta = importlib.metadata.metadata("concsignals")
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert "LICENSE" in meta.get_all("License-File", [])
    assert (ROOT / "LICENSE").read_text().startswith("BSD 3-Clause License")
