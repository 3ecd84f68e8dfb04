"""A server-config sweep's report: the comparison table, the best configuration under the
SLO, the configurations that failed, and the Pareto plot; rendered from the stored sweep
(configs.json and each configuration's run directory) alone, to the console, report.md,
report.html, configs.csv and pareto.png."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table as RichTable

from bench.analysis.configs import CONFIG, FRONT_LATENCY, PERCENTILE, BestConfig, best_config, config_table
from bench.analysis.results import Run, load_run
from bench.analysis.validity import check
from bench.errors import ValidityWarning
from bench.metrics.catalogue import OUTPUT_TOKENS_PER_S, REQUESTS_PER_S, Metric
from bench.report.document import (
    REPORT_HTML,
    REPORT_MD,
    ReportContent,
    Table,
    fmt,
    render_html,
    render_markdown,
    write_text,
)
from bench.report.figures import new_figure, slo_limits, to_bytes
from bench.store.config_sweep import ConfigSweep, read_config_sweep

__all__ = ["CONFIGS_CSV", "PARETO_PNG", "ConfigReport", "load_config_report", "pareto_figure",
           "print_config_report", "write_config_reports"]

CONFIGS_CSV, PARETO_PNG = "configs.csv", "pareto.png"
_ERROR_LINES = 3  # of a failed start's log, in the report (the whole log is beside it)
_LAUNCH_FAILURE = re.compile(r"' ((?:exited with code|not ready after) .*)$")


@dataclass(frozen=True)
class ConfigReport:
    sweep: ConfigSweep
    path: Path
    table: pd.DataFrame  # analysis.configs.config_table
    best: BestConfig | None
    slo: dict[str, tuple[float, str]]  # SLO metric key -> (limit, "pNN")
    warnings: list[ValidityWarning]  # each configuration's run's, its name first


def load_config_report(path: Path) -> ConfigReport:
    """The sweep at `path`, from configs.json and the run directories it lists."""
    sweep = read_config_sweep(path)
    runs: dict[str, Run] = {entry.name: load_run(path / entry.run) for entry in sweep.configs
                            if entry.run is not None and (path / entry.run / "run.json").is_file()}
    table = config_table(runs)
    first = next(iter(runs.values()), None)
    slo = slo_limits(first.manifest.scenario) if first is not None else {}
    warnings = [ValidityWarning(w.code, f"{name}: {w.message}") for name, run in runs.items() for w in check(run)]
    return ConfigReport(sweep, path, table, best_config(table), slo, warnings)


def _table(report: ConfigReport) -> Table:
    header = ["config", "load", "req/s", "output tok/s", *(f"{m.label} {PERCENTILE} {m.unit}" for m in FRONT_LATENCY),
              "SLO", "note"]
    rows = []
    for row in report.table.to_dict("records"):
        slo = "-" if row["slo_met"] is None else ("met" if row["slo_met"] else "NOT met")
        front = [m.label for m in FRONT_LATENCY if row[f"pareto_{m.key}"]]
        note = "SATURATED" if row["saturated"] else (f"Pareto ({', '.join(front)})" if front else "")
        if report.best is not None and (row[CONFIG], row["stage"]) == (report.best.config, report.best.stage):
            note = "BEST; " + note if note else "BEST"
        rows.append([str(row[CONFIG]), str(row["load"]), fmt(row[REQUESTS_PER_S.key]),
                     fmt(row[OUTPUT_TOKENS_PER_S.key]),
                     *(fmt(row[f"{m.key}.{PERCENTILE}"]) for m in FRONT_LATENCY), slo, note])
    return Table("configurations", header, rows)


def _status_table(report: ConfigReport) -> Table:
    rows = [[e.name, " ".join(f"{k}={v}" for k, v in e.params.items()) or "-", e.status,
             _excerpt(e.error) if e.error else "-", e.server_log or "-"] for e in report.sweep.configs]
    return Table("servers", ["config", "parameters", "status", "error", "log"], rows, numeric=False)


def _excerpt(error: str) -> str:
    """What went wrong and the log's last lines, without the command (the table has it)."""
    first, *log = error.splitlines()
    what = _LAUNCH_FAILURE.search(first)
    lines = [line for line in log if line.strip() and not line.startswith(("---", "# bench launch"))]
    return " / ".join([what.group(1) if what else first, *lines[-_ERROR_LINES:]])


