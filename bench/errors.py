"""Errors that reach the user as one line (exit code 2), never as a traceback."""

from __future__ import annotations


class BenchInputError(Exception):
    """Bad input from the user: a scenario, a flag, a dataset or a run directory.

    The message is complete on its own: it names the file, the field and the problem.
    """

    exit_code = 2


class RunFailed(Exception):
    """A run could not go on (for example the results directory became unwritable)."""

    exit_code = 1
