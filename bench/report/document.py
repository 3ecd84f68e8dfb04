"""Run reports: report.md, a self-contained report.html, and summary.csv, from a stored run alone.

Contents are built once as plain tables (`report_tables`) and rendered to each format, so
the three files always agree. The HTML file carries its CSS inline and its figures as
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

from bench.report import figures

from bench.analysis import validity
from bench.errors import BenchInputError
from bench.store import ClientInfo, ClockOffset, CpuUse, LoopLag

if TYPE_CHECKING:
    from bench.analysis.results import Run

FORMATS = ("md", "html", "csv")
REPORT_MD, REPORT_HTML, SUMMARY_CSV = "report.md", "report.html", "summary.csv"
FIGURES_DIR = "figures"
LATENCY_ROWS = (("TTFT", "ttft_ms"), ("ITL", "itl_ms"), ("TPOT", "tpot_ms"), ("E2E", "e2e_ms"),
                ("Schedule lag", "schedule_lag_ms"))
STATS = ("count", "mean", "p50", "p90", "p95", "p99", "p99.9", "max")
FIGURE_TITLES = {"latency_cdf": "Latency CDFs", "percentile_ladder": "Percentile ladder",
                 "timeline": "Timeline", "sweep": "Sweep: throughput and latency per stage"}

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
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    numeric: bool = True  # right-align all but the first column


@dataclass(frozen=True)
class ReportContent:
    title: str
    warnings: list[validity.ValidityWarning]
    tables: list[Table]
    figures: dict[str, bytes] = field(default_factory=dict)  # stem -> PNG
    notes: list[str] = field(default_factory=list)  # what the prompt source skipped or repeated


def fmt(value: Any) -> str:
    """Numbers for humans: 3 significant-ish decimals, thousands separated, '-' for missing."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def report_tables(run: Run) -> list[Table]:
    """Everything tabular in the report, in order."""
    summary = run.summary
    tables = [metadata_table(run), latency_table(summary), throughput_table(summary), errors_table(summary)]
    for optional in (slo_table(summary), stages_table(summary, run.manifest.stages), variants_table(summary),
                     paired_table(summary), client_workers_table(run.manifest.client, run.requests)):
        if optional is not None:
            tables.append(optional)
    return tables


def metadata_table(run: Run) -> Table:
    m = run.manifest
    load = m.scenario.get("load") or {}
    ended = m.ended + (f" ({m.end_reason})" if m.end_reason else "")
    rows = [
        ["scenario", m.name],
        ["scenario file", m.scenario_path or "-"],
        ["model", m.model or "-"],
        ["target", f"{m.target.get('base_url', '-')} ({m.target.get('description', '')})"],
        ["endpoint", str(m.target.get("endpoint", "-"))],
        ["seed", str(m.seed)],
        ["load", _describe_load(load)],
        ["started", m.started_at],
        ["ended at", m.ended_at or "-"],
        ["how it ended", ended],
        ["bench version", m.bench_version],
        ["run directory", str(run.path)],
    ]
    return Table("Run", ["field", "value"], rows, numeric=False)


def latency_table(summary: dict[str, Any], title: str = "Latency (ms, measured requests)") -> Table:
    rows = []
    for label, key in LATENCY_ROWS:
        dist = summary.get(key) or {}
        rows.append([label, *(fmt(dist.get(stat)) for stat in STATS)])
    return Table(title, ["metric", *STATS], rows)


def throughput_table(summary: dict[str, Any]) -> Table:
    thr = summary.get("throughput") or {}
    rate = summary.get("rate") or {}
    req = summary.get("requests") or {}
    offered = rate.get("offered")
    rows = [
        ["requests measured / ok", f"{fmt(req.get('total'))} / {fmt(req.get('ok'))}"],
        ["window (s)", fmt(thr.get("window_s"))],
        ["requests/s", fmt(thr.get("requests_per_s"))],
        ["output tokens/s", fmt(thr.get("output_tokens_per_s"))],
        ["total tokens/s", fmt(thr.get("total_tokens_per_s"))],
        ["offered rate (req/s)", fmt(offered) if offered is not None else "closed loop"],
        ["achieved send rate (req/s)", fmt(rate.get("achieved"))],
        ["peak concurrency", fmt((summary.get("concurrency") or {}).get("peak"))],
    ]
    return Table("Throughput and rate", ["quantity", "value"], rows)


