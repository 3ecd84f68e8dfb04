"""notebooks/analysis.ipynb executes, top to bottom, on two small runs made against the simulator."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from benchtest import run_in_process
from nbclient import NotebookClient

from bench.sim import start_sim

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "analysis.ipynb"


def test_analysis_notebook_runs_on_two_runs(tmp_path, monkeypatch):
    runs = []
    for name in ("one", "two"):
        with start_sim(profile="default", seed=1) as sim:
            result = run_in_process(tmp_path, {
                "name": name, "seed": 3, "target": {"base_url": sim.base_url},
                "requests": {"synthetic": {"prompt_tokens": 16, "output_tokens": {"dist": "uniform", "min": 4,
                                                                                    "max": 16}}},
                "load": {"concurrency": 4, "max_requests": 24, "warmup": {"requests": 4}},
            }, out=name)
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
    text = "".join(out.get("text", "") for out in outputs)
    assert f"run: {runs[0]}" in text
    assert "WARNING (few_samples_p99)" in text  # 20 measured requests: the notebook says so


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")
