"""Run reports: report.md, a self-contained report.html, and summary.csv, from a stored run alone.

Contents are built once as plain tables (`bench.report.tables.report_tables`) and rendered
to each format here, so the three files always agree. The HTML file carries its CSS inline and its figures as
base64 data URIs: it opens anywhere, offline, attached to a ticket.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.analysis import validity
from bench.analysis.precision import PERCENTILES
from bench.analysis.steady import steady_bin_s, steady_state
from bench.analysis.summary_model import Summary
from bench.errors import BenchInputError
from bench.metrics.catalogue import FROM_SCHEDULE, REASONING, TOKEN_TRUTH, Metric
from bench.report import figures
from bench.report.dialect_tables import definitions_table, dialects_table, run_dialects
from bench.report.steady_table import steady_table
from bench.report.tables import LATENCY_ROWS, STATS, Table, client_workers_table, fmt, report_tables

if TYPE_CHECKING:
    from bench.analysis.results import Run

# Table, fmt, report_tables and client_workers_table are re-exported: the tables' public home
# was this module, and compare renders its table with this module's renderers.
__all__ = ["FIGURES_DIR", "FORMATS", "REPORT_HTML", "REPORT_MD", "SUMMARY_CSV", "ReportContent", "Table",
           "build_content", "client_workers_table", "ensure_dir", "fmt", "html_head", "html_img", "html_table",
           "markdown_table", "parse_formats", "render_csv", "render_html", "render_markdown", "report_tables",
           "write_pngs", "write_reports", "write_text"]

FORMATS = ("md", "html", "csv")
REPORT_MD, REPORT_HTML, SUMMARY_CSV = "report.md", "report.html", "summary.csv"
FIGURES_DIR = "figures"
FIGURE_TITLES = {"latency_cdf": "Latency CDFs", "percentile_ladder": "Percentile ladder",
                 "timeline": "Timeline", "sweep": "Sweep: throughput and latency per stage",
                 "pareto": "Configurations: throughput against tail latency (Pareto front ringed)"}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1150px;
color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .6em}
td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}
.warnings{background:#fff4ce;border:2px solid #e0a800;padding:.6em 1em;border-radius:4px}
.warnings li{margin:.2em 0}.ok{background:#e6f4ea;border:1px solid #34a853;padding:.5em 1em;border-radius:4px}
img{max-width:100%;border:1px solid #eee}.sig{font-weight:bold}.ns{color:#777}
"""


@dataclass(frozen=True)
class ReportContent:
    title: str
    warnings: list[validity.ValidityWarning]
    tables: list[Table]
    figures: dict[str, bytes] = field(default_factory=dict)  # stem -> PNG
    notes: list[str] = field(default_factory=list)  # what the prompt source skipped or repeated


def build_content(run: Run, with_figures: bool = True) -> ReportContent:
    # One read of the chunks first, for all that needs them: the dialect tables, the ITL
    # gaps of the figures, the token rates of the timeline (1 s bins) and of the steady state.
    steady_bin = steady_bin_s(run.requests)
    dialects = run_dialects(run, token_rate_bins=[1.0, *([steady_bin] if steady_bin is not None else [])])
    figs = {}
    if with_figures:
        figs = {stem: figures.to_bytes(fig, "png") for stem, fig in figures.run_figures(run).items()}
    steady = steady_table(steady_state(run), run.summary)
    tables = [*report_tables(run), *([steady] if steady is not None else []), dialects_table(dialects),
              definitions_table()]
    return ReportContent(title=f"bench report: {run.manifest.name}", warnings=validity.check(run),
                         tables=tables, figures=figs, notes=validity.workload_notes(run.manifest))