def errors_table(summary: dict[str, Any]) -> Table:
    errors = (summary.get("requests") or {}).get("errors") or {}
    rows = [[kind, fmt(count)] for kind, count in sorted(errors.items())] or [["none", "0"]]
    return Table("Errors by kind", ["kind", "count"], rows)


def client_workers_table(client: ClientInfo, requests: Any = None) -> Table | None:
    """Load per client worker process or Ray actor (`client.workers`): an overloaded
    generator (high CPU, loop lag) shows up here. Worker k of K sent request ids k mod K."""
    workers = client.workers or []
    if not workers:
        return None
    ids = requests["request_id"].to_numpy() % len(workers) if requests is not None and "request_id" in requests \
        else None
    rows = []
    for i, w in enumerate(workers):
        index = w.index if w.index is not None else i
        lag, cpu, clock = w.loop_lag_ms or LoopLag(), w.cpu_percent or CpuUse(), w.clock or ClockOffset()
        offset = (f"{clock.offset_ms:+.3f} ± {clock.uncertainty_ms:.3f}"
                  if clock.offset_ms is not None and clock.uncertainty_ms is not None else "-")
        where = w.host or (f"pid {w.pid}" if w.pid else "-")
        if w.lost:
            where += " (lost)"
        rows.append([str(index), where, fmt(int((ids == index).sum())) if ids is not None else "-",
                     fmt(cpu.mean), fmt(cpu.max), fmt(lag.p99), fmt(lag.max), offset])
    return Table("Client workers (load per process or Ray actor)",
                 ["worker", "host", "requests", "CPU mean %", "CPU max %", "loop lag p99 ms", "loop lag max ms",
                  "clock offset ms"], rows)


def slo_table(summary: dict[str, Any]) -> Table | None:
    """The scenario's SLO, when it has one: limits, values at the percentile, shares, goodput."""
    slo = summary.get("slo")
    if not isinstance(slo, dict) or not slo.get("limits"):
        return None
    pct = slo.get("percentile")
    pname = f"p{pct:g}" if isinstance(pct, (int, float)) else "p?"
    values = slo.get("value_at_percentile") or {}
    shares = slo.get("share_meeting") or {}
    rows = [[metric, fmt(limit), fmt(values.get(metric)),
             "yes" if values.get(metric) is not None and values[metric] <= limit else "NO",
             _share(shares.get(metric))] for metric, limit in slo["limits"].items()]
    rows.append(["all limits", "", "", "yes" if slo.get("met") else "NO", _share(slo.get("share_meeting_all"))])
    rows.append(["goodput", "", "", "", f"{fmt(slo.get('goodput_requests_per_s'))} req/s, "
                                        f"{fmt(slo.get('goodput_output_tokens_per_s'))} tok/s"])
    return Table(f"SLO (limits at {pname})", ["metric", "limit", f"value at {pname}", "met", "share of requests"], rows)


def variants_table(summary: dict[str, Any]) -> Table | None:
    variants = summary.get("variants") or {}
    if not variants:
        return None
    header = ["variant", "requests", "errors", "out tok/req p50", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99",
              "E2E p50", "E2E p99"]
    rows = []
    for name in sorted(variants):
        v = variants[name]
        req = v.get("requests") or {}
        rows.append([name, fmt(req.get("total")), fmt(sum((req.get("errors") or {}).values())),
                     fmt((v.get("output_tokens_per_request") or {}).get("p50")),
                     *(fmt((v.get(m) or {}).get(p)) for m, p in (("ttft_ms", "p50"), ("ttft_ms", "p99"),
                                                                 ("tpot_ms", "p50"), ("tpot_ms", "p99"),
                                                                 ("e2e_ms", "p50"), ("e2e_ms", "p99")))])
    return Table("Per variant (ms)", header, rows)


def paired_table(summary: dict[str, Any]) -> Table | None:
    """The per-prompt paired comparison of variants (summary["paired"], from bench.analysis.paired)."""
    paired = summary.get("paired")
    if not isinstance(paired, dict) or not paired.get("comparisons"):
        return None
    base = paired.get("baseline", "?")
    rows = []
    for name, comp in sorted(paired["comparisons"].items()):
        for metric, by_stat in (comp.get("metrics") or {}).items():
            for stat, ci in by_stat.items():
                rows.append([f"{name} vs {base}", metric, stat, fmt(ci.get("a")), fmt(ci.get("b")),
                             f"{fmt(ci.get('diff'))} [{fmt(ci.get('low'))}, {fmt(ci.get('high'))}]",
                             str(ci.get("verdict", "-"))])
        if comp.get("explanation"):
            rows.append([f"{name} vs {base}", "note", "", "", "", "", str(comp["explanation"])])
    return Table("Paired variant comparison (same prompts; simultaneous bootstrap CIs)",
                 ["variants", "metric", "stat", "baseline", "variant", "diff [CI]", "verdict"], rows)


