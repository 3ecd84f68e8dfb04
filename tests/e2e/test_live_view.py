"""The live view: a panel on a terminal (a pseudo-terminal here), plain lines when stderr is
a pipe, nothing with --quiet; its rolling latencies from hand-built records."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from array import array
from pathlib import Path

import pytest
from benchtest import write_scenario

from bench.records import KIND_CONTENT, KIND_ROLE, ChunkColumns, Progress, RequestRecord
from bench.report.live import LiveStats, panel_text, plain_line

ANSI = re.compile(rb"\x1b\[[0-9;?]*[a-zA-Z]")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Path:
    return write_scenario(tmp_path_factory.mktemp("live"), {
        "name": "live", "seed": 1, "target": {"sim_profile": "default"},
        "requests": {"synthetic": {"prompt_tokens": 16, "output_tokens": 40}},
        "load": {"rate": 12, "arrival": "constant", "duration": 3},
    })


def _bench(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench", "run", *args, "--no-report"]


def test_a_terminal_gets_the_panel(scenario, tmp_path):
    master, slave = pty.openpty()
    proc = subprocess.Popen(_bench(str(scenario), "--out", str(tmp_path / "run")), stdout=slave, stderr=slave,
                            env={**os.environ, "COLUMNS": "120", "TERM": "xterm"}, close_fds=True)
    os.close(slave)
    out = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        out += data
    assert proc.wait(timeout=60) == 0
    text = ANSI.sub(b"", out).decode(errors="replace")
    panels = [line for line in text.splitlines() if line.startswith("last 10 s: TTFT p50 ")]
    assert len(panels) >= 3  # refreshed twice a second through a 3 s run
    assert re.search(r"TTFT p50 \d[\d,.]* p99 \d[\d,.]* ms  ITL p50 \d", text)  # numbers once records finish
    assert "client CPU " in text and "errors: none" in text


def test_a_pipe_gets_plain_lines_and_quiet_gets_nothing(scenario, tmp_path):
    piped = subprocess.run(_bench(str(scenario), "--out", str(tmp_path / "piped")), capture_output=True, timeout=60)
    assert piped.returncode == 0
    lines = [line for line in piped.stderr.decode().splitlines() if line.startswith("progress: ")]
    assert len(lines) >= 2 and lines[-1].startswith("progress: 36/36 done, 0 in flight, 0 errors")
    assert not ANSI.search(piped.stderr)
    quiet = subprocess.run(_bench(str(scenario), "--out", str(tmp_path / "quiet"), "--quiet"), capture_output=True,
                           timeout=60)
    assert quiet.returncode == 0 and b"progress" not in quiet.stderr and b"TTFT p50" not in quiet.stderr


def _record(sent: float, outputs: list[float], status: str = "ok") -> RequestRecord:
    times = [sent + 0.001, *outputs]
    chunks = ChunkColumns(array("d", times), array("b", [KIND_ROLE] + [KIND_CONTENT] * len(outputs)),
                          array("i", [-1] * len(times)), array("i", [0] * len(times)))
    return RequestRecord(0, 0, "measure", "", 0, -1, 0, 0, sent - 0.002, sent, sent, sent, outputs[-1], status,
                         None if status == "ok" else "http_500", None, 200, None, "stop", 1, len(outputs), None,
                         len(outputs), 1, True, False, 5, chunks)


def test_rolling_latencies_come_from_the_finished_records():
    stats = LiveStats()
    stats.observe(_record(1.0, [1.020, 1.030, 1.050]))  # TTFT 20 ms, gaps 10 and 20 ms
    stats.observe(_record(2.0, [2.040, 2.050]))  # TTFT 40 ms, gap 10 ms
    stats.observe(_record(3.0, [3.5], status="error"))  # a failure counts in no latency
    s = stats.snapshot()
    assert s["ttft_p50"] == pytest.approx(30.0) and s["itl_p50"] == pytest.approx(10.0)
    assert s["itl_p99"] == pytest.approx(19.8) and s["lag_p99"] == pytest.approx(2.0)
    progress = Progress(planned=10, done=3, errors=1, error_kinds={"http_500": 1})
    assert "TTFT p50 30.0 p99 39.8 ms" in panel_text(progress, stats, 100.0).plain
    assert "errors: http_500 1" in panel_text(progress, stats, 100.0).plain
    stats.cpu_percent = 97.0
    assert "WARNING: the client is saturated (CPU 97.0 %" in plain_line(progress, stats, 100.0)
