"""notebooks/analysis.ipynb executes, top to bottom, on two small runs made against the simulator,
and shows the metrics beyond the latency table with numbers: reasoning phases, the prefix-cache
hit share, token truth, latency from the scheduled send, percentile intervals, the steady-state
window and the metric dialects."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
from benchtest import run_in_process
from nbclient import NotebookClient

from bench.sim import start_sim

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "analysis.ipynb"
# Reasoning, a prefix cache and a usage one token short of the truth: every section has numbers.
PROFILE = {"models": ["sim-nb"], "reasoning_tokens": 3, "prefix_cache": True, "prefix_block_tokens": 16,
           "decode_ms_base": 2.0, "decode_ms_per_seq": 0.05, "prefill_ms_per_token": 0.002,
           "usage_completion_offset": -1}
# The sections and the start of their titles (the report's tables'), in the notebook's order.
SECTIONS = ("Reasoning phases", "prefix-cache hit share", "Token counts", "Open loop: latency from the scheduled send",
            "Precision:", "Steady state", "Metric dialects")


def _scenario(name: str) -> dict:
    return {
        "name": name, "seed": 3, "tokens": {"server_tokenize": True},
        "requests": {"synthetic": {"prompt_tokens": 16, "output_tokens": {"dist": "uniform", "min": 6, "max": 16}},
                     "shared_prefix": {"tokens": 64, "groups": 2}},
        "sampling": {"extra_body": {"ignore_eos": True}},
        # open loop, and enough requests (>= 100 counted) for a steady-state window
        "load": {"rate": 60, "arrival": "constant", "max_requests": 124, "warmup": {"requests": 4}},
    }


def _texts(nb) -> str:
    """Every printed line and displayed value of the executed notebook, in order."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_analysis_notebook_runs_on_two_runs(tmp_path, monkeypatch):
    runs = []
    for name in ("one", "two"):
        with start_sim(profile=PROFILE, seed=1) as sim:
            result = run_in_process(tmp_path, {**_scenario(name), "target": {"base_url": sim.base_url}}, out=name)
        runs.append(result.run.path)
    # the kernel is a child process: it inherits these
    monkeypatch.setenv("BENCH_RUN", str(runs[0]))
    monkeypatch.setenv("BENCH_RUN_B", str(runs[1]))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=180,
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()  # raises on any cell error
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) >= 5  # cdf, ladder, timeline, and the two overlaid comparison figures
    text = _texts(nb)
    assert f"run: {runs[0]}" in text
    assert "WARNING (few_samples_p999)" in text  # 120 measured requests: the notebook says so
    # each section under its title, in order, with numbers, none missing
    starts = [text.index("### " + title) for title in SECTIONS]
    assert starts == sorted(starts)
    assert not re.search(r"^\(", text[starts[0]:], re.MULTILINE)  # no section says it has nothing
    for title, start, end in zip(SECTIONS, starts, [*starts[1:], len(text)], strict=True):
        body = text[start:end]
        assert re.search(r"\d\.\d", body), (title, body[:300])
    assert re.search(r"prefix-cache hit share: \d+\.\d%", text)
    assert re.search(r"token count difference \(tokens\)\s+120\s+-1\.00\s+-1\.00", text)  # count, mean, p50
    assert re.search(r"usage\s+server_tokenize\s+120\n", text)  # counted requests by their two sources
    for tool in ("vllm", "guidellm", "aiperf"):
        assert tool in text.lower()


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")
