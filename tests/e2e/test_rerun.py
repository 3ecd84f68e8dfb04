"""run.json `provenance` (the command line, bench's revision, package versions, the machine)
and `bench rerun`, which runs a stored run's resolved scenario again."""

from __future__ import annotations

import json
import os
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
from benchtest import write_scenario

import bench
from bench.commands.cli import main

REPO = Path(bench.__file__).resolve().parents[1]


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text(encoding="utf-8"))


def test_a_rerun_repeats_the_scenario_and_its_overrides(tmp_path):
    path = write_scenario(tmp_path, {
        "name": "again", "seed": 5, "target": {"sim_profile": "default"},
        "requests": {"synthetic": {"prompt_tokens": 12, "output_tokens": 6}},
        "load": {"concurrency": 2, "max_requests": 10},
    })
    first, second = tmp_path / "first", tmp_path / "second"
    argv = ["run", str(path), "--rate", "20", "--out", str(first), "--quiet", "--no-report",
            "--variant", "cold=temperature:0"]
    assert main(argv) == 0
    assert main(["rerun", str(first), "--out", str(second), "--quiet", "--no-report"]) == 0
    a, b = _manifest(first), _manifest(second)
    assert a["scenario"] == b["scenario"]
    assert a["scenario"]["load"]["rate"] == 20 and a["scenario"]["load"]["concurrency"] is None  # the override
    assert "cold" in a["scenario"]["variants"]
    assert a["provenance"]["command"] == ["bench", *argv]
    assert b["provenance"]["command"] == ["bench", "rerun", str(first), "--out", str(second), "--quiet",
                                          "--no-report"]
    runs = [bench.load_run(d).requests.sort_values("request_id") for d in (first, second)]
    assert len(runs[0]) == len(runs[1]) == 10
    assert np.allclose(runs[0]["scheduled_s"], runs[1]["scheduled_s"])  # same seed, same schedule
    assert (runs[0]["prompt_index"].to_numpy() == runs[1]["prompt_index"].to_numpy()).all()


def test_provenance_names_the_source_packages_and_machine(tmp_path):
    path = write_scenario(tmp_path, {"name": "made", "target": {"sim_profile": "zero"},
                                     "requests": {"inline": ["hello"]}, "load": {"concurrency": 1, "max_requests": 2}})
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet", "--no-report"]) == 0
    made = _manifest(tmp_path / "run")["provenance"]
    assert made["packages"]["openai"] == metadata.version("openai")
    assert made["packages"]["numpy"] == np.__version__
    assert made["logical_cores"] == os.cpu_count() and made["memory_gib"] > 0
    if (REPO / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        assert made["git_revision"] == head.stdout.strip()
        assert isinstance(made["git_dirty"], bool)
    report = bench.load_run(tmp_path / "run")
    from bench.report.tables import metadata_table

    rows = dict(metadata_table(report).rows)
    assert rows["command"].startswith("bench run ") and rows["command"].endswith("--no-report")


def test_rerun_of_a_directory_that_is_not_a_run_is_one_line_exit_2(tmp_path, capsys):
    assert main(["rerun", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a run directory" in err
