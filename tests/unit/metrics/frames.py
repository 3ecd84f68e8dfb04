"""Hand-built frames for the exact tests: raw request rows and stored chunk rows, in the
store's types."""

from __future__ import annotations

import pandas as pd

from bench.records import CHUNK_KINDS
from bench.store import REQUEST_DTYPES

__all__ = ["chunk_frame", "raw_frame"]


def raw_frame(rows: list[dict], index: list[int] | None = None, schedule_at_send: bool = False) -> pd.DataFrame:
    """Raw requests from `rows` (the fields they give; the rest None or a plain default).
    `schedule_at_send`: a row without `scheduled_s` / `submitted_s` gets its `sent_s`."""
    base = {k: None for k in REQUEST_DTYPES}
    base.update(stage=0, phase="measure", variant="", block=0, conversation=-1, turn=0, prompt_index=0,
                n=1, done_seen=True, reconnected=False, output_chars=0, status="ok")
    if schedule_at_send:
        rows = [{"scheduled_s": r["sent_s"], "submitted_s": r["sent_s"], **r} for r in rows]
    frame = pd.DataFrame([{**base, **r} for r in rows]).astype(REQUEST_DTYPES)
    if index is not None:
        frame.index = index
    return frame


def chunk_frame(rows: list[tuple]) -> pd.DataFrame:
    """Chunks from (request_id, t_s, kind name, tokens or None, choice) tuples."""
    frame = pd.DataFrame(rows, columns=["request_id", "t_s", "kind", "tokens", "choice"])
    frame["kind"] = frame["kind"].astype(pd.CategoricalDtype(list(CHUNK_KINDS)))
    frame["tokens"] = frame["tokens"].astype("Int32")
    return frame
