"""Request traces: read Azure / Mooncake trace files, re-time them, and build their prompts.

A trace frame has one row per request, in arrival order:

- ``timestamp_s`` (float64): seconds since the first row;
- ``input_tokens``, ``output_tokens`` (int64): prompt and output lengths;
- ``hash_ids`` (object): list[int] of the prompt's shared-prefix block ids, or None.

Formats:

- Azure LLM inference trace CSV: header ``TIMESTAMP,ContextTokens,GeneratedTokens``,
  TIMESTAMP a datetime such as ``2023-11-16 18:15:46.6805900``.
- Mooncake JSONL: ``{"timestamp": ms, "input_length": n, "output_length": n, "hash_ids": [..]}``.
- BurstGPT CSV: header ``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type``,
  Timestamp in seconds. Rows with 0 response tokens are requests that failed in the logged
  service; they are left out, and `frame.attrs["left_out"]` counts them (a run note says so).

Bad input raises BenchInputError with one line naming the file, the line and the problem.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd

from bench.errors import BenchInputError, read_input_bytes
from bench.scenario.prompts import VOCAB, Prompt

__all__ = [
    "COLUMNS", "TraceFormat", "read_trace", "trace_offsets", "trace_period", "trace_prompts",
    "trace_rate",
]

TraceFormat = Literal["auto", "azure", "mooncake", "burstgpt"]
COLUMNS = ("timestamp_s", "input_tokens", "output_tokens", "hash_ids")

_AZURE_COLUMNS = {"timestamp": "TIMESTAMP", "input": "ContextTokens", "output": "GeneratedTokens"}
_BURSTGPT_COLUMNS = {"timestamp": "Timestamp", "input": "Request tokens", "output": "Response tokens"}
_RERATE_STREAM = 0x7ACE
_BLOCK_STREAM = 0xB10C5
_UNIQUE_STREAM = 0x7A11


# --- reading ------------------------------------------------------------------------------


def read_trace(path: Path, fmt: TraceFormat = "auto") -> pd.DataFrame:
    """Read a trace file into a frame with `COLUMNS`; `fmt="auto"` picks by suffix, then content."""
    path = Path(path)
    data = read_input_bytes(path, "trace")
    if fmt == "auto":
        fmt = _detect(path, data)
    if fmt == "azure":
        frame = _read_csv(path, data, _AZURE_COLUMNS)
    elif fmt == "burstgpt":
        frame = _read_csv(path, data, _BURSTGPT_COLUMNS)
    elif fmt == "mooncake":
        frame = _read_mooncake(path, data)
    else:
        raise BenchInputError(f"{path}: unknown trace format {fmt!r} (use auto, azure, mooncake or burstgpt)")
    frame.attrs["source"] = str(path)
    return frame


def _detect(path: Path, data: bytes) -> Literal["azure", "mooncake", "burstgpt"]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        header = data.split(b"\n", 1)[0].lower()
        return "burstgpt" if b"response tokens" in header else "azure"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "mooncake"
    # Unknown suffix: a JSON object per line starts with "{", a CSV with its header.
    return "mooncake" if data.lstrip().startswith(b"{") else "azure"


def _read_csv(path: Path, data: bytes, columns: dict[str, str]) -> pd.DataFrame:
    try:
        # Strings throughout so that we, not pandas, decide what a bad value is; blank lines
        # are kept (as empty rows, dropped below) so that row i is file line i + 2.
        raw = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise BenchInputError(f"{path}: trace is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise BenchInputError(f"{path}: cannot parse CSV: {str(exc).strip().splitlines()[0]}") from None
    by_name = {str(c).strip().lower(): c for c in raw.columns}
    picked = {}
    for key, name in columns.items():
        if name.lower() not in by_name:
            header = ",".join(str(c) for c in raw.columns)
            raise BenchInputError(f"{path}: line 1: missing column {name} (header is {header!r}; "
                                  f"expected {','.join(columns.values())})")
        picked[key] = raw[by_name[name.lower()]].astype(str).str.strip()
    lines = np.arange(len(raw)) + 2
    blank = (picked["timestamp"] == "") & (picked["input"] == "") & (picked["output"] == "")
    if blank.all():
        raise BenchInputError(f"{path}: trace is empty (a header and no rows)")
    keep = ~blank.to_numpy()
    lines = lines[keep]
    stamps = picked["timestamp"][keep].reset_index(drop=True)
    seconds = _csv_seconds(path, stamps, lines, columns["timestamp"])
    inputs = _token_column(path, picked["input"][keep].to_numpy(), lines, columns["input"])
    outputs = _token_column(path, picked["output"][keep].to_numpy(), lines, columns["output"])
    left_out = 0
    if columns is _BURSTGPT_COLUMNS:  # 0 response tokens: the logged request failed; never replayed
        served = outputs > 0
        left_out = int((~served).sum())
        if not served.any():
            raise BenchInputError(f"{path}: no row with response tokens > 0 (every logged request failed)")
        seconds, inputs, outputs, lines = seconds[served], inputs[served], outputs[served], lines[served]
        seconds = seconds - seconds[0]
    frame = _frame(path, seconds, inputs, outputs, [None] * len(seconds), lines)
    frame.attrs["left_out"] = left_out
    return frame


def _csv_seconds(path: Path, stamps: pd.Series, lines: np.ndarray, name: str) -> np.ndarray:
    numeric = pd.to_numeric(stamps, errors="coerce")
    if not numeric.isna().any():
        return numeric.to_numpy(dtype=np.float64)  # already seconds: accept it, it is unambiguous
    # ISO8601 takes any number of fractional digits (the Azure traces have 7) and a missing
    # fraction, which a fixed "%f" format would not.
    parsed = pd.to_datetime(stamps, format="ISO8601", errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        i = bad[0]
        raise BenchInputError(f"{path}: line {lines[i]}: {name} {stamps.iloc[i]!r} is not a date-time or "
                              "seconds (expected e.g. 2023-11-16 18:15:46.6805900)")
    return (parsed - parsed.iloc[0]).dt.total_seconds().to_numpy(dtype=np.float64)


def _token_column(path: Path, values: np.ndarray, lines: np.ndarray, name: str) -> np.ndarray:
    numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers) | (numbers < 0) | (numbers != np.round(numbers))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BenchInputError(f"{path}: line {lines[i]}: {name} {values[i]!r} is not a non-negative integer")
    return numbers.astype(np.int64)


def _read_mooncake(path: Path, data: bytes) -> pd.DataFrame:
    stamps: list[float] = []
    inputs: list[int] = []
    outputs: list[int] = []
    hashes: list[list[int] | None] = []
    lines: list[int] = []
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise BenchInputError(f"{where}: invalid JSON: {exc}") from None
        if not isinstance(item, dict):
            raise BenchInputError(f"{where}: expected an object with timestamp, input_length, output_length")
        stamps.append(_number(where, item, "timestamp"))
        inputs.append(_count_field(where, item, "input_length"))
        outputs.append(_count_field(where, item, "output_length"))
        hashes.append(_hash_ids(where, item.get("hash_ids")))
        lines.append(number)
    seconds = np.asarray(stamps, dtype=np.float64) / 1000.0  # Mooncake timestamps are in ms
    if len(seconds):
        seconds = seconds - seconds[0]
    return _frame(path, seconds, np.asarray(inputs, np.int64), np.asarray(outputs, np.int64), hashes,
                  np.asarray(lines))


def _number(where: str, item: dict[str, Any], key: str) -> float:
    if key not in item:
        raise BenchInputError(f"{where}: missing field {key!r}")
    value = item[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise BenchInputError(f"{where}: {key} {value!r} is not a number")
    return float(value)


def _count_field(where: str, item: dict[str, Any], key: str) -> int:
    value = _number(where, item, key)
    if value < 0 or value != int(value):
        raise BenchInputError(f"{where}: {key} {item[key]!r} is not a non-negative integer")
    return int(value)


def _hash_ids(where: str, value: Any) -> list[int] | None:
    if value is None:
        return None
    ok = isinstance(value, list) and all(isinstance(h, int) and not isinstance(h, bool) and h >= 0 for h in value)
    if not ok:
        raise BenchInputError(f"{where}: hash_ids must be a list of non-negative integers")
    return value or None


def _frame(path: Path, seconds: np.ndarray, inputs: np.ndarray, outputs: np.ndarray,
           hashes: list[list[int] | None], lines: np.ndarray) -> pd.DataFrame:
    if len(seconds) == 0:
        raise BenchInputError(f"{path}: trace is empty")
    backwards = np.flatnonzero(np.diff(seconds) < 0)
    if len(backwards):
        i = int(backwards[0]) + 1
        raise BenchInputError(f"{path}: line {lines[i]}: timestamp goes back in time "
                              f"({seconds[i]:.6f} s after the first row, previous row {seconds[i - 1]:.6f} s); "
                              "a trace must be sorted by time")
    frame = pd.DataFrame({
        "timestamp_s": seconds.astype(np.float64),
        "input_tokens": inputs.astype(np.int64),
        "output_tokens": outputs.astype(np.int64),
        "hash_ids": pd.Series(hashes, dtype=object),
    })
    return frame


# --- timing -------------------------------------------------------------------------------


def trace_period(frame: pd.DataFrame) -> float | None:
    """The time one pass of the trace stands for: its span plus one mean gap.

    With n arrivals over a span S the mean gap is S/(n-1); the period P = S n/(n-1) makes
    the trace's rate n/P equal 1/mean gap, and lets circularly shifted copies wrap around
    without piling arrivals onto the seam. None when the trace spans no time.
    """
    n = len(frame)
    span = float(frame["timestamp_s"].iloc[-1] - frame["timestamp_s"].iloc[0]) if n else 0.0
    if n < 2 or span <= 0:
        return None
    return span * n / (n - 1)


def trace_rate(frame: pd.DataFrame) -> float | None:
    """Mean arrival rate of the trace at real speed (requests/s); None when it spans no time."""
    period = trace_period(frame)
    return None if period is None else len(frame) / period


def trace_offsets(frame: pd.DataFrame, speedup: float = 1.0, target_rate: float | None = None,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Send offsets (sorted, s) and the trace row each one replays.

    Real speed is `speedup` 1; `speedup` 2 replays twice as fast. `target_rate` (applied
    after the speedup) re-rates the trace to that mean rate while keeping its burst shape:
    a lower rate keeps a seeded random subset of the rows at their own times (thinning);
    a higher one overlays circularly time-shifted copies of the trace (whole copies plus a
    thinned one, seeded shifts), so bursts stay bursts and the span stays one period.
    """
    if speedup <= 0:
        raise ValueError("speedup must be positive")
    times = frame["timestamp_s"].to_numpy(dtype=np.float64) / speedup
    n = len(times)
    rows = np.arange(n, dtype=np.int64)
    if target_rate is None:
        return times, rows
    period = trace_period(frame)
    if period is None:
        source = frame.attrs.get("source", "trace")
        raise BenchInputError(f"{source}: load.trace.target_rate: the trace spans no time "
                              "(it needs two rows with different timestamps to have a rate)")
    period /= speedup
    factor = target_rate / (n / period)
    rng = np.random.default_rng([seed, _RERATE_STREAM])
    whole = int(np.floor(factor + 1e-9))
    fraction = max(factor - whole, 0.0)
    parts_t: list[np.ndarray] = []
    parts_r: list[np.ndarray] = []
    for copy in range(whole):
        # The first copy is the trace itself; the others start at a random phase.
        shift = 0.0 if copy == 0 else rng.uniform(0.0, period)
        parts_t.append((times + shift) % period if shift else times)
        parts_r.append(rows)
    keep = int(round(fraction * n))  # noqa: RUF046 - before NumPy 2, round() of a numpy float is a float
    if keep:
        # Exactly round(f n) rows, each kept with probability f: the mean rate then hits the
        # target instead of missing it by the binomial noise of a few hundred coin flips.
        picked = np.sort(rng.choice(n, size=keep, replace=False))
        shift = rng.uniform(0.0, period) if whole else 0.0
        parts_t.append((times[picked] + shift) % period if shift else times[picked])
        parts_r.append(rows[picked])
    if not parts_t:
        # A target so low that no row survives rounding: still send one request.
        return times[:1], rows[:1]
    offsets = np.concatenate(parts_t)
    replayed = np.concatenate(parts_r)
    order = np.argsort(offsets, kind="stable")
    return offsets[order], replayed[order]


