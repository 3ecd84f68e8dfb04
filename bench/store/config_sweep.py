"""A server-config sweep's directory: `configs.json` and one run directory per configuration.

    SWEEP_DIR/
      configs.json          this module's ConfigSweep: the template, and per configuration
                            its parameters, command, status and run directory
      <config name>/        a run directory (run.json, records, server.log), or for a
                            server that never started, only its server.log
      report.md, report.html, configs.csv, pareto.png   re-rendered from the above alone

configs.json is rewritten after each configuration, so an interrupted sweep keeps what it
measured. Versioned on its own (CONFIG_SWEEP_VERSION); each run inside has its own version.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.errors import BenchInputError
from bench.scenario.serve_grid import ParamValue

__all__ = ["CONFIGS_FILE", "CONFIG_SWEEP_VERSION", "ConfigEntry", "ConfigStatus", "ConfigSweep",
           "is_config_sweep", "read_config_sweep", "write_config_sweep"]

CONFIGS_FILE = "configs.json"
CONFIG_SWEEP_VERSION = 1

# ok: its run completed; failed_start: the server exited or never became ready;
# failed: the run failed after the start; interrupted: the user stopped the sweep there.
ConfigStatus = Literal["ok", "failed_start", "failed", "interrupted"]


class ConfigEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, ParamValue]
    command: list[str]  # secrets redacted
    base_url: str
    status: ConfigStatus
    run: str | None = None  # the run directory, relative to the sweep directory
    server_log: str | None = None  # relative to the sweep directory
    error: str | None = None  # the failure's message (exit code and log tail for a failed start)


class ConfigSweep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["bench-config-sweep"] = "bench-config-sweep"
    version: int = CONFIG_SWEEP_VERSION
    name: str
    scenario_path: str
    serve_template: str  # secrets redacted
    params_file: str
    command_line: list[str] | None = None  # the `bench sweep` command, secrets redacted
    points: dict[str, Any]  # how each configuration was loaded: rates, concurrencies, auto, ...
    started: str
    ended: str | None = None
    configs: list[ConfigEntry] = Field(default_factory=list)


def is_config_sweep(path: Path) -> bool:
    return (path / CONFIGS_FILE).is_file()


def write_config_sweep(directory: Path, sweep: ConfigSweep) -> Path:
    """Write configs.json atomically (a reader never sees half a file)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CONFIGS_FILE
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(sweep.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def read_config_sweep(directory: Path) -> ConfigSweep:
    """configs.json of a sweep directory; BenchInputError (one line) when absent or invalid."""
    path = directory / CONFIGS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchInputError(f"{directory}: not a server-config sweep ({CONFIGS_FILE} not found)") from None
    except (OSError, ValueError) as exc:
        raise BenchInputError(f"{path}: cannot read: {exc}") from None
    if isinstance(data, dict) and data.get("version", CONFIG_SWEEP_VERSION) > CONFIG_SWEEP_VERSION:
        raise BenchInputError(f"{path}: version {data['version']} is newer than this bench reads "
                              f"({CONFIG_SWEEP_VERSION})")
    try:
        return ConfigSweep.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise BenchInputError(f"{path}: {field}: {err['msg']}") from None
