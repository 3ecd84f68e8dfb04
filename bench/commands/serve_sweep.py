"""`bench sweep --serve-params FILE [--serve-cmd "CMD {flags}"]`: one server per configuration.

For each configuration of the file (bench.scenario.serve_grid) the server is launched by the
existing launch code (readiness on GET /models, its own process group, stopped by PID, its
log kept), the sweep's load points (or the scenario's own load) run against it into a run
directory of its own, and configs.json records what happened. A server that exits or never
becomes ready is recorded with its log and the sweep goes on with the next configuration.
Without --serve-cmd the built-in simulator is the server and its profile fields the
parameters (`max_num_seqs: [16, 64]`), launched the same way.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.commands.rundir import RunOptions, run_dir_for, utc_now
from bench.commands.sweep import SweepRequest, run_sweep
from bench.errors import BenchInputError, RunFailed, ServerStartFailed
from bench.redact import redact_argv, redact_command_string
from bench.scenario.schema import Launch, Scenario
from bench.scenario.serve_grid import ServeConfig, load_serve_grid
from bench.store.config_sweep import ConfigEntry, ConfigStatus, ConfigSweep, write_config_sweep
from bench.store.layout import SERVER_LOG
from bench.target.serve import ServeCommand, serve_command, sim_serve_template

__all__ = ["ConfigSweepRequest", "ConfigSweepResult", "run_config_sweep"]


@dataclass(frozen=True)
class ConfigSweepRequest:
    params_file: Path
    serve_cmd: str | None  # None: the built-in simulator
    points: SweepRequest


@dataclass(frozen=True)
class ConfigSweepResult:
    path: Path
    sweep: ConfigSweep

    @property
    def interrupted(self) -> bool:
        return any(entry.status == "interrupted" for entry in self.sweep.configs)

    @property
    def failed(self) -> list[ConfigEntry]:
        return [entry for entry in self.sweep.configs if entry.status in ("failed_start", "failed")]


def run_config_sweep(scenario: Scenario, options: RunOptions, request: ConfigSweepRequest) -> ConfigSweepResult:
    """Every configuration in turn; configs.json is rewritten after each one. Stops early
    (the rest not started) when the user interrupts."""
    configs = load_serve_grid(request.params_file)
    template = _template(scenario, request.serve_cmd)
    out = run_dir_for(scenario.model_copy(update={"name": f"{scenario.name}-configs"}), options)
    if out.exists():
        raise BenchInputError(f"{out}: already exists (a sweep never writes into an old directory)")
    sweep = ConfigSweep(name=scenario.name, scenario_path=str(options.scenario_path),
                        serve_template=redact_command_string(template), params_file=str(request.params_file),
                        points=_points(request.points), started=utc_now(),
                        command_line=redact_argv(list(options.command)) if options.command else None)
    write_config_sweep(out, sweep)
    for config in configs:
        entry = _one(scenario, options, request.points, template, config, out)
        sweep.configs.append(entry)
        write_config_sweep(out, sweep)
        if entry.status == "interrupted":
            break
    sweep.ended = utc_now()
    write_config_sweep(out, sweep)
    return ConfigSweepResult(out, sweep)


def _template(scenario: Scenario, serve_cmd: str | None) -> str:
    if serve_cmd is not None:
        return serve_cmd
    if scenario.target.base_url is not None:
        raise BenchInputError("--serve-params: give --serve-cmd, the command that starts the server at "
                              "target.base_url (only the built-in simulator is started without one)")
    return sim_serve_template(scenario.target.sim_profile or "default", scenario.seed)


def _points(points: SweepRequest) -> dict[str, Any]:
    return {"rates": points.rates, "concurrencies": points.concurrencies, "auto": points.auto,
            "find_max_rate": points.find_max_rate, "stage_duration_s": points.stage_duration_s}


def _one(scenario: Scenario, options: RunOptions, points: SweepRequest, template: str, config: ServeConfig,
         out: Path) -> ConfigEntry:
    command = serve_command(template, config, scenario.target.base_url)
    entry = ConfigEntry(name=config.name, params=dict(config.params), command=redact_argv(command.argv),
                        base_url=command.base_url, status="ok")
    run_dir = out / config.name
    child = replace(options, out_dir=run_dir, command=None)
    try:
        outcome = run_sweep(_with_server(scenario, command), child, points)
    except ServerStartFailed as exc:
        return _failed(entry, "failed_start", str(exc), exc.log_path, run_dir, out)
    except (RunFailed, BenchInputError) as exc:  # started, then unusable or failed: keep what was stored
        return _failed(entry, "failed", str(exc), None, run_dir, out)
    except KeyboardInterrupt:
        return entry.model_copy(update={"status": "interrupted", "error": "interrupted before the run began"})
    _write_child_report(outcome.result.run)
    status: ConfigStatus = "interrupted" if outcome.result.ended == "interrupted" else (
        "ok" if outcome.result.ended == "completed" else "failed")
    log = run_dir / SERVER_LOG
    return entry.model_copy(update={"status": status, "run": config.name,
                                    "server_log": f"{config.name}/{SERVER_LOG}" if log.exists() else None})


def _with_server(scenario: Scenario, command: ServeCommand) -> Scenario:
    old = scenario.target.launch
    launch = Launch(command=command.argv, env=old.env if old else {},
                    ready_timeout_s=old.ready_timeout_s if old else Launch.model_fields["ready_timeout_s"].default)
    target = scenario.target.model_copy(update={"launch": launch, "base_url": command.base_url, "sim_profile": None})
    return scenario.model_copy(update={"target": target})


def _failed(entry: ConfigEntry, status: ConfigStatus, message: str, log: Path | None, run_dir: Path,
            out: Path) -> ConfigEntry:
    run_dir.mkdir(parents=True, exist_ok=True)
    kept = run_dir / SERVER_LOG
    if log is not None and log.exists():
        shutil.move(str(log), kept)
        message = message.replace(str(log), str(kept))
    has_run = (run_dir / "run.json").is_file()
    return entry.model_copy(update={
        "status": status, "error": message, "run": entry.name if has_run else None,
        "server_log": str(kept.relative_to(out)) if kept.exists() else None})


def _write_child_report(run: Any) -> None:
    from bench.report.document import write_reports

    write_reports(run)
