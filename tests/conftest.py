"""Shared fixtures for the top-level tests; helpers live in tests/benchtest.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# Ray is the `[ray]` extra, installed for its own tier (`.ci/run`): without it the Ray tests
# are not collected (a module-level skip would show as a skipped test in every other tier);
# `python -m pytest -m ray` without Ray then selects nothing and exits 5, a failure.
collect_ignore = [] if importlib.util.find_spec("ray") is not None else ["e2e/test_ray.py"]


@pytest.fixture
def scenario_dir(tmp_path: Path) -> Path:
    return tmp_path


# The browser tests (marker `browser`) are listed by name with their outcome at the end of
# every run, so that CI's log shows them running (a skip would show too, with its reason).
_BROWSER_OUTCOMES: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "browser" in report.keywords and (report.when == "call" or report.outcome == "skipped"):
        _BROWSER_OUTCOMES.append((report.nodeid, report.outcome))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _BROWSER_OUTCOMES:
        terminalreporter.section("browser tests (headless Chromium)")
        for nodeid, outcome in _BROWSER_OUTCOMES:
            terminalreporter.write_line(f"{outcome.upper():8s} {nodeid}")
