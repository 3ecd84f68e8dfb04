"""Reports and plots of stored runs: `bench run` writes them, `bench report` / `bench plot`
rewrite them; the HTML is self-contained; multi-stage runs get the sweep figure."""

from __future__ import annotations

import base64
import csv
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from benchtest import write_scenario
from matplotlib.figure import Figure
from PIL import Image
from test_validity import make_run

import bench
from bench.analysis import summary as aggregate
from bench.commands.cli import main
from bench.report import document as report
from bench.report import figures, plots
from bench.sim import start_sim

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A small run with injected server errors, made by the CLI (which writes the reports)."""
    directory = tmp_path_factory.mktemp("report")
    with start_sim(profile="default", seed=1, faults=["http_500:every=9"]) as sim:
        path = write_scenario(directory, {
            "name": "rep", "seed": 2, "target": {"base_url": sim.base_url},
            "requests": {"synthetic": {"prompt_tokens": 32, "output_tokens": {"dist": "uniform", "min": 8, "max": 24}}},
            "sampling": {"extra_body": {"ignore_eos": True}},
            "load": {"concurrency": 6, "max_requests": 60, "warmup": {"requests": 2}},
        })
        assert main(["run", str(path), "--out", str(directory / "run"), "--quiet"]) == 0
    return directory / "run"


def test_bench_run_writes_the_reports_by_default(run_dir):
    for name in ("report.md", "report.html", "summary.csv", "figures/latency_cdf.png", "figures/timeline.png"):
        assert (run_dir / name).is_file(), name


def test_no_report_flag(tmp_path):
    with start_sim(profile="zero", seed=1) as sim:
        path = write_scenario(tmp_path, {"target": {"base_url": sim.base_url},
                                         "requests": {"synthetic": {"prompt_tokens": 8, "output_tokens": 4}},
                                         "load": {"concurrency": 2, "max_requests": 4}})
        assert main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet", "--no-report"]) == 0
    assert (tmp_path / "run" / "summary.json").is_file()
    assert not (tmp_path / "run" / "report.html").exists()


def test_html_is_self_contained_and_every_image_is_embedded(run_dir, tmp_path):
    assert main(["report", str(run_dir), "--format", "html", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "<link" not in text and "<script" not in text and "@import" not in text
    imgs = re.findall(r"<img[^>]*>", text)
    assert len(imgs) == 3
    for img in imgs:
        data = re.search(r'src="data:image/png;base64,([^"]+)"', img)
        assert data is not None, img
        assert base64.b64decode(data.group(1)).startswith(PNG_MAGIC)
    assert not (tmp_path / "report.md").exists()  # only the asked format


def test_report_contents_agree_with_the_summary(run_dir):
    run = bench.load_run(run_dir)
    md = (run_dir / "report.md").read_text()
    html = (run_dir / "report.html").read_text()
    errors = run.summary.to_json()["requests"]["errors"]
    assert errors.get("http_500", 0) >= 5
    for text in (md, html):
        assert "rep" in text and "sim-small" in text and "completed" in text
        assert "Validity warnings" in text and "short_warmup" in text  # warmup 2 < concurrency 6
        assert "http_500" in text
        for label in ("TTFT", "ITL", "TPOT", "E2E", "Schedule lag"):
            assert label in text
        assert report.fmt(run.summary.to_json()["ttft_ms"]["p50"]) in text
    assert "![latency_cdf](figures/latency_cdf.png)" in md
    rows = list(csv.DictReader(io.StringIO((run_dir / "summary.csv").read_text())))
    value = {(r["scope"], r["metric"], r["statistic"]): r["value"] for r in rows}
    assert float(value[("all", "tpot_ms", "p99")]) == pytest.approx(run.summary.to_json()["tpot_ms"]["p99"])
    assert int(value[("all", "errors", "http_500")]) == errors["http_500"]
    assert float(value[("all", "throughput", "output_tokens_per_s")]) == pytest.approx(
        run.summary.to_json()["throughput"]["output_tokens_per_s"])


def test_bench_plot_writes_png_and_svg_for_one_and_several_runs(run_dir, tmp_path):
    assert main(["plot", str(run_dir), "--out", str(tmp_path / "one"), "--format", "both"]) == 0
    for stem in ("latency_cdf", "percentile_ladder", "timeline"):
        assert (tmp_path / "one" / f"{stem}.png").read_bytes().startswith(PNG_MAGIC)
        assert b"<svg" in (tmp_path / "one" / f"{stem}.svg").read_bytes()[:2000]
    assert main(["plot", str(run_dir), str(run_dir), "--out", str(tmp_path / "two")]) == 0
    assert (tmp_path / "two" / "compare_ladder.png").is_file()


def test_bad_input_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing" in err


def test_ladder_stops_where_the_sample_runs_out():
    fig = Figure()
    ax = fig.subplots()
    plots.plot_ladder(ax, {"small": np.arange(1, 51, dtype=float), "big": np.arange(1, 20001, dtype=float)}, "ttft_ms")
    small, big = ax.get_lines()
    assert small.get_xdata().max() == pytest.approx(50)  # 1/(1-p) <= n
    assert big.get_xdata().max() == pytest.approx(plots.LADDER_MAX_X)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["p50", "p90", "p99", "p99.9", "p99.99"]


def test_multi_stage_run_gets_a_stage_table_and_sweep_figure_with_slo(tmp_path):
    base = make_run(n=600)
    requests = base.requests.copy()
    requests["stage"] = np.repeat(np.arange(3), 200)
    # every stage completes ~10/s; stage 2 is offered 30/s: saturated
    stages = [{"rate": 9.8}, {"rate": 10.0}, {"rate": 30.0}]
    manifest = base.manifest.model_copy(update={
        "stages": stages, "scenario": {**base.manifest.scenario, "slo": {"ttft_ms": 80.0, "percentile": 90}}})
    summary = aggregate.summarize(requests, base.chunks, 10.0)
    run = bench.analysis.results.Run(tmp_path, manifest, requests, base.chunks, summary)
    frame = figures.stage_frame(run)
    assert frame is not None and list(frame["offered_rate"]) == [9.8, 10.0, 30.0]
    assert figures.saturation_row(frame) == 2
    assert figures.slo_limits(manifest.scenario) == {"ttft_ms": (80.0, "p90")}
    figs = figures.run_figures(run)
    assert "sweep" in figs
    slo_lines = [line for ax in figs["sweep"].axes for line in ax.get_lines() if "SLO" in str(line.get_label())]
    assert len(slo_lines) == 1
    paths = report.write_reports(run, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Per stage" in md and "Sweep" in md
    assert any(p.name == "sweep.png" for p in paths)


def test_stage_frame_is_none_for_a_single_stage_run():
    assert figures.stage_frame(make_run(n=50)) is None
    assert figures.slo_limits({}) == {} and figures.slo_limits({"slo": None}) == {}


def test_csv_is_long_format_with_one_value_per_line():
    run = make_run(n=120, errors=3)
    rows = list(csv.reader(io.StringIO(report.render_csv(run.summary))))
    assert rows[0] == ["scope", "metric", "statistic", "value"]
    frame = pd.DataFrame(rows[1:], columns=rows[0])
    assert not frame.duplicated(["scope", "metric", "statistic"]).any()
    assert frame.set_index(["metric", "statistic"]).loc[("errors", "http_500"), "value"] == "3"


def test_slo_and_variant_tables_appear_when_the_run_has_them():
    base = make_run(n=300)
    requests = base.requests.copy()
    requests["variant"] = np.where(np.arange(len(requests)) % 2, "short", "long")
    requests["block"] = np.arange(len(requests)) // 2  # one prompt per block, sent under both variants
    summary = aggregate.summarize(requests, base.chunks, 10.0, {"ttft_ms": 60.0, "tpot_ms": 5.0, "percentile": 90})
    run = bench.analysis.results.Run(base.path, base.manifest, requests, base.chunks, summary)
    tables = {t.title: t for t in report.report_tables(run)}
    slo = tables["SLO (limits at p90)"]
    assert ["ttft_ms", "60.00", "50.00", "yes", "100.0%"] in slo.rows
    assert ["tpot_ms", "5.00", "10.00", "NO", "0.0%"] in slo.rows
    assert [row[0] for row in tables["Per variant (ms)"].rows] == ["long", "short"]
    paired = next(t for title, t in tables.items() if title.startswith("Paired variant comparison"))
    assert {row[0] for row in paired.rows} == {"short vs long"}
    assert all(row[-1] == "not significant" for row in paired.rows if row[1] != "note")  # identical variants
    assert "SLO" not in {t.title[:3] for t in report.report_tables(make_run(n=50))}


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None and not os.environ.get("BENCH_REQUIRE_BROWSER"),
                    reason="Chromium not installed (apt-get install -y chromium); CI sets BENCH_REQUIRE_BROWSER")
def test_headless_chromium_renders_the_report_offline(run_dir, tmp_path):
    shot = tmp_path / "report.png"
    done = subprocess.run([str(REPO / "scripts" / "screenshot_report.sh"), str(run_dir / "report.html"), str(shot)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert shot.read_bytes().startswith(PNG_MAGIC)
    # The figures drew: the page holds many pixels of matplotlib's first colour (tab:blue,
    # #1f77b4), which nothing else on the page uses. A missing image would leave none.
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    blue = (np.abs(pixels - np.array([31, 119, 180])).sum(axis=2) < 40).sum()
    assert blue > 5_000, blue