# --- prompts ------------------------------------------------------------------------------


def trace_prompts(frame: pd.DataFrame, block_tokens: int, seed: int) -> list[Prompt]:
    """One prompt per trace row: `input_tokens` words, `max_tokens = output_tokens`.

    One word is one token on the built-in simulator. Block i of a row is `block_tokens`
    words determined by its hash id alone (seeded), so rows sharing leading hash ids share
    identical leading text and a prefix cache sees the trace's real sharing. Words past the
    last block, and whole prompts of rows without hash_ids, are unique to the row (they
    start with the row number, as synthetic prompts do).
    """
    if block_tokens < 1:
        raise ValueError("block_tokens must be at least 1")
    vocab = np.array(VOCAB)
    blocks: dict[int, list[str]] = {}
    unique_rng = np.random.default_rng([seed, _UNIQUE_STREAM])
    prompts = []
    inputs = frame["input_tokens"].to_numpy()
    outputs = frame["output_tokens"].to_numpy()
    hash_col = frame["hash_ids"].to_numpy() if "hash_ids" in frame else [None] * len(frame)
    for row in range(len(frame)):
        size = max(1, int(inputs[row]))  # an empty prompt is not a request
        words: list[str] = []
        for hid in hash_col[row] or ():
            if len(words) >= size:
                break
            block = blocks.get(hid)
            if block is None:
                rng = np.random.default_rng([seed, _BLOCK_STREAM, int(hid)])
                block = vocab[rng.integers(len(vocab), size=block_tokens)].tolist()
                blocks[hid] = block
            words.extend(block[: size - len(words)])
        rest = size - len(words)
        if rest:
            tail = vocab[unique_rng.integers(len(vocab), size=rest)].tolist()
            tail[0] = str(row)
            words.extend(tail)
        prompts.append(Prompt(messages=None, text=" ".join(words), max_tokens=max(1, int(outputs[row]))))
    return prompts
