"""The HTML of `bench compare`, `bench sweep` and a server-config sweep, opened in headless
Chromium with the network cut off: each renders offline and its figures draw. (`bench run`'s
report has its own test in test_report.py.) CI installs Chromium and sets
BENCH_REQUIRE_BROWSER, so there these tests run, never skip."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from bench.commands.cli import main
from bench.sim import start_sim

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    shutil.which("chromium") is None and not os.environ.get("BENCH_REQUIRE_BROWSER"),
    reason="Chromium not installed (apt-get install -y chromium); CI sets BENCH_REQUIRE_BROWSER")]


def coloured_pixels(html: Path, shot: Path) -> int:
    """Pixels of strong colour in a full-page screenshot: the figures' lines and markers (the
    page's own text, tables and borders are black, grey or pale)."""
    done = subprocess.run([str(REPO / "scripts" / "screenshot_report.sh"), str(html), str(shot)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert shot.read_bytes().startswith(PNG_MAGIC)
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    return int(((pixels.max(axis=2) - pixels.min(axis=2)) > 90).sum())


def _scenario(directory: Path, load: dict, target: dict) -> Path:
    path = directory / "s.yaml"
    path.write_text(yaml.safe_dump({
        "name": "browser", "target": target, "requests": {"synthetic": {"prompt_tokens": 32, "output_tokens": 16}},
        "sampling": {"extra_body": {"ignore_eos": True}}, "load": load, "slo": {"ttft_ms": 500}}))
    return path


def test_a_page_whose_image_is_missing_has_no_figure_pixels(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><h1>report</h1><table><tr><td>1</td></tr></table>'
                    '<img alt="x" src="data:image/png;base64,AAAA"></body></html>')
    # The control: ~30 pixels (the broken-image icon); the pages below measured 7,000-17,000.
    assert coloured_pixels(page, tmp_path / "broken.png") < 200


def test_the_compare_page_renders_offline(tmp_path):
    with start_sim(profile="default", seed=1) as sim:
        path = _scenario(tmp_path, {"concurrency": 4, "duration": 2}, {"base_url": sim.base_url})
        for name in ("a", "b"):
            assert main(["run", str(path), "--out", str(tmp_path / name), "--quiet", "--no-report"]) == 0
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp")]) == 0
    assert coloured_pixels(tmp_path / "cmp" / "compare.html", tmp_path / "cmp.png") > 5_000


def test_the_sweep_page_renders_offline(tmp_path):
    with start_sim(profile="default", seed=2) as sim:
        path = _scenario(tmp_path, {"rate": 1, "duration": 1}, {"base_url": sim.base_url})
        assert main(["sweep", str(path), "--rates", "4,8", "--stage-duration", "1.5", "--out", str(tmp_path / "sw"),
                     "--quiet"]) == 0
    html = (tmp_path / "sw" / "report.html").read_text()
    assert "Sweep: throughput and latency per stage" in html
    assert coloured_pixels(tmp_path / "sw" / "report.html", tmp_path / "sw.png") > 5_000


def test_the_config_sweep_page_renders_offline(tmp_path):
    path = _scenario(tmp_path, {"concurrency": 4, "duration": 1.5}, {})
    grid = tmp_path / "grid.yaml"
    grid.write_text("grid: {max_num_seqs: [2, 8]}\n")
    assert main(["sweep", str(path), "--serve-params", str(grid), "--out", str(tmp_path / "cs"), "--quiet"]) == 0
    assert coloured_pixels(tmp_path / "cs" / "report.html", tmp_path / "cs.png") > 2_000
