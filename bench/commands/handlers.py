"""The handlers of `bench run | rerun | sweep | summary | report | plot | compare | scenario-schema | sim`.

Each takes the parsed arguments and returns the exit code (`bench.commands.exits`); bad
input raises BenchInputError. Heavy modules are imported inside each handler, so that
`bench --help` and light commands start fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.commands.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_REGRESSION, EXIT_SATURATED
from bench.commands.parser import run_overrides
from bench.errors import BenchInputError

if TYPE_CHECKING:  # the scenario schema imports pydantic, compare numpy: not at `bench --help`
    from bench.report.compare import Comparison
    from bench.report.gate import Breach
    from bench.scenario.schema import Scenario

__all__ = ["cmd_compare", "cmd_plot", "cmd_report", "cmd_rerun", "cmd_run", "cmd_scenario_schema", "cmd_sim",
           "cmd_summary", "cmd_sweep"]


def cmd_run(args: argparse.Namespace) -> int:
    from bench.scenario.loader import load_scenario

    return _run_and_print(load_scenario(args.scenario, run_overrides(args)), args.scenario, args)


def cmd_rerun(args: argparse.Namespace) -> int:
    """The stored run's resolved scenario (overrides applied, secrets still read from where
    the scenario names them); relative files resolve against the original scenario file."""
    from bench.scenario.loader import validate_scenario
    from bench.store import MANIFEST, read_manifest

    manifest = read_manifest(args.run_dir)
    scenario = validate_scenario(manifest.scenario, f"{args.run_dir / MANIFEST}: scenario")
    path = Path(manifest.scenario_path) if manifest.scenario_path else args.run_dir / MANIFEST
    return _run_and_print(scenario, path, args)


def _run_and_print(scenario: Scenario, scenario_path: Path, args: argparse.Namespace) -> int:
    from bench.commands.run import run_scenario
    from bench.commands.rundir import RunOptions
    from bench.report.console import print_summary

    options = RunOptions(scenario_path=scenario_path, out_dir=args.out, results_root=args.results_root,
                         show_progress=not (args.quiet or args.json), command=getattr(args, "command_line", None))
    result = run_scenario(scenario, options)
    run = result.run
    if args.json:
        print(json.dumps(run.summary.to_json(), indent=2))
    elif not args.quiet:
        print_summary(run.summary, f"{run.name}: {run.manifest.model} ({result.ended})", str(run.path),
                      _validity_messages(run), _run_notes(run))
        _print_steady(run)
    if result.ended == "interrupted":
        # Stopped by the user: exit now (figures take seconds); the stored run renders them later.
        if not (args.no_report or args.quiet or args.json):
            print(f"report: not written (interrupted); `bench report {run.path}` writes it")
        return EXIT_INTERRUPTED
    if not args.no_report:
        _write_run_reports(run, announce=not (args.quiet or args.json))
    if result.ended == "saturated":
        return EXIT_SATURATED
    return EXIT_OK if result.ended == "completed" else EXIT_FAILED


def cmd_sweep(args: argparse.Namespace) -> int:
    from bench.commands.rundir import RunOptions
    from bench.commands.sweep import SweepRequest, run_sweep
    from bench.report.console import print_stages, print_summary
    from bench.scenario.loader import load_scenario

    scenario = load_scenario(args.scenario, run_overrides(args))
    if scenario.ray is not None:
        raise BenchInputError("ray: Ray actors drive `bench run` only; run the sweep's points as separate runs")
    if scenario.load.workers != 1:  # the sweep steers one client stage by stage: never ignore the setting
        raise BenchInputError(f"{args.scenario}: load.workers: worker processes drive `bench run` only; a sweep "
                              "runs in one client process (run its highest points as `bench run --workers K`)")
    options = RunOptions(scenario_path=args.scenario, out_dir=args.out, results_root=args.results_root,
                         show_progress=not (args.quiet or args.json), command=getattr(args, "command_line", None))
    request = SweepRequest(rates=args.rates or ([args.start_rate] if args.find_max_rate else None),
                           concurrencies=args.concurrencies, auto=args.auto, find_max_rate=args.find_max_rate,
                           stage_duration_s=args.stage_duration, max_concurrency=args.sweep_max_concurrency)
    has_points = bool(args.rates or args.concurrencies or args.auto is not None or args.find_max_rate)
    if args.serve_params is not None:
        return _config_sweep(args, scenario, options, request if has_points else _scenario_point(args, scenario))
    if args.serve_cmd is not None:
        raise BenchInputError("--serve-cmd: give the configurations to start it with in --serve-params FILE")
    if not has_points:
        raise BenchInputError("bench sweep: give one of --rates, --concurrencies, --auto or --find-max-rate "
                              "(or --serve-params, to run the scenario's own load per server configuration)")
    outcome = run_sweep(scenario, options, request)
    run = outcome.result.run
    if args.json:
        print(json.dumps({"summary": run.summary.to_json(), "stages": outcome.stages, "max_rate": outcome.max_rate,
                          "saturation_stage": outcome.saturation_stage}, indent=2))
    elif not args.quiet:
        print_summary(run.summary, f"{run.name}: {run.manifest.model} ({outcome.result.ended})", str(run.path),
                      _validity_messages(run), _run_notes(run))
        print_stages(outcome.stages, outcome.max_rate)
    if not args.no_report:
        _write_run_reports(run, announce=not (args.quiet or args.json))
    if outcome.result.ended == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_OK if outcome.result.ended == "completed" else EXIT_FAILED


def _scenario_point(args: argparse.Namespace, scenario: Any) -> Any:
    """A config sweep without points runs the scenario's own load: one rate or concurrency."""
    from bench.commands.sweep import SweepRequest

    load = scenario.load
    duration = load.duration if load.duration is not None else args.stage_duration
    if load.rate is not None:
        return SweepRequest(rates=[float(load.rate)], stage_duration_s=duration)
    if load.concurrency is not None:
        return SweepRequest(concurrencies=[int(load.concurrency)], stage_duration_s=duration)
    raise BenchInputError(f"{args.scenario}: load: --serve-params without points runs a load.rate or "
                          "load.concurrency scenario; give --rates or --concurrencies for this one")


