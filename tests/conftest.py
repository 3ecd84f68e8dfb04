"""Shared fixtures for the top-level tests; helpers live in tests/benchtest.py."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def scenario_dir(tmp_path: Path) -> Path:
    return tmp_path
