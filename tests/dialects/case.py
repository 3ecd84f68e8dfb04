"""One scripted stream and the truth about it.

Times in a script are seconds from the moment the server starts answering; the truth is
written by hand from those times (a token written at 0.2 s is a TTFT of ~200 ms), never
taken from a bench run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# What each case is an instance of (the kinds) or which server it imitates.
KINDS = ("framing", "error_in_200", "output", "finish", "choices", "end_of_stream", "json_error_body")
FAMILIES = ("vllm", "sglang", "tgi", "llamacpp", "ollama", "litellm", "openrouter", "azure", "openai",
            "condition", "generic")


class _Unchecked:
    """A truth field the case does not pin down (what the server left undefined)."""

    def __repr__(self) -> str:
        return "UNCHECKED"


UNCHECKED: Any = _Unchecked()

Write = tuple[float, bytes]  # (seconds from the start of the answer, bytes written at once)


@dataclass(frozen=True)
class Truth:
    """What bench must record for the case's one request.

    `ttft_ms` / `e2e_ms` None: no output token, so both are NaN. `gap_ms`: the size of every
    ITL gap (one number when all are equal, else one per gap in time order). `message`: a
    substring of `error_message` (the server's own words). `token_kinds`: chunk counts of the
    output kinds (content, reasoning, tool_call, function_call, refusal); kinds not named
    must have none. `columns`: further per-request columns and their exact values. UNCHECKED:
    a value the script leaves undefined (e.g. whether bench reads on after an error event).
    """

    status: Literal["ok", "error"] = "ok"
    error_kind: str | None = None
    message: str | None = None
    ttft_ms: float | Any | None = None
    e2e_ms: float | Any | None = None
    output_tokens: int | Any = 0
    itl_gaps: int | Any = 0
    gap_ms: float | tuple[float, ...] | None = None
    done_seen: bool | Any = UNCHECKED
    finish_reason: str | Any | None = None
    tpot_ms: float | None = None
    token_kinds: tuple[tuple[str, int], ...] | None = None
    columns: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Case:
    """A scripted answer: `writes` streamed one by one, or `body` sent whole."""

    name: str
    family: str
    kinds: tuple[str, ...]
    source: str  # which server / bug report it reflects (repo#number), and why
    truth: Truth
    writes: tuple[Write, ...] = ()
    body: bytes | None = None
    endpoint: Literal["chat", "completions"] = "chat"
    n: int = 1
    http_status: int = 200
    content_type: str = "text/event-stream"
    headers: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"{self.name}: unknown family {self.family!r}")
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"{self.name}: unknown kinds {sorted(unknown)}")
        if (self.body is None) == (not self.writes):
            raise ValueError(f"{self.name}: give writes or a body, not both")
        times = [at for at, _ in self.writes]
        if times != sorted(times):
            raise ValueError(f"{self.name}: writes are not in time order")

    @property
    def group(self) -> tuple[str, int]:
        """Cases that can share one run: same endpoint and `n`."""
        return self.endpoint, self.n
