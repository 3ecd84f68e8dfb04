"""What finalize stores beside summary.json so that `bench report` and `bench compare` need
not read a run's chunks again (a read of 128M chunks and its scans took tens of seconds).

Finalize reads the chunks anyway (`bench.analysis.results`); its reads give:
- `itl_values.npy`: the ITL gaps (ms, float64) of the counted requests, in `Run.itl` order,
  and `itl_blocks.npy`: each gap's block of run time, floor(t_s / block_s) (int16 when every
  block fits, else int32), for the bootstrap of `bench compare`; both read memory-mapped
  (10 bytes a gap on disk);
- `derived.json`: the token rates of the timeline (1 s bins) and of the steady state (its
  bins), and the metric dialects' figures, under the key of the definitions they follow.

Every figure here is what the report or the comparison would compute from the chunks, by the
same code: a file that is missing, cut short or of another version is ignored and the
chunks are read instead.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.metrics.dialects import DialectFigures, definitions_key
from bench.metrics.gaps import ItlGaps

__all__ = ["DERIVED", "ITL_BLOCKS", "ITL_VALUES", "VERSION", "Derived", "read_derived", "write_derived", "write_gaps"]

VERSION = 1
DERIVED, ITL_VALUES, ITL_BLOCKS = "derived.json", "itl_values.npy", "itl_blocks.npy"


@dataclass(frozen=True)
class Derived:
    """A finalized run's stored figures (`read_derived`)."""

    run_dir: Path
    block_s: float
    itl_count: int
    token_rates: dict[float, pd.DataFrame]  # by bin width (s): `scan.token_rate` frames
    dialects: list[DialectFigures] | None  # None: stored under other definitions

    def itl_values(self) -> np.ndarray | None:
        """The gaps, memory-mapped (read-only); None when the file is missing or cut short."""
        return self._load(ITL_VALUES, np.float64)

    def itl_blocks(self, block_s: float) -> np.ndarray | None:
        """Each gap's block of `block_s` seconds, memory-mapped for reads here and there (the
        bootstrap reads 5,000 of them: read ahead, they paged in the whole file); None unless
        stored for that width."""
        if block_s != self.block_s:
            return None
        narrow = self._load(ITL_BLOCKS, np.int16, scattered=True)
        return narrow if narrow is not None else self._load(ITL_BLOCKS, np.int32, scattered=True)

    def _load(self, name: str, dtype: type, scattered: bool = False) -> np.ndarray | None:
        try:
            with open(self.run_dir / name, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, fortran, stored = read_header(handle)
                if stored != np.dtype(dtype) or shape != (self.itl_count,) or fortran:
                    return None
                offset = handle.tell()
                if self.itl_count == 0:
                    return np.empty(0, dtype=dtype)
                mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None
        if scattered:
            mapped.madvise(mmap.MADV_RANDOM)
        if len(mapped) < offset + self.itl_count * np.dtype(dtype).itemsize:
            return None  # cut short
        return np.frombuffer(mapped, dtype=dtype, count=self.itl_count, offset=offset)


def write_gaps(run_dir: Path, gaps: ItlGaps) -> None:
    """Store the gaps and their `blocks` (`write_derived` then names them)."""
    if gaps.values is None or gaps.blocks is None:
        raise ValueError("stored gaps need their blocks: scan(..., block_s=...)")
    (run_dir / DERIVED).unlink(missing_ok=True)  # it names complete arrays only
    np.save(run_dir / ITL_VALUES, gaps.values)
    blocks = gaps.blocks
    fits = bool(blocks.size) and 0 <= blocks.min() and blocks.max() <= np.iinfo(np.int16).max
    if fits and blocks.dtype != np.int16:
        blocks = blocks.astype(np.int16)  # runs up to 2.2 hours in 0.25 s blocks: 2 bytes a gap
    elif not fits and blocks.dtype != np.int32:
        blocks = blocks.astype(np.int32)
    np.save(run_dir / ITL_BLOCKS, blocks)


def write_derived(run_dir: Path, itl_count: int, block_s: float, token_rates: Sequence[tuple[float, pd.DataFrame]],
                  dialects: Sequence[DialectFigures]) -> None:
    """derived.json, after `write_gaps` (`itl_count` gaps in blocks of `block_s`)."""
    data = {"version": VERSION, "block_s": block_s, "itl_count": itl_count,
            "token_rates": [{"bin_s": bin_s, "tokens_per_s": frame["tokens_per_s"].tolist()}
                            for bin_s, frame in token_rates],
            "dialects_key": definitions_key(), "dialects": [f.to_json() for f in dialects]}
    (run_dir / DERIVED).write_text(json.dumps(data) + "\n", encoding="utf-8")


def read_derived(run_dir: Path) -> Derived | None:
    """The run's stored figures; None when there are none, or not of this version."""
    try:
        data = json.loads((run_dir / DERIVED).read_text(encoding="utf-8"))
        if data.get("version") != VERSION:
            return None
        return Derived(run_dir, float(data["block_s"]), int(data["itl_count"]), _rates(data["token_rates"]),
                       _dialects(data))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _rates(items: list[dict[str, Any]]) -> dict[float, pd.DataFrame]:
    """`scan.TokenRate.frame`s again: bin starts are the bin index times its width, as there."""
    out = {}
    for item in items:
        bin_s, rates = float(item["bin_s"]), np.asarray(item["tokens_per_s"], dtype=np.float64)
        out[bin_s] = pd.DataFrame({"t_s": np.arange(rates.size) * bin_s, "tokens_per_s": rates})
    return out


def _dialects(data: dict[str, Any]) -> list[DialectFigures] | None:
    if data.get("dialects_key") != definitions_key():
        return None
    return [DialectFigures.from_json(item) for item in data["dialects"]]
