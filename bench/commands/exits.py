"""Exit codes of the `bench` command: every user-facing failure is one line on stderr and one of these."""

from __future__ import annotations

__all__ = ["EXIT_FAILED", "EXIT_INPUT", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_REGRESSION", "EXIT_SATURATED"]

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_SATURATED = 3  # `bench run --stop-on-saturation` stopped sending: the server could not keep up
EXIT_REGRESSION = 3  # `bench compare --fail-on`: a run is significantly worse than the baseline past a threshold
