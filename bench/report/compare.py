"""`bench compare`: percentiles of several runs side by side, ratios to the first run, and a
seeded bootstrap confidence interval of each difference, so that noise is called noise.

The first run is the baseline. Per metric and statistic, the difference is run - baseline;
"not significant" when its interval contains 0. Samples are resampled in blocks of BLOCK_S
seconds of run time (cluster bootstrap; requests by send time, ITL gaps by arrival time):
concurrent requests share the server's batch and the client's CPU, so one slow step or one
scheduling hiccup moves many samples at once. Treating them as independent would call a
momentary hiccup of either run "significant".

The intervals are simultaneous: FAMILY_CONFIDENCE (95 %) holds for the whole table of one run
against the baseline (Bonferroni over its metric x statistic cells). With 20 cells at 95 %
each, two identical runs would show about one "significant" cell by chance alone.

A difference smaller than MIN_EFFECT of the baseline is reported "not significant (< 5 %)"
even when its interval excludes 0: two runs of one scenario on one shared machine differ by
that much (CPU contention, timer jitter), and the bootstrap, which sees one run of each,
cannot know it. Tighten it with `--min-effect` on a quiet, tuned machine.
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table as RichTable

from bench.analysis import stats
from bench.errors import BenchInputError
from bench.metrics import catalogue
from bench.metrics.catalogue import REASONING_TIME, Metric, by_key
from bench.report import document as report
from bench.report import figures
from bench.report.compare_samples import BLOCK_S, Sample, metric_samples, run_metric_samples

__all__ = [
    "BLOCK_S",
    "FAMILY_CONFIDENCE",
    "METRICS",
    "MIN_EFFECT",
    "N_RESAMPLES",
    "SCENARIO_SECTIONS",
    "SECONDS_FROM_MS",
    "STATISTICS",
    "THROUGHPUT",
    "Comparison",
    "Row",
    "Sample",
    "cell_confidence",
    "compare_runs",
    "console_tables",
    "is_significant",
    "metric_samples",
    "min_samples",
    "render_html",
    "render_markdown",
    "run_metric_samples",
    "scenario_mismatches",
    "table",
    "verdict",
    "write_compare",
]

if TYPE_CHECKING:
    from bench.analysis.results import Run

METRICS: tuple[Metric, ...] = catalogue.compared_metrics()  # per-request, sample by sample (a reasoned comparison adds the reasoning phases)
STATISTICS = ("p50", "p90", "p99", "mean")
THROUGHPUT: tuple[Metric, ...] = catalogue.COMPARED_RUN  # run-level metrics, one value per run
# Scenario sections that must match for a comparison to compare like with like.
SCENARIO_SECTIONS = (("prompts", "requests"), ("load", "load"), ("sampling", "sampling"))
COMPARE_MD, COMPARE_HTML = "compare.md", "compare.html"
MIN_EFFECT = 0.05  # relative to the baseline value
FAMILY_CONFIDENCE = 0.95
min_samples = stats.min_samples  # samples a statistic needs in each run (p99: 100), as the validity checks say
N_RESAMPLES = 2000  # the Bonferroni tails (0.125 % each) need more resamples than a plain 95 % CI


@dataclass(frozen=True)
class Row:
    label: str
    metric: str  # the catalogue key (`Metric.key`); statistic "run" for a run-level metric
    statistic: str
    values: list[float]  # one per run
    diffs: list[stats.DiffCI | None]  # None for the baseline, and where no CI applies


@dataclass(frozen=True)
class Comparison:
    labels: list[str]
    rows: list[Row]
    warnings: list[str]
    seed: int
    n_resamples: int
    min_effect: float = MIN_EFFECT
    n_metrics: int = len(METRICS)  # per-request metrics in the table: the Bonferroni family


def verdict(diff: stats.DiffCI, min_effect: float = MIN_EFFECT) -> str:
    """higher / lower / not significant (CI contains 0, or under min_effect of the baseline) / n/a."""
    need = min_samples(diff.statistic)
    if min(diff.n_a, diff.n_b) < need:
        return f"n/a (n < {need})"  # a p99 of 60 samples is a maximum; no verdict on it
    if not diff.significant:
        return diff.verdict  # "not significant", or "n/a" without an interval
    if np.isfinite(diff.a) and abs(diff.diff) < min_effect * abs(diff.a):
        return f"not significant (< {min_effect:.0%})"
    return diff.verdict


def is_significant(diff: stats.DiffCI | None, min_effect: float = MIN_EFFECT) -> bool:
    return diff is not None and verdict(diff, min_effect) in ("higher", "lower")


def cell_confidence(n_metrics: int = len(METRICS)) -> float:
    """Per-cell confidence giving FAMILY_CONFIDENCE over one run's table (Bonferroni)."""
    return 1.0 - (1.0 - FAMILY_CONFIDENCE) / (n_metrics * len(STATISTICS))


