"""The journal (`requests.jsonl`): one raw record per line, written as requests finish and
read back line by line; the source of truth when the parquet files are missing or cut short."""

from __future__ import annotations

import base64
import binascii
import sys
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.errors import BenchInputError
from bench.records import NO_TOKENS, RequestRecord
from bench.store.layout import JOURNAL

__all__ = ["journal_chunks", "journal_line", "journal_rows"]

_LITTLE_ENDIAN = sys.byteorder == "little"


def journal_line(record: RequestRecord | dict[str, Any]) -> bytes:
    """One journal line, for a RequestRecord or a dict of its fields by name (the same JSON
    either way): orjson serialises the dataclass (keys are the field names) and calls
    `_encode_array` for the chunk columns. About 5 us for 128 chunks, a third of it base64
    of the times; the float lists of schema version 1 cost twice that and 2x the bytes."""
    return orjson.dumps(record, default=_encode_array) + b"\n"


def _encode_array(value: Any) -> Any:
    if not isinstance(value, array):
        raise TypeError(f"cannot journal a {type(value).__name__}")
    if value.typecode == "i":
        # tokens/choice are NO_TOKENS / 0 throughout nearly every record: one number, not
        # 4 bytes each (compared with a cached array: 6x faster than array.count)
        for fill, same in _fills(len(value)):
            if value == same:
                return fill
    if not _LITTLE_ENDIAN:
        value = array(value.typecode, value)
        value.byteswap()
    return binascii.b2a_base64(value, newline=False).decode("ascii")


_FILLS: dict[int, tuple[tuple[int, array], ...]] = {}
_FILLS_CACHED = 2048  # chunk counts up to this: 16 MiB of cached arrays at most


def _fills(n: int) -> tuple[tuple[int, array], ...]:
    fills = _FILLS.get(n)
    if fills is None:
        fills = tuple((v, array("i", [v]) * n) for v in (NO_TOKENS, 0)) if n else ()
        if n <= _FILLS_CACHED:
            _FILLS[n] = fills
    return fills


def journal_chunks(row: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """A decoded journal line's chunk columns: (t, kind, tokens, choice)."""
    chunks = row["chunks"]
    t = _decode_column(chunks["t"], "<f8", 0)
    n = t.size
    return (t, _decode_column(chunks["kind"], "i1", n), _decode_column(chunks["tokens"], "<i4", n),
            _decode_column(chunks["choice"], "<i4", n))


def _decode_column(value: str | int, dtype: str, n: int) -> np.ndarray:
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype=dtype)
    return np.full(n, value, dtype=dtype)


def journal_rows(run_dir: Path) -> Iterator[dict[str, Any]]:
    """Journal records (decoded lines), in the order they finished; BenchInputError when
    the run has no journal."""
    path = run_dir / JOURNAL
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise BenchInputError(f"{run_dir}: no {JOURNAL}; nothing was recorded") from None
    with handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break  # the last line of a killed run may be cut short
            yield orjson.loads(line)