def _share(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.1%}"


def stages_table(summary: dict[str, Any], declared: Sequence[dict[str, Any]] = ()) -> Table | None:
    """One row per stage; the offered rate comes from the run's stage list when the summary lacks it."""
    stages = summary.get("stages") or {}
    if len(stages) < 2:
        return None
    header = ["stage", "requests", "errors", "offered/s", "sent/s", "done/s", "out tok/s",
              "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "E2E p99"]
    rows = []
    for i, key in enumerate(sorted(stages, key=lambda k: (len(k), k))):
        s = stages[key]
        req, thr, rate = s.get("requests") or {}, s.get("throughput") or {}, s.get("rate") or {}
        info = declared[i] if i < len(declared) and isinstance(declared[i], dict) else {}
        offered = rate.get("offered") if rate.get("offered") is not None else info.get("rate")
        rows.append([key, fmt(req.get("total")), fmt(sum((req.get("errors") or {}).values())),
                     fmt(offered), fmt(rate.get("achieved")), fmt(thr.get("requests_per_s")),
                     fmt(thr.get("output_tokens_per_s")),
                     *(fmt((s.get(m) or {}).get(p)) for m, p in (("ttft_ms", "p50"), ("ttft_ms", "p99"),
                                                                  ("tpot_ms", "p50"), ("tpot_ms", "p99"),
                                                                  ("e2e_ms", "p99")))])
    return Table("Per stage", header, rows)


def build_content(run: Run, with_figures: bool = True) -> ReportContent:
    figs = {}
    if with_figures:
        figs = {stem: figures.to_bytes(fig, "png") for stem, fig in figures.run_figures(run).items()}
    return ReportContent(title=f"bench report: {run.manifest.name}", warnings=validity.check(run),
                         tables=report_tables(run), figures=figs, notes=validity.workload_notes(run.manifest))


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


def render_csv(summary: dict[str, Any]) -> str:
    """Long format, one value per line: `scope, metric, statistic, value` (scope: all or stage N)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["scope", "metric", "statistic", "value"])
    _csv_scope(writer, "all", summary)
    for key, stage in sorted((summary.get("stages") or {}).items(), key=lambda kv: (len(kv[0]), kv[0])):
        _csv_scope(writer, f"stage {key}", stage)
    return buf.getvalue()


def _csv_scope(writer: Any, scope: str, summary: dict[str, Any]) -> None:
    for _label, key in LATENCY_ROWS:
        for stat in STATS:
            writer.writerow([scope, key, stat, _csv_value((summary.get(key) or {}).get(stat))])
    for section in ("throughput", "rate", "concurrency"):
        for stat, value in (summary.get(section) or {}).items():
            writer.writerow([scope, section, stat, _csv_value(value)])
    req = summary.get("requests") or {}
    writer.writerow([scope, "requests", "total", _csv_value(req.get("total"))])
    writer.writerow([scope, "requests", "ok", _csv_value(req.get("ok"))])
    for kind, count in sorted((req.get("errors") or {}).items()):
        writer.writerow([scope, "errors", kind, count])


def _csv_value(value: Any) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def _describe_load(load: dict[str, Any]) -> str:
    parts = []
    if load.get("rate") is not None:
        parts.append(f"open loop, {load['rate']:g} req/s {load.get('arrival', '')}".rstrip())
    if load.get("concurrency") is not None:
        parts.append(f"closed loop, concurrency {load['concurrency']}")
    for key in ("max_concurrency", "duration", "max_requests"):
        if load.get(key) is not None:
            parts.append(f"{key} {load[key]}")
    warm = load.get("warmup") or {}
    if warm.get("requests") or warm.get("seconds"):
        parts.append(f"warmup {warm.get('requests') or 0} requests / {warm.get('seconds') or 0:g} s")
    return ", ".join(parts) or "-"


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