def _config_sweep(args: argparse.Namespace, scenario: Any, options: Any, points: Any) -> int:
    from bench.commands.serve_sweep import ConfigSweepRequest, run_config_sweep
    from bench.report.configs import load_config_report, print_config_report, write_config_reports

    result = run_config_sweep(scenario, options, ConfigSweepRequest(args.serve_params, args.serve_cmd, points))
    report = load_config_report(result.path)
    if not args.no_report:
        write_config_reports(report)
    if args.json:
        best = report.best
        print(json.dumps({"path": str(result.path), "configs": [c.model_dump(mode="json") for c in result.sweep.configs],
                          "table": json.loads(report.table.to_json(orient="records")),
                          "best": None if best is None else dataclasses.asdict(best)},
                         indent=2))
    elif not args.quiet:
        print_config_report(report)
    for entry in result.failed:
        print(f"config {entry.name}: {entry.status}: {entry.error.splitlines()[0] if entry.error else ''}",
              file=sys.stderr)
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if result.failed else EXIT_OK


def cmd_summary(args: argparse.Namespace) -> int:
    from bench.analysis.results import load_run
    from bench.report.console import print_summary

    run = load_run(args.run_dir)
    if args.json:
        print(json.dumps(run.summary.to_json(), indent=2))
    else:
        print_summary(run.summary, f"{run.name}: {run.manifest.model} ({run.manifest.ended})", str(run.path),
                      _validity_messages(run), _run_notes(run))
    return EXIT_OK


def _print_steady(run: Any) -> None:
    from bench.analysis.steady import steady_state
    from bench.report.steady_table import steady_line

    line = steady_line(steady_state(run))
    if line is not None:
        print(line)


def _validity_messages(run: Any) -> list[str]:
    from bench.analysis.validity import check

    return [w.message for w in check(run)]


def _run_notes(run: Any) -> list[str]:
    from bench.analysis.validity import workload_notes

    return workload_notes(run.manifest)


def _write_run_reports(run: Any, announce: bool) -> None:
    from bench.report.document import write_reports

    paths = write_reports(run)
    if announce:
        html = next((p for p in paths if p.suffix == ".html"), None)
        print(f"report: {html or paths[0]}")


