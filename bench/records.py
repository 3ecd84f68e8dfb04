"""Raw per-request records as the runner captures them; never changed afterwards. Also the
record types every later layer shares: chunk batches as stored, the states a run ends in, and
the live progress counters the runner keeps for the console.

Times are seconds on `time.perf_counter()` minus the run's start (`t0`, kept in run.json),
so adding t0 gives the raw monotonic stamp. Chunk data are compact columns, not objects.
"""

from __future__ import annotations

import operator
from array import array
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, get_args

import numpy as np

__all__ = [
    "CHUNKS_INDEX",
    "CHUNK_KINDS",
    "KIND_CONTENT",
    "KIND_FUNCTION_CALL",
    "KIND_OTHER",
    "KIND_REASONING",
    "KIND_REFUSAL",
    "KIND_ROLE",
    "KIND_TOOL_CALL",
    "KIND_USAGE",
    "NO_TOKENS",
    "OUTPUT_KINDS",
    "OUTPUT_KIND_CODES",
    "OUTPUT_KIND_TABLE",
    "RECORD_FIELDS",
    "RUN_STATES",
    "SCALAR_FIELDS",
    "ChunkBatch",
    "ChunkColumns",
    "Progress",
    "RequestRecord",
    "RunState",
    "record_values",
    "run_state",
]

# Codes are stored: new kinds go at the end. Output ("token") kinds are every generated
# delta: text, reasoning, a tool call (or the legacy function_call) and a refusal.
(KIND_ROLE, KIND_CONTENT, KIND_REASONING, KIND_USAGE, KIND_OTHER,
 KIND_TOOL_CALL, KIND_FUNCTION_CALL, KIND_REFUSAL) = range(8)
CHUNK_KINDS = ("role", "content", "reasoning", "usage", "other", "tool_call", "function_call", "refusal")
OUTPUT_KINDS = ("content", "reasoning", "tool_call", "function_call", "refusal")
OUTPUT_KIND_CODES = frozenset(CHUNK_KINDS.index(k) for k in OUTPUT_KINDS)
# By kind code (a stored int8 code viewed as uint8): an output kind. A lookup per chunk
# (`OUTPUT_KIND_TABLE.take(kinds.view(np.uint8))`), where np.isin sorts the codes each call.
OUTPUT_KIND_TABLE = np.zeros(256, dtype=bool)
OUTPUT_KIND_TABLE[sorted(OUTPUT_KIND_CODES)] = True
OUTPUT_KIND_TABLE.flags.writeable = False
NO_TOKENS = -1  # the server did not say how many tokens a chunk carries


@dataclass(frozen=True, slots=True)
class ChunkColumns:
    """One entry per SSE event (per choice when an event carries several choices' output):
    arrival time, kind code, tokens (or NO_TOKENS), choice index."""

    t: array = field(default_factory=lambda: array("d"))
    kind: array = field(default_factory=lambda: array("b"))
    tokens: array = field(default_factory=lambda: array("i"))
    choice: array = field(default_factory=lambda: array("i"))

    def __len__(self) -> int:
        return len(self.t)

    def append(self, t: float, kind: int, tokens: int, choice: int) -> None:
        """One entry: arrival (s from t0), kind code, tokens (or NO_TOKENS), choice index."""
        self.t.append(t)
        self.kind.append(kind)
        self.tokens.append(tokens)
        self.choice.append(choice)

    def __reduce__(self) -> tuple[Any, ...]:
        # The dataclass's own pickling sets each slot in Python: 4x slower across processes.
        return ChunkColumns, (self.t, self.kind, self.tokens, self.choice)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    request_id: int
    stage: int
    phase: str  # "warmup" | "measure"
    variant: str
    block: int
    conversation: int
    turn: int
    prompt_index: int
    scheduled_s: float
    submitted_s: float  # handed to the SDK
    sent_s: float  # last request byte written to the socket
    headers_s: float | None
    end_s: float
    status: str  # "ok" | "error" | "cancelled"
    error_kind: str | None
    error_message: str | None
    http_status: int | None
    retry_after_s: float | None
    finish_reason: str | None
    usage_prompt_tokens: int | None
    usage_completion_tokens: int | None
    server_request_id: str | None
    max_tokens: int | None
    n: int
    done_seen: bool
    reconnected: bool  # the pooled connection was stale; sent again on a fresh one
    output_chars: int
    chunks: ChunkColumns
    server_timings: dict[str, Any] | None = None
    # Non-streamed answers only (embeddings): the inputs the request carried, each answered
    # by one embedding, and when the last byte of the answer's body arrived (its E2E end).
    # None for streamed answers, whose chunks say when they ended.
    inputs: int | None = None
    body_s: float | None = None
    # usage.completion_tokens_details.reasoning_tokens, when the server gave it
    usage_reasoning_tokens: int | None = None
    # usage.prompt_tokens_details.cached_tokens (prompt tokens the server's prefix cache held),
    # when the server gave it
    usage_cached_tokens: int | None = None
    # The model the request named (target.models draws one per prompt; a variant may switch
    # it). None in runs from before it was recorded.
    model: str | None = None
    # The generated text of each choice (every output kind, in arrival order), kept only when
    # the scenario counts tokens (`tokens:`); None otherwise.
    output_texts: tuple[str, ...] | None = None


RECORD_FIELDS = tuple(RequestRecord.__dataclass_fields__)
SCALAR_FIELDS = tuple(name for name in RECORD_FIELDS if name != "chunks")
CHUNKS_INDEX = RECORD_FIELDS.index("chunks")
# A record as a plain tuple in field order: how worker processes ship records. Rebuilding
# the frozen dataclass on the other side costs ~10 us a record; the store takes the tuple.
record_values = operator.attrgetter(*RECORD_FIELDS)


class ChunkBatch(NamedTuple):
    """Raw chunk columns of some records as stored, each record's events contiguous and in
    order: what the store's readers yield and the streaming metrics scan."""

    request_id: np.ndarray  # int64
    t_s: np.ndarray  # float64
    kind: np.ndarray  # int8, index into CHUNK_KINDS
    tokens: np.ndarray  # int32, NO_TOKENS where the server did not say
    choice: np.ndarray  # int32


# How a run ended (run.json `ended`): "running" until it is finished; "saturated" when
# load.stop_on_saturation stopped it early.
RunState = Literal["running", "completed", "saturated", "interrupted", "failed"]
RUN_STATES: tuple[RunState, ...] = get_args(RunState)


def run_state(value: str) -> RunState:
    """`value` as a RunState; ValueError when it is none of RUN_STATES."""
    for state in RUN_STATES:
        if value == state:
            return state
    raise ValueError(f"not a run state: {value!r} (one of {', '.join(RUN_STATES)})")


@dataclass(slots=True)
class Progress:
    """Live counters for the console; written by the runner (or the pool) only."""

    planned: int | None = None
    sent: int = 0
    done: int = 0
    errors: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    output_chunks: int = 0
    stage: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    not_sent: int = 0  # scheduled, but past load.max_send_lag_s before a slot was free
    drain_cancelled: int = 0  # in flight when the drain time (load.drain_s) ran out