def compare_runs(runs: Sequence[Run], seed: int = 0, n_resamples: int = N_RESAMPLES, min_effect: float = MIN_EFFECT,
                 samples: Sequence[dict[str, Sample]] | None = None) -> Comparison:
    if len(runs) < 2:
        raise BenchInputError("compare: give at least two run directories")
    samples = list(samples) if samples is not None else [run_metric_samples(r) for r in runs]
    base = samples[0]
    rows: list[Row] = []
    reasoned = any(np.isfinite(s[REASONING_TIME.key].values).any() for s in samples if REASONING_TIME.key in s)
    metrics = catalogue.compared_metrics(reasoned)
    for m_index, metric in enumerate(metrics):
        key = metric.key
        points = [stats.estimates(s[key].values, STATISTICS) for s in samples]  # once per run and metric
        per_run: list[dict[str, stats.DiffCI]] = []
        for r_index, other in enumerate(samples[1:], start=1):
            # A distinct, reproducible stream per (metric, run) keeps results independent of ordering.
            per_run.append(stats.bootstrap_diff(
                base[key].values, other[key].values, STATISTICS,
                groups_a=base[key].groups, groups_b=other[key].groups,
                n_resamples=n_resamples, seed=_derive_seed(seed, m_index, r_index),
                confidence=cell_confidence(len(metrics)), known=(points[0], points[r_index])))
        for stat in STATISTICS:
            values = [p.values[stat] for p in points]
            rows.append(Row(metric.heading, key, stat, values, [None, *(d[stat] for d in per_run)]))
    for metric in THROUGHPUT:
        given = [r.summary.throughput.value(metric) for r in runs]
        if metric.token_truth and all(v is None for v in given):
            continue  # no run counted its tokens twice (scenario `tokens:`)
        values = [_number(v) for v in given]
        rows.append(Row(f"{metric.label} (run)", metric.key, "run", values, [None] * len(runs)))
    return Comparison(figures.run_labels(runs), rows, scenario_mismatches(runs), seed, n_resamples,
                      min_effect, len(metrics))


def scenario_mismatches(runs: Sequence[Run]) -> list[str]:
    """One line per way a run's scenario differs from the baseline's (model, prompts, load, sampling)."""
    base = runs[0]
    labels = figures.run_labels(runs)
    out = []
    for name, run in zip(labels[1:], runs[1:], strict=True):
        if run.manifest.model != base.manifest.model:
            out.append(f"{name}: model {run.manifest.model!r} differs from {base.manifest.model!r}")
        for label, key in SCENARIO_SECTIONS:
            mine, theirs = base.manifest.scenario.get(key), run.manifest.scenario.get(key)
            differing = _diff_keys(mine, theirs)
            if differing:
                out.append(f"{name}: {label} ({key}:) differ from {labels[0]}: {differing}")
    return out


# --- rendering --------------------------------------------------------------------------


def table(cmp: Comparison) -> report.Table:
    header = ["metric", "stat", cmp.labels[0]]
    for other in cmp.labels[1:]:
        header += [other, "ratio", f"diff [{FAMILY_CONFIDENCE:.0%} CI]", "verdict"]
    rows = []
    for row in cmp.rows:
        cells = [row.label, row.statistic, report.fmt(row.values[0])]
        for value, diff in zip(row.values[1:], row.diffs[1:], strict=True):
            ratio = value / row.values[0] if row.values[0] and np.isfinite(row.values[0]) else float("nan")
            cells += [report.fmt(value), f"{ratio:.3f}" if np.isfinite(ratio) else "-"]
            if diff is None:
                cells += ["-", "-"]
            else:
                cells += [f"{report.fmt(diff.diff)} [{report.fmt(diff.low)}, {report.fmt(diff.high)}]",
                          verdict(diff, cmp.min_effect)]
        rows.append(cells)
    return report.Table("Comparison (difference = run - first run)", header, rows)