def write_reports(run: Run, out_dir: Path | None = None, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write the chosen formats into out_dir (default: the run directory); return the paths."""
    for fmt_name in formats:
        if fmt_name not in FORMATS:
            raise BenchInputError(f"--format: {fmt_name!r} is not one of md, html, csv, all")
    out = Path(out_dir) if out_dir is not None else run.path
    ensure_dir(out)
    content = build_content(run, with_figures=bool({"md", "html"} & set(formats)))
    written: list[Path] = []
    if "md" in formats:
        written += write_pngs(content.figures, out / FIGURES_DIR)
        written.append(write_text(out / REPORT_MD, render_markdown(content, f"{FIGURES_DIR}/")))
    if "html" in formats:
        written.append(write_text(out / REPORT_HTML, render_html(content)))
    if "csv" in formats:
        written.append(write_text(out / SUMMARY_CSV, render_csv(run.summary)))
    return written


def parse_formats(choice: str) -> tuple[str, ...]:
    if choice == "all":
        return FORMATS
    if choice not in FORMATS:
        raise BenchInputError(f"--format: {choice!r} is not one of md, html, csv, all")
    return (choice,)


# --- renderers --------------------------------------------------------------------------


def render_markdown(content: ReportContent, figure_prefix: str) -> str:
    lines = [f"# {content.title}", ""]
    lines += markdown_warnings(content.warnings)
    lines += [*(f"- note: {note}" for note in content.notes), ""] if content.notes else []
    for table in content.tables:
        lines += [f"## {table.title}", "", *markdown_table(table), ""]
    if content.figures:
        lines += ["## Figures", ""]
        for stem in content.figures:
            lines += [f"### {FIGURE_TITLES.get(stem, stem)}", "", f"![{stem}]({figure_prefix}{stem}.png)", ""]
    return "\n".join(lines) + "\n"


def markdown_warnings(warnings: Sequence[validity.ValidityWarning]) -> list[str]:
    if not warnings:
        return ["**Validity:** no warnings.", ""]
    return ["## Validity warnings", "", *(f"- **WARNING** ({w.code}): {w.message}" for w in warnings), ""]


def markdown_table(table: Table) -> list[str]:
    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = ["---"] + [("---:" if table.numeric else "---")] * (len(table.header) - 1)
    return [row(table.header), "| " + " | ".join(align) + " |", *(row(r) for r in table.rows)]


def render_html(content: ReportContent) -> str:
    parts = [html_head(content.title), f"<h1>{html.escape(content.title)}</h1>", html_warnings(content.warnings)]
    if content.notes:
        parts.append("<ul>" + "".join(f"<li>note: {html.escape(note)}</li>" for note in content.notes) + "</ul>")
    for table in content.tables:
        parts.append(f"<h2>{html.escape(table.title)}</h2>")
        parts.append(html_table(table))
    if content.figures:
        parts.append("<h2>Figures</h2>")
        for stem, png in content.figures.items():
            parts.append(f"<h3>{html.escape(FIGURE_TITLES.get(stem, stem))}</h3>")
            parts.append(html_img(png, stem))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def html_head(title: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>")


def html_warnings(warnings: Sequence[validity.ValidityWarning]) -> str:
    if not warnings:
        return '<p class="ok">Validity: no warnings.</p>'
    items = "".join(f"<li><b>WARNING</b> ({html.escape(w.code)}): {html.escape(w.message)}</li>" for w in warnings)
    return f'<div class="warnings"><h2>Validity warnings</h2><ul>{items}</ul></div>'


def html_table(table: Table, cell_classes: Sequence[Sequence[str]] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = []
    for r, row in enumerate(table.rows):
        cells = []
        for c, value in enumerate(row):
            classes = []
            if table.numeric and c > 0:
                classes.append("num")
            if cell_classes is not None and cell_classes[r][c]:
                classes.append(cell_classes[r][c])
            attr = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{attr}>{html.escape(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def html_img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def render_csv(summary: Summary) -> str:
    """Long format, one value per line: `scope, metric, statistic, value` (scope: all or stage N);
    a percentile's confidence interval as statistics `p99_low` and `p99_high`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["scope", "metric", "statistic", "value"])
    _csv_scope(writer, "all", summary)
    for key, stage in sorted(summary.stages.items(), key=lambda kv: (len(kv[0]), kv[0])):
        _csv_scope(writer, f"stage {key}", stage)
    return buf.getvalue()


def _csv_scope(writer: Any, scope: str, summary: Summary) -> None:
    for metric in (*LATENCY_ROWS, *REASONING, *FROM_SCHEDULE, *(m for m in TOKEN_TRUTH if m.summarised)):
        dist = summary.metric(metric)
        for stat in STATS:
            writer.writerow([scope, metric.summary_key, stat, _csv_value(dist.stat(stat))])
        _csv_intervals(writer, scope, summary, metric)
    for section, values in (("throughput", summary.throughput.to_json()), ("rate", summary.rate.to_json()),
                            ("concurrency", summary.concurrency.to_json())):
        for stat, value in values.items():
            writer.writerow([scope, section, stat, _csv_value(value)])
    req = summary.requests
    writer.writerow([scope, "requests", "total", _csv_value(req.total)])
    writer.writerow([scope, "requests", "ok", _csv_value(req.ok)])
    for kind, count in sorted(req.errors.items()):
        writer.writerow([scope, "errors", kind, count])


def _csv_intervals(writer: Any, scope: str, summary: Summary, metric: Metric) -> None:
    """`p99_low`, `p99_high`: the percentile's confidence interval (summary.json `precision`)."""
    if summary.precision is None:
        return
    for stat in PERCENTILES:
        ci = summary.precision.interval(metric, stat)
        if ci is not None:
            writer.writerow([scope, metric.summary_key, f"{stat}_low", _csv_value(ci[0])])
            writer.writerow([scope, metric.summary_key, f"{stat}_high", _csv_value(ci[1])])


def _csv_value(value: Any) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def write_pngs(pngs: dict[str, bytes], directory: Path) -> list[Path]:
    ensure_dir(directory)
    return [_write_bytes(directory / f"{stem}.png", png) for stem, png in pngs.items()]


def ensure_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchInputError(f"{directory}: cannot create output directory: {exc.strerror or exc}") from None


def write_text(path: Path, text: str) -> Path:
    return _write_bytes(path, text.encode("utf-8"))


def _write_bytes(path: Path, data: bytes) -> Path:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise BenchInputError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return path
