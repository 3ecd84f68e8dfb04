"""Errors that reach the user as one line (exit code 2), never as a traceback; and the one
warning type, a reason not to trust a run's numbers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["BenchInputError", "RunFailed", "ServerStartFailed", "TargetUnusable", "ValidityWarning", "read_input_bytes"]


class BenchInputError(Exception):
    """Bad input from the user: a scenario, a flag, a dataset or a run directory.

    The message is complete on its own: it names the file, the field and the problem.
    """

    exit_code = 2


class TargetUnusable(BenchInputError):
    """The target cannot be benchmarked, found before the run starts: it cannot be reached
    (a wrong base_url or port, a server that is down), or it failed every try of a set-up
    request. Exit code 2 and one line, as for other bad input: nothing was measured."""


class RunFailed(Exception):
    """A run could not go on (for example the results directory became unwritable)."""

    exit_code = 1


class ServerStartFailed(RunFailed):
    """A launched server exited or never became ready. The message has its exit code and log
    tail; `log_path` is its whole log (kept, for the caller to move next to the results)."""

    def __init__(self, message: str, log_path: Path) -> None:
        super().__init__(message)
        self.log_path = log_path


def read_input_bytes(path: Path, what: str, file_word: str = "file") -> bytes:
    """The bytes of a user-given input file (dataset, trace), or a one-line BenchInputError:
    "<what> file not found", "cannot read <what>...", "<what> is empty"."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BenchInputError(f"{path}: {what} file not found") from None
    except OSError as exc:
        label = f"{what} {file_word}".strip()
        raise BenchInputError(f"{path}: cannot read {label}: {exc.strerror or exc}") from None
    if not data.strip():
        raise BenchInputError(f"{path}: {what} is empty")
    return data


@dataclass(frozen=True)
class ValidityWarning:
    """A reason not to trust a run's numbers (the numbers are still shown): `code` is stable
    (tests, run.json `client.warnings`), `message` one line for the reader. Used for the
    validity checks and for the client's self-calibration alike."""

    code: str
    message: str

    def __str__(self) -> str:
        return self.message