def console_tables(cmp: Comparison, width: int | None = None) -> list[RichTable]:
    """One table per run (B) against the baseline (A), in terms short enough for a terminal.

    `width` (console columns): the ratio column is left out when the table would be wider
    (the caption says so; compare.md and compare.html keep everything). A latency metric
    whose values reach SECONDS_FROM_MS is shown in seconds. Numbers are never cut: their
    columns do not shrink below the widest number.
    """
    out = []
    for k in range(1, len(cmp.labels)):
        cells = _console_cells(cmp, k)
        t = _console_table(cmp, k, cells, None)
        if width is not None and _width(t).maximum > width:
            t = _console_table(cmp, k, cells, width)
            if _width(t).minimum > width:  # the interval wraps at its space, never inside a number
                t = _console_table(cmp, k, cells, width, ci_wraps=True)
        out.append(t)
    return out


SECONDS_FROM_MS = 10_000.0
_CONSOLE_HEADER = ("metric", "stat", "A", "B", "B/A", "B-A", f"{FAMILY_CONFIDENCE:.0%} CI", "verdict")
_RATIO = 4  # column index of B/A, the first left out when narrow


def _console_cells(cmp: Comparison, k: int) -> list[list[str]]:
    groups: dict[tuple[str, bool], list[Row]] = {}
    for row in cmp.rows:
        groups.setdefault((row.metric, row.statistic == "run"), []).append(row)
    out = []
    for (key, whole_run), rows in groups.items():
        # Console labels: the catalogue's short ones (the report's are too long for 80
        # columns); latency metrics get their unit, run-level ones "(run)".
        metric = by_key(key, scope_run=whole_run)
        scale, label = 1.0, f"{metric.console} (run)" if whole_run else metric.console
        if metric.unit == "ms" and not whole_run:
            seconds = _largest(rows, k) >= SECONDS_FROM_MS
            scale, label = (1e-3, f"{label} s") if seconds else (1.0, f"{label} ms")
        for i, row in enumerate(rows):
            base, value, diff = row.values[0] * scale, row.values[k] * scale, row.diffs[k]
            ratio = row.values[k] / row.values[0] if row.values[0] and np.isfinite(row.values[0]) else float("nan")
            cells = [label if i == 0 else "", row.statistic, report.fmt(base), report.fmt(value),
                     f"{ratio:.3f}" if np.isfinite(ratio) else "-"]
            if diff is None:
                cells += ["-", "-", "-"]
            else:
                cells += [_signed(diff.diff * scale), f"[{report.fmt(diff.low * scale)}, {report.fmt(diff.high * scale)}]",
                          verdict(diff, cmp.min_effect)]
            out.append(cells)
    return out


def _console_table(cmp: Comparison, k: int, cells: list[list[str]], narrow: int | None,
                   ci_wraps: bool = False) -> RichTable:
    columns = [c for c in range(len(_CONSOLE_HEADER)) if narrow is None or c != _RATIO]
    caption = f"A: {cmp.labels[0]} (baseline), B: {cmp.labels[k]}."
    if narrow is not None:
        caption += f" B/A left out to fit {narrow} columns; {COMPARE_MD} has every column."
    t = RichTable(title=f"{cmp.labels[k]} vs {cmp.labels[0]} ({FAMILY_CONFIDENCE:.0%} simultaneous bootstrap CI, "
                        f"{cmp.n_resamples} resamples, seed {cmp.seed})", title_justify="left",
                  caption=caption, caption_justify="left")
    for c in columns:
        header = _CONSOLE_HEADER[c]
        if c == 0:
            t.add_column(header, justify="left", no_wrap=True, min_width=max(len(row[0]) for row in cells))
            continue
        if c == len(_CONSOLE_HEADER) - 1:  # verdicts wrap between words
            t.add_column(header, justify="left", overflow="fold")
            continue
        wraps = ci_wraps and c == 6
        widest = max((max(map(len, row[c].split())) if wraps else len(row[c]) for row in cells), default=0)
        t.add_column(header, justify="right", no_wrap=not wraps, overflow="fold", min_width=max(widest, len(header)))
    for row in cells:
        t.add_row(*(_style(row[c]) for c in columns))
    return t


