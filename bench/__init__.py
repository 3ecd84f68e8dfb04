"""bench: a load and benchmark harness for OpenAI-compatible LLM servers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_run"]

if TYPE_CHECKING:
    from bench.analysis.results import load_run


def __getattr__(name: str) -> Any:
    # Lazy so that `python -m bench.sim` and the CLI's --help do not pay for pandas.
    if name == "load_run":
        from bench.analysis.results import load_run

        return load_run
    raise AttributeError(name)