def _best_line(report: ConfigReport) -> str:
    best = report.best
    if best is None:
        return "best configuration: none (no unsaturated load point met the SLO)"
    return (f"best configuration: {best.config} ({fmt(best.output_tokens_per_s)} output tok/s at stage "
            f"{best.stage}; {best.reason})")


def write_config_reports(report: ConfigReport) -> list[Path]:
    """report.md, report.html, configs.csv and pareto.png in the sweep directory."""
    png = to_bytes(pareto_figure(report))
    content = ReportContent(f"Server-config sweep: {report.sweep.name}", report.warnings, [_table(report), _status_table(report)],
                            {"pareto": png}, [_best_line(report), f"server command: {report.sweep.serve_template}"])
    out = report.path
    (out / PARETO_PNG).write_bytes(png)
    report.table.to_csv(out / CONFIGS_CSV, index=False)
    paths = [write_text(out / REPORT_MD, render_markdown(content, "")), write_text(out / REPORT_HTML,
                                                                                   render_html(content))]
    return [*paths, out / CONFIGS_CSV, out / PARETO_PNG]


def pareto_figure(report: ConfigReport) -> Figure:
    """p99 TTFT and p99 TPOT against output tokens/s, one series per configuration; the
    Pareto front ringed, the best configuration starred, each SLO limit a dashed line."""
    fig = new_figure(11, 5.6)
    legend: dict[str, Any] = {}
    for ax, metric in zip(fig.subplots(1, len(FRONT_LATENCY)), FRONT_LATENCY, strict=True):
        _pareto_axes(ax, report, metric)
        handles, labels = ax.get_legend_handles_labels()
        legend.update(zip(labels, handles, strict=True))
    # One legend below the panels: inside an axes it can hide the very points it names.
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncols=min(4, len(legend)),
               fontsize="small")
    fig.suptitle(f"Configurations: output tokens/s against {PERCENTILE} latency ({report.sweep.name})")
    return fig


def _pareto_axes(ax: Axes, report: ConfigReport, metric: Metric) -> None:
    table, column = report.table, f"{metric.key}.{PERCENTILE}"
    for name, rows in table.groupby(CONFIG, sort=False):
        rows = rows.sort_values(OUTPUT_TOKENS_PER_S.key)
        ax.plot(rows[OUTPUT_TOKENS_PER_S.key], rows[column], marker="o", label=str(name))
    front = table[table[f"pareto_{metric.key}"].astype(bool)].sort_values(OUTPUT_TOKENS_PER_S.key)
    ax.plot(front[OUTPUT_TOKENS_PER_S.key], front[column], linestyle="none", marker="o", markersize=14,
            markerfacecolor="none", markeredgecolor="black", label="Pareto front")
    if report.best is not None:
        best = table[(table[CONFIG] == report.best.config) & (table["stage"] == report.best.stage)]
        ax.plot(best[OUTPUT_TOKENS_PER_S.key], best[column], linestyle="none", marker="*", markersize=16,
                color="gold", markeredgecolor="black", label=f"best: {report.best.config}")
    values = table[column].to_numpy(dtype="float64")
    if metric.key in report.slo:
        limit, pname = report.slo[metric.key]
        ax.axhline(limit, color="tab:red", linestyle="--", label=f"SLO {metric.label} {pname} <= {limit:g}")
        values = np.append(values, limit)
    if np.isfinite(values).any():  # every point and the limit inside the axes, from zero
        ax.set_ylim(bottom=0, top=float(np.nanmax(values)) * 1.1)
    ax.set_xlabel("output tokens/s")
    ax.set_ylabel(f"{metric.label} {PERCENTILE} ({metric.unit})")
    ax.grid(True, alpha=0.3)


def print_config_report(report: ConfigReport) -> None:
    console = Console()
    for table in (_table(report), _status_table(report)):
        rich = RichTable(title=table.title, title_justify="left")
        for i, head in enumerate(table.header):
            rich.add_column(head, justify="right" if table.numeric and i > 0 else "left", overflow="fold")
        for row in table.rows:
            rich.add_row(*row)
        console.print(rich)
    for warning in report.warnings:
        console.print(f"WARNING: {warning.message}", markup=False, highlight=False)
    console.print(_best_line(report), markup=False, highlight=False)
    console.print(f"sweep directory: {report.path}", markup=False, highlight=False)