def _largest(rows: list[Row], k: int) -> float:
    values = [v for row in rows for v in (row.values[0], row.values[k])]
    for row in rows:
        diff = row.diffs[k]
        if diff is not None:
            values += [diff.diff, diff.low, diff.high]
    finite = [abs(v) for v in values if np.isfinite(v)]
    return max(finite, default=0.0)


def _signed(value: float) -> str:
    text = report.fmt(value)
    return text if text.startswith("-") or not np.isfinite(value) else f"+{text}"


def _width(renderable: RichTable) -> Measurement:
    """Columns `renderable` takes when nothing limits it (maximum) and at the least (minimum)."""
    console = Console(file=io.StringIO(), width=10_000)
    return Measurement.get(console, console.options, renderable)


def _style(cell: str) -> str:
    if cell in ("higher", "lower"):
        return f"[bold]{cell}[/bold]"
    if cell.startswith("not significant"):
        return f"[dim]{cell}[/dim]"
    return cell


def render_markdown(cmp: Comparison, figure_prefix: str, figure_stems: Sequence[str]) -> str:
    lines = [f"# bench compare: {' vs '.join(cmp.labels)}", ""]
    lines += _method_note(cmp)
    if cmp.warnings:
        lines += ["## Scenario mismatches", "", *(f"- **WARNING**: {w}" for w in cmp.warnings), ""]
    lines += ["## Comparison", "", *report.markdown_table(table(cmp)), ""]
    for stem in figure_stems:
        lines += [f"![{stem}]({figure_prefix}{stem}.png)", ""]
    return "\n".join(lines) + "\n"


def render_html(cmp: Comparison, pngs: dict[str, bytes]) -> str:
    title = f"bench compare: {' vs '.join(cmp.labels)}"
    t = table(cmp)
    classes = [["sig" if c in ("higher", "lower") else "ns" if c.startswith("not significant") else "" for c in row]
               for row in t.rows]
    parts = [report.html_head(title), f"<h1>{html.escape(title)}</h1>",
             "".join(f"<p>{html.escape(line)}</p>" for line in _method_note(cmp) if line)]
    if cmp.warnings:
        items = "".join(f"<li><b>WARNING</b>: {html.escape(w)}</li>" for w in cmp.warnings)
        parts.append(f'<div class="warnings"><h2>Scenario mismatches</h2><ul>{items}</ul></div>')
    parts += ["<h2>Comparison</h2>", report.html_table(t, classes), "<h2>Figures</h2>"]
    parts += [report.html_img(png, stem) for stem, png in pngs.items()]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_compare(cmp: Comparison, runs: Sequence[Run], out_dir: Path) -> list[Path]:
    report.ensure_dir(out_dir)
    pngs = {stem: figures.to_bytes(fig, "png") for stem, fig in figures.compare_figures(runs).items()}
    written = report.write_pngs(pngs, out_dir / report.FIGURES_DIR)
    written.append(report.write_text(out_dir / COMPARE_MD, render_markdown(cmp, f"{report.FIGURES_DIR}/", list(pngs))))
    written.append(report.write_text(out_dir / COMPARE_HTML, render_html(cmp, pngs)))
    return written


def _method_note(cmp: Comparison) -> list[str]:
    return [f"Baseline: {cmp.labels[0]}. Difference = run - baseline, with a seeded percentile-bootstrap "
            f"confidence interval, {FAMILY_CONFIDENCE:.0%} simultaneous over the table (Bonferroni: "
            f"{cell_confidence(cmp.n_metrics):.2%} per cell; {cmp.n_resamples} resamples, seed {cmp.seed}; resampled in "
            f"{BLOCK_S:g} s blocks of run time). \"not significant\": the interval contains 0, or the "
            f"difference is under {cmp.min_effect:.0%} of the baseline (run-to-run noise of one machine).", ""]


def _derive_seed(seed: int, *parts: int) -> int:
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _diff_keys(a: Any, b: Any) -> str:
    """The differing keys of two scenario sections, '' when they agree."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return "" if _canonical(a) == _canonical(b) else f"{_short(a)} vs {_short(b)}"
    # Keys only one side has come from a different bench version (a new field with its default).
    keys = sorted(k for k in set(a) & set(b) if _canonical(a[k]) != _canonical(b[k]))
    return ", ".join(f"{k}: {_short(a.get(k))} vs {_short(b.get(k))}" for k in keys)


def _short(value: Any, limit: int = 60) -> str:
    text = _canonical(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