def cmd_report(args: argparse.Namespace) -> int:
    from bench.analysis.results import load_run
    from bench.report.document import parse_formats, write_reports
    from bench.store.config_sweep import is_config_sweep

    if getattr(args, "as_tool", None):
        return _print_dialect(args.run_dir, args.as_tool)
    if is_config_sweep(Path(args.run_dir)):  # a server-config sweep: its own report, from its runs
        from bench.report.configs import load_config_report, write_config_reports

        for path in write_config_reports(load_config_report(Path(args.run_dir))):
            print(path)
        return EXIT_OK
    for path in write_reports(load_run(args.run_dir), args.out, parse_formats(args.format)):
        print(path)
    return EXIT_OK


def _print_dialect(run_dir: Path, tool: str) -> int:
    """`bench report RUN --as TOOL`: the run's figures as TOOL defines them, on stdout."""
    from bench.analysis.results import load_run
    from bench.metrics.dialects import by_name
    from bench.report.dialect_tables import dialect_text, run_dialects

    try:
        dialect = by_name(tool)
    except KeyError as exc:
        raise BenchInputError(f"--as: {exc.args[0]}") from None
    (figures,) = run_dialects(load_run(run_dir), (dialect,))
    print(dialect_text(figures), end="")
    return EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    from bench.analysis.results import load_run
    from bench.report.figures import formats_for, plot_runs, save_figures

    runs = [load_run(path) for path in args.run_dirs]
    out = args.out or (runs[0].path / "figures" if len(runs) == 1 else Path("."))
    for path in save_figures(plot_runs(runs), out, formats_for(args.format)):
        print(path)
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.analysis.results import load_run
    from bench.report.compare import compare_runs, write_compare
    from bench.report.compare_models import model_comparisons, write_model_compare
    from bench.report.gate import check_gate, comparison_json, parse_fail_on

    if len(args.run_dirs) < 2:
        raise BenchInputError("compare: give at least two run directories (baseline first)")
    if args.resamples < 500:
        raise BenchInputError(f"--resamples: {args.resamples} is too few for the intervals (use >= 500)")
    if not 0 <= args.min_effect < 1:
        raise BenchInputError(f"--min-effect: {args.min_effect} is not a share between 0 and 1")
    thresholds = parse_fail_on(args.fail_on) if args.fail_on else []
    runs = [load_run(path) for path in args.run_dirs]
    comparison = compare_runs(runs, seed=args.seed, n_resamples=args.resamples, min_effect=args.min_effect)
    breaches = check_gate(comparison, thresholds)
    written = write_compare(comparison, runs, args.out)
    by_model = model_comparisons(runs, seed=args.seed, n_resamples=args.resamples, min_effect=args.min_effect)
    written += write_model_compare(by_model, args.out)
    if args.json:
        print(json.dumps(comparison_json(comparison, thresholds, breaches), indent=2))
    else:
        _print_comparison(comparison, written, breaches, by_model)
    return EXIT_REGRESSION if breaches else EXIT_OK


def _print_comparison(comparison: Comparison, written: list[Path], breaches: list[Breach],
                      by_model: dict[str, Comparison] | None = None) -> None:
    from rich.console import Console

    from bench.report.compare import console_tables
    from bench.report.console import print_wrapped

    console = Console()
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = max(console.width, 160)  # a file or pipe has no width to fit, unless told
    for table in console_tables(comparison, console.width):
        console.print(table)
    for model, part in (by_model or {}).items():
        console.print(f"model {model}:", highlight=False, markup=False)
        for table in console_tables(part, console.width):
            console.print(table)
    for warning in comparison.warnings:
        print_wrapped(console, f"WARNING: scenario mismatch: {warning}", style="yellow")
    for path in written:
        console.print(str(path), highlight=False)
    for b in breaches:
        print_wrapped(console, f"REGRESSION: {b.run}: {b.threshold.spec()} failed: {b.baseline:.4g} -> "
                               f"{b.value:.4g} ({b.change:+.1%}), significant", style="bold red")


def cmd_scenario_schema(args: argparse.Namespace) -> int:
    from bench.scenario.schema import scenario_json_schema

    print(json.dumps(scenario_json_schema(), indent=2))
    return EXIT_OK


def cmd_sim(args: argparse.Namespace) -> int:
    from bench.sim.cli import run_from_args

    return run_from_args(args)
