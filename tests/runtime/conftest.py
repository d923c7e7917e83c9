"""A private copy of the session's small bundle (tests/conftest.py) for tests that damage it."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture
def bundle_copy(small_bundle, tmp_path):
    """A private copy a test may damage."""
    dst = tmp_path / "bundle"
    shutil.copytree(small_bundle, dst)
    return dst
