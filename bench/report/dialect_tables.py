"""The report's metric-dialect tables (`bench.metrics.dialects`), and `bench report RUN
--as TOOL`'s text: one run's figures as each tool defines them.
Metrics are named through the catalogue; every cell is formatted by `tables.fmt`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bench.metrics.catalogue import E2E, ITL, OUTPUT_TOKENS_PER_S, TPOT, TTFT
from bench.metrics.dialects import DIALECTS, Dialect, DialectFigures, DialectScans
from bench.metrics.distribution import STATISTICS, Distribution
from bench.report.tables import Table, fmt

if TYPE_CHECKING:
    from bench.analysis.results import Run

__all__ = ["definitions_table", "dialect_text", "dialects_table", "run_dialects"]

_CELL_STATS = ("p50", "p99")


def run_dialects(run: Run, dialects: tuple[Dialect, ...] = DIALECTS,
                 token_rate_bins: Sequence[float] = ()) -> list[DialectFigures]:
    """Every dialect's figures for a stored run, from one read of its chunks
    (`metrics.dialects.DialectScans`) that also gives the run's ITL values and the token
    rates of `token_rate_bins` (`Run.read_once`): the rest of a report needs them."""
    stored = run.dialect_figures(dialects)
    if stored is not None:  # as finalize stored them from its read
        run.read_once(token_rate_bins)  # (stored too, for a run finalized so: then nothing is read)
        return stored
    itl_scan = run.new_itl_scan()
    scans = DialectScans(run.requests, dialects, token_scan=itl_scan)
    run.read_once(token_rate_bins, [scans], itl_scan)
    return scans.figures(run.chunk_batches())


def _pair(dist: Distribution | None) -> str:
    if dist is None:
        return "n/a"
    return " / ".join(fmt(dist.stat(stat)) for stat in _CELL_STATS)


def dialects_table(figures: list[DialectFigures]) -> Table:
    """One row per tool: TTFT, ITL, TPOT, E2E (p50 / p99, ms) and output tokens/s, each as
    that tool defines it, all from this run's chunks."""
    stats = " / ".join(_CELL_STATS)
    header = ["tool", *(f"{m.label} {stats}" for m in (TTFT, ITL, TPOT, E2E)), OUTPUT_TOKENS_PER_S.label]
    rows = [[f.dialect.tool, _pair(f.ttft), _pair(f.itl), _pair(f.tpot), _pair(f.e2e), fmt(f.output_tokens_per_s)]
            for f in figures]
    return Table("Metric dialects: this run as each tool would report it (ms; n/a: the tool has no such metric)",
                 header, rows)


def definitions_table(dialects: tuple[Dialect, ...] = DIALECTS) -> Table:
    """How each tool defines the metrics, and where the definition was read."""
    rows = [[d.tool, d.first, d.itl.value, d.tpot.value, d.end.value, d.source] for d in dialects]
    return Table("Metric dialects: definitions",
                 ["tool", f"{TTFT.label}: first chunk of", ITL.label, TPOT.label, f"{E2E.label} ends at", "source"],
                 rows, numeric=False)


def dialect_text(figures: DialectFigures) -> str:
    """`bench report RUN --as TOOL`: the run's figures as the tool defines them, as text."""
    d = figures.dialect
    lines = [f"{d.tool} definitions (read from {d.source})", f"requests counted: {figures.requests}",
             f"{'metric':<10}" + "".join(f"{s:>12}" for s in STATISTICS) + "  definition"]
    for metric, dist, meaning in ((TTFT, figures.ttft, f"first chunk of {d.first}"), (ITL, figures.itl, d.itl.value),
                                  (TPOT, figures.tpot, d.tpot.value), (E2E, figures.e2e, f"ends at {d.end.value}")):
        cells = [fmt(dist.stat(s)) for s in STATISTICS] if dist is not None else ["n/a"] * len(STATISTICS)
        lines.append(f"{metric.heading:<10}" + "".join(f"{c:>12}" for c in cells) + f"  {meaning}")
    lines.append(f"{OUTPUT_TOKENS_PER_S.heading}: {fmt(figures.output_tokens_per_s)}")
    return "\n".join(lines) + "\n"
