"""What finalize stores beside summary.json so that `bench report` and `bench compare` need
not read a run's chunks again (a read of 128M chunks and its scans took tens of seconds).

Finalize reads the chunks once anyway; the same read gives (`bench.analysis.results`):
- `itl_values.npy`: the ITL gaps (ms, float64) of the counted requests, in `Run.itl` order,
  and `itl_blocks.npy`: each gap's block of run time, floor(t_s / block_s) (int32), for the
  bootstrap of `bench compare`; both read memory-mapped (12 bytes a gap on disk);
- `derived.json`: the token rates of the timeline (1 s bins) and of the steady state (its
  bins), and the metric dialects' figures, under the key of the definitions they follow.

Every figure here is what the report or the comparison would compute from the chunks, by the
same code: a file that is missing, cut short or of another version is ignored and the
chunks are read instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.metrics.dialects import DialectFigures, definitions_key
from bench.metrics.gaps import ItlGaps

__all__ = ["DERIVED", "ITL_BLOCKS", "ITL_VALUES", "VERSION", "Derived", "read_derived", "write_derived"]

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
        """Each gap's block of `block_s` seconds; None unless stored for that width."""
        return self._load(ITL_BLOCKS, np.int32) if block_s == self.block_s else None

    def _load(self, name: str, dtype: type) -> np.ndarray | None:
        try:
            values = np.load(self.run_dir / name, mmap_mode="r")
        except (OSError, ValueError):
            return None
        if values.dtype != dtype or values.shape != (self.itl_count,):
            return None
        return values


def write_derived(run_dir: Path, gaps: ItlGaps, block_s: float, token_rates: Sequence[tuple[float, pd.DataFrame]],
                  dialects: Sequence[DialectFigures]) -> None:
    """Store the figures (`gaps` with their `blocks` of `block_s`); derived.json last, so
    that it names only complete arrays."""
    if gaps.values is None or gaps.blocks is None:
        raise ValueError("derived figures need the gaps and their blocks: scan(..., block_s=...)")
    (run_dir / DERIVED).unlink(missing_ok=True)
    np.save(run_dir / ITL_VALUES, gaps.values)
    np.save(run_dir / ITL_BLOCKS, gaps.blocks)
    data = {"version": VERSION, "block_s": block_s, "itl_count": int(gaps.values.size),
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
