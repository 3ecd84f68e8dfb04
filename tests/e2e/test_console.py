"""Console output fits the terminal without cutting a number: the summary table at 80 and at
200 columns, the sweep's stage table, and the quickstart's whole output at 80 columns."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from bench.analysis.summary_model import Concurrency, Rate, RequestCounts, Summary, Throughput
from bench.commands.cli import main
from bench.metrics.distribution import Distribution
from bench.report.console import STATS, stages_table, summary_lines, summary_table

REPO = Path(__file__).resolve().parents[2]
KEYS = {"TTFT": "ttft_ms", "ITL": "itl_ms", "TPOT": "tpot_ms", "E2E": "e2e_ms", "Sched lag": "schedule_lag_ms"}


def _dist(count: int, *values: float) -> dict[str, float | int]:
    return {"count": count, **dict(zip(STATS, values, strict=True))}


# TTFT as on a saturated llama.cpp (p90 106,1xx ms), E2E up to 10^6 ms, ITL small with one
# huge stall, a negative schedule lag, counts in the millions.
SUMMARY = {
    "ttft_ms": _dist(115, 61_234.5, 58_000.25, 106_123.4, 110_456.7, 118_999.9, 119_876.5, 120_001.2),
    "itl_ms": _dist(1_234_567, 14.56, 12.34, 19.87, 25.5, 80.25, 300.75, 999_999.0),
    "tpot_ms": _dist(53, 15.25, 14.5, 18.75, 20.0, 33.33, 44.44, 55.55),
    "e2e_ms": _dist(53, 456_789.0, 400_000.0, 800_000.0, 900_000.0, 990_000.0, 999_000.0, 1_000_000.0),
    "schedule_lag_ms": _dist(115, -0.09, -0.46, 0.25, 0.5, 1.25, 2.5, 3.75),
}


def _render(width: int) -> str:
    out = StringIO()
    console = Console(file=out, width=width)
    summary = Summary({key: Distribution.from_json(dist) for key, dist in SUMMARY.items()}, RequestCounts(0, 0, {}),
                      Throughput(None, None, None, None), Rate(None, None), Concurrency(0))
    console.print(summary_table(summary, "run-20261130-000000: gemma-3-270m (completed)", console.width))
    return out.getvalue()


def _cells(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """Header cells and each metric row's cells, read back from the rendered box table."""
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("┃"))
    rows = {}
    for line in lines:
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip("│").split("│")]
            rows[cells[0]] = cells
    return [c.strip() for c in header.strip("┃").split("┃")], rows


def _check_numbers(text: str) -> list[str]:
    """Every shown number, read back, is the summary's value to its shown precision."""
    header, rows = _cells(text)
    assert len(rows) == len(KEYS)
    unit_all = re.fullmatch(r"metric(?: \((ms|s)\))?", header[0]).group(1)
    for label, cells in rows.items():
        match = re.fullmatch(r"(.+?)(?: \((ms|s)\))?", label)
        name, unit = match.group(1), match.group(2) or unit_all
        dist = SUMMARY[KEYS[name]]
        assert cells[1] == str(dist["count"])
        for stat, cell in zip(header[2:], cells[2:], strict=True):
            assert re.fullmatch(r"-?[\d,]+(\.\d+)?", cell), (label, stat, cell)  # whole, not cut
            decimals = len(cell.split(".")[1]) if "." in cell else 0
            scale = 1e3 if unit == "s" else 1.0
            assert float(cell.replace(",", "")) * scale == pytest.approx(
                dist[stat], abs=0.51 * 10 ** -decimals * scale), (label, stat, cell)
    return header[2:]


def test_summary_at_80_columns_keeps_every_number_whole():
    text = _render(80)
    assert "…" not in text
    assert all(len(line) <= 80 for line in text.splitlines())
    shown = _check_numbers(text)
    assert {"p50", "p99", "max"} <= set(shown) and "p99.9" not in shown
    assert "p99.9 left out to fit 80 columns" in " ".join(text.split())
    _, rows = _cells(text)
    assert "TTFT (s)" in rows and "ITL (s)" in rows and "TPOT (ms)" in rows and "Sched lag (ms)" in rows
    assert "106.1" in rows["TTFT (s)"]  # p90 of 106,123.4 ms


def test_summary_at_200_columns_is_the_full_table():
    text = _render(200)
    assert "…" not in text and "left out" not in text
    assert _check_numbers(text) == list(STATS)


def test_summary_narrower_still_drops_statistics_by_priority():
    text = _render(62)
    assert "…" not in text
    shown = _check_numbers(text)
    assert shown == ["p50", "p90", "p99", "max"]  # p99.9, mean, p95 dropped first, in that order
    assert all(len(line) <= 62 for line in text.splitlines())


def test_summary_too_narrow_for_a_table_is_a_line_per_metric():
    text = _render(40)
    assert "…" not in text and all(len(line) <= 40 for line in text.splitlines())
    flat = " ".join(text.split())
    assert "TTFT (s): n 115, p50 58.0, p99 119.0, max 120.0" in flat
    assert "E2E (s): n 53, p50 400.0, p99 990.0, max 1,000" in flat


def test_stage_table_at_80_columns_keeps_numbers_whole():
    stages = [{"index": i, "rate": rate, "achieved_requests_per_s": rate * 0.97, "output_tokens_per_s": rate * 1234.5,
               "ttft_p99_ms": 106_123.4 * i, "slo_met": i < 2, "saturated": i == 3, "knee": i == 2}
              for i, rate in enumerate([1.5, 3.0, 6.0, 12.0])]
    out = StringIO()
    Console(file=out, width=80).print(stages_table(stages))
    text = out.getvalue()
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines())
    for number in ("106,123", "212,247", "318,370", "14,814", "11.64"):
        assert number in text


def test_quickstart_output_at_80_columns_has_no_ellipsis(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    run_dir = tmp_path / "run"
    code = main(["run", str(REPO / "scenarios" / "quickstart.yaml"), "--duration", "3", "--out", str(run_dir),
                 "--no-report"])
    assert code == 0
    assert main(["summary", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("metric (ms)") + printed.count("metric (s)") + printed.count("┃ metric ") >= 2
    assert "…" not in printed
    for line in printed.splitlines():
        assert len(line) <= 80 or line.startswith("run directory:") or " " not in line.strip(), line


def test_throughput_and_send_rate_say_what_they_measure():
    # 30 ok requests over 12 s (first send to last end); 32 sends over 10 s (first to last send):
    # 2.5 req/s and 3.1 req/s are both right, and each line says which it is.
    summary = Summary({key: Distribution.from_json(dist) for key, dist in SUMMARY.items()},
                      RequestCounts(32, 30, {"http_500": 2}), Throughput(12.0, 2.5, 250.0, 1000.0),
                      Rate(3.2, 3.1), Concurrency(7))
    lines = summary_lines(summary)
    throughput = next(i for i, line in enumerate(lines) if line.startswith("throughput: 2.50 req/s"))
    assert lines[throughput + 1].strip() == "(ok requests over 12.00 s, first send to last end)"
    assert any(line.startswith("send rate: offered 3.20, achieved 3.10 req/s (first to last send)")
               for line in lines)
    assert all(len(line) <= 80 for line in lines)
