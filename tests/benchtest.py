"""Test helpers shared by the top-level tests (import as `from benchtest import ...`).

Not in conftest.py: several conftest modules would collide on the name `conftest`."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from bench.commands.run import run_scenario
from bench.commands.rundir import RunOptions, RunResult
from bench.scenario.loader import load_scenario


def write_scenario(directory: Path, data: dict[str, Any], name: str = "scenario.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(data))
    return path


def run_in_process(directory: Path, data: dict[str, Any], out: str = "run") -> RunResult:
    path = write_scenario(directory, data)
    scenario = load_scenario(path)
    return run_scenario(scenario, RunOptions(scenario_path=path, out_dir=directory / out, show_progress=False))


def sim_truth(root_url: str) -> dict[str, dict[str, Any]]:
    with urllib.request.urlopen(f"{root_url}/sim/requests", timeout=10) as resp:
        return {str(item["id"]): item for item in json.load(resp)}
