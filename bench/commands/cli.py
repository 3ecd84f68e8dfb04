"""Command line: `bench run | sim | sweep | probe | scenario-schema | summary | report | plot | compare | calibrate`.

Every user-facing failure is one line on stderr with a non-zero exit code: 2 for bad input,
1 for a failed run, 130 for an interrupted one; 3 for a run stopped early on saturation
(`--stop-on-saturation`). Library code raises; only `main` exits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from bench.errors import BenchInputError, RunFailed

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_SATURATED = 3  # `bench run --stop-on-saturation` stopped sending: the server could not keep up

# CLI flag -> dotted scenario field it overrides.
RUN_OVERRIDES = {
    "base_url": "target.base_url",
    "model": "target.model",
    "api_key_env": "target.api_key_env",
    "endpoint": "target.endpoint",
    "profile": "target.sim_profile",
    "launch": "target.launch.command",
    "rate": "load.rate",
    "arrival": "load.arrival",
    "concurrency": "load.concurrency",
    "max_concurrency": "load.max_concurrency",
    "duration": "load.duration",
    "max_requests": "load.max_requests",
    "seed": "seed",
    "workers": "load.workers",
    "stop_on_saturation": "load.stop_on_saturation",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse would print usage and exit 2 itself; keep it to one line.
        raise BenchInputError(f"{self.prog}: {message}")


def build_parser(with_sim: bool = True) -> argparse.ArgumentParser:
    parser = _Parser(prog="bench", description="Load and benchmark harness for OpenAI-compatible LLM servers.")
    from bench import __version__

    parser.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run(sub.add_parser("run", help="run a scenario and store the results"))
    sim = sub.add_parser("sim", help="serve the built-in simulated OpenAI-compatible server")
    if with_sim:  # its flags live with the simulator, whose import costs most of a second
        _add_sim(sim)
    _add_sweep(sub.add_parser("sweep", help="run a scenario at several load points (one stage each)"))
    sub.add_parser("scenario-schema", help="print the scenario file's JSON Schema")
    summary = sub.add_parser("summary", help="print the summary of a stored run")
    summary.add_argument("run_dir", type=Path)
    summary.add_argument("--json", action="store_true", help="print summary.json")
    _add_report(sub.add_parser("report", help="write report.md, report.html and summary.csv for a stored run"))
    _add_plot(sub.add_parser("plot", help="draw latency CDFs, percentile ladders and timelines of stored runs"))
    _add_compare(sub.add_parser("compare", help="compare stored runs with bootstrap confidence intervals"))
    _add_probe(sub.add_parser("probe", help="send a few short requests and print the server's stream dialect"))
    calibrate = sub.add_parser("calibrate", help="measure this machine's client ceiling against the zero-latency simulator")
    calibrate.add_argument("--seconds", type=float, default=3.0, help="seconds per point (default 3)")
    calibrate.add_argument("--workers", type=_workers_arg, default=1, metavar="K|auto")
    return parser


def _add_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", type=Path, help="scenario file (YAML or JSON)")
    p.add_argument("--base-url", help="server base URL, e.g. http://127.0.0.1:8000/v1 (default: built-in simulator)")
    p.add_argument("--model")
    p.add_argument("--api-key-env", help="name of the environment variable holding the API key")
    p.add_argument("--endpoint", choices=["chat", "completions"])
    p.add_argument("--profile", help="simulator profile when no base URL is given")
    p.add_argument("--launch", metavar="CMD", help="start this server command first, stop it after (needs --base-url)")
    p.add_argument("--rate", type=float, help="open loop: requests per second")
    p.add_argument("--arrival", choices=["constant", "poisson", "gamma"])
    p.add_argument("--concurrency", type=int, help="closed loop: requests in flight")
    p.add_argument("--max-concurrency", type=int)
    p.add_argument("--duration", type=float, help="seconds of sending")
    p.add_argument("--max-requests", type=int)
    p.add_argument("--warmup", type=int, help="requests excluded from the statistics")
    p.add_argument("--stop-on-saturation", action="store_true", default=None,
                   help="open loop: stop sending once the server is saturated, drain, exit 3 "
                        "(load.stop_on_saturation)")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=_workers_arg, metavar="K|auto",
                   help="client processes sharing the schedule (auto: as many as the load needs, one per core)")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="run the load from Ray actors: ADDRESS auto, ray://HOST:10001 or HOST:PORT "
                        "(none: a local Ray for the run); needs pip install 'bench[ray]'")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=key:value,...",
                   help="add or override a sampling variant, e.g. short=max_tokens:64,temperature:0")
    p.add_argument("--out", type=Path, help="run directory (must not exist)")
    p.add_argument("--results-root", type=Path, default=Path("results"))
    p.add_argument("--quiet", action="store_true", help="no progress, no table")
    p.add_argument("--json", action="store_true", help="print summary.json on stdout")
    p.add_argument("--no-report", action="store_true", help="do not write report.md/html and summary.csv")


def _add_probe(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-url", help="server base URL, e.g. http://127.0.0.1:8000/v1 (default: built-in simulator)")
    p.add_argument("--model", help="model name (default: the first one the server lists)")
    p.add_argument("--api-key-env", help="name of the environment variable holding the API key")
    p.add_argument("--profile", default="default", help="simulator profile when no base URL is given")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds per request (default 15)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")


def _add_sweep(p: argparse.ArgumentParser) -> None:
    _add_run(p)
    points = p.add_mutually_exclusive_group(required=True)
    points.add_argument("--rates", type=_floats, help="comma-separated request rates, e.g. 1,2,4,8")
    points.add_argument("--concurrencies", type=_ints, help="comma-separated concurrencies, e.g. 1,4,16,64")
    points.add_argument("--auto", type=int, metavar="N", help="synchronous, max throughput, then N rates between")
    points.add_argument("--find-max-rate", action="store_true",
                        help="search the highest rate meeting the scenario's slo")
    p.add_argument("--start-rate", type=float, default=1.0, help="first rate of --find-max-rate")
    p.add_argument("--stage-duration", type=float, default=15.0, help="seconds per point")
    p.add_argument("--sweep-max-concurrency", type=int, default=256, help="concurrency of --auto's throughput point")


def _workers_arg(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes or 'auto', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def _floats(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _ints(text: str) -> list[int]:
    values = _floats(text)
    if any(v != int(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected whole numbers, got {text!r}")
    return [int(v) for v in values]


def _add_sim(p: argparse.ArgumentParser) -> None:
    from bench.sim.cli import add_arguments  # light: argparse only, no server imports

    add_arguments(p)


def main(argv: list[str] | None = None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else argv
        args = build_parser(with_sim=argv[:1] == ["sim"]).parse_args(argv)
        return _dispatch(args)
    except BenchInputError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except RunFailed as exc:
        print(f"bench: run failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "sim":
        from bench.sim.cli import run_from_args

        return run_from_args(args)
    if args.command == "sweep":
        return _cmd_sweep(args)
    if args.command == "scenario-schema":
        from bench.scenario.schema import scenario_json_schema

        print(json.dumps(scenario_json_schema(), indent=2))
        return EXIT_OK
    if args.command == "summary":
        return _cmd_summary(args)
    if args.command == "report":
        return _cmd_report(args)
    if args.command == "plot":
        return _cmd_plot(args)
    if args.command == "compare":
        return _cmd_compare(args)
    if args.command == "calibrate":
        return _cmd_calibrate(args)
    if args.command == "probe":
        return _cmd_probe(args)
    raise BenchInputError(f"unknown command {args.command!r}")


def run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides = {dotted: getattr(args, flag) for flag, dotted in RUN_OVERRIDES.items()
                 if getattr(args, flag, None) is not None}
    # Switching loop type on the command line must drop the scenario's other loop key.
    if args.rate is not None:
        overrides.setdefault("load.concurrency", None)
    if args.concurrency is not None:
        overrides.setdefault("load.rate", None)
    if args.warmup is not None:
        overrides["load.warmup.requests"] = args.warmup
    if getattr(args, "ray", None) is not None:
        overrides["ray.address"] = args.ray or None
    for spec in args.variant:
        name, fields = parse_variant_flag(spec)
        for key, value in fields.items():
            overrides[f"variants.{name}.{key}"] = value
    return overrides


def parse_variant_flag(spec: str) -> tuple[str, dict[str, Any]]:
    """`NAME=key:value,key:value`; values are YAML scalars (numbers, booleans, strings)."""
    import yaml

    name, eq, rest = spec.partition("=")
    if not eq or not name.strip():
        raise BenchInputError(f"--variant {spec!r}: expected NAME=key:value,...")
    fields: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, colon, raw = item.partition(":")
        if not colon or not key.strip():
            raise BenchInputError(f"--variant {spec!r}: expected key:value, got {item!r}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise BenchInputError(f"--variant {spec!r}: cannot read value {raw!r}") from None
        key = key.strip()
        if key.startswith("extra_body."):
            fields.setdefault("extra_body", {})[key.removeprefix("extra_body.")] = value
        else:
            fields[key] = value
    return name.strip(), fields


def _cmd_run(args: argparse.Namespace) -> int:
    from bench.report.console import print_summary
    from bench.commands.rundir import RunOptions
    from bench.commands.run import run_scenario
    from bench.scenario.schema import load_scenario

    scenario = load_scenario(args.scenario, run_overrides(args))
    options = RunOptions(scenario_path=args.scenario, out_dir=args.out, results_root=args.results_root,
                         show_progress=not (args.quiet or args.json))
    result = run_scenario(scenario, options)
    run = result.run
    if args.json:
        print(json.dumps(run.summary.to_json(), indent=2))
    elif not args.quiet:
        print_summary(run.summary, f"{run.name}: {run.manifest.model} ({result.ended})", str(run.path),
                      _validity_messages(run), _run_notes(run))
    if not args.no_report:
        _write_run_reports(run, announce=not (args.quiet or args.json))
    if result.ended == "interrupted":
        return EXIT_INTERRUPTED
    if result.ended == "saturated":
        return EXIT_SATURATED
    return EXIT_OK if result.ended == "completed" else EXIT_FAILED


def _cmd_sweep(args: argparse.Namespace) -> int:
    from bench.report.console import print_stages, print_summary
    from bench.commands.rundir import RunOptions
    from bench.scenario.schema import load_scenario
    from bench.commands.sweep import SweepRequest, run_sweep

    scenario = load_scenario(args.scenario, run_overrides(args))
    if scenario.ray is not None:
        raise BenchInputError("ray: Ray actors drive `bench run` only; run the sweep's points as separate runs")
    if scenario.load.workers != 1:  # the sweep steers one client stage by stage: never ignore the setting
        raise BenchInputError(f"{args.scenario}: load.workers: worker processes drive `bench run` only; a sweep "
                              "runs in one client process (run its highest points as `bench run --workers K`)")
    options = RunOptions(scenario_path=args.scenario, out_dir=args.out, results_root=args.results_root,
                         show_progress=not (args.quiet or args.json))
    request = SweepRequest(rates=args.rates or ([args.start_rate] if args.find_max_rate else None),
                           concurrencies=args.concurrencies, auto=args.auto, find_max_rate=args.find_max_rate,
                           stage_duration_s=args.stage_duration, max_concurrency=args.sweep_max_concurrency)
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


def _cmd_summary(args: argparse.Namespace) -> int:
    from bench.report.console import print_summary
    from bench.analysis.results import load_run

    run = load_run(args.run_dir)
    if args.json:
        print(json.dumps(run.summary.to_json(), indent=2))
    else:
        print_summary(run.summary, f"{run.name}: {run.manifest.model} ({run.manifest.ended})", str(run.path),
                      _validity_messages(run), _run_notes(run))
    return EXIT_OK


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path)
    p.add_argument("--format", choices=["md", "html", "csv", "all"], default="all")
    p.add_argument("--out", type=Path, help="output directory (default: the run directory)")


def _add_plot(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", type=Path, help="output directory (default: RUN_DIR/figures for one run, else .)")
    p.add_argument("--format", choices=["png", "svg", "both"], default="png")


def _add_compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="baseline first, then the others")
    p.add_argument("--out", type=Path, default=Path("."), help="where compare.md/compare.html go (default: .)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--min-effect", type=float, default=0.05,
                   help="differences under this share of the baseline are not significant (default 0.05)")


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


def _cmd_report(args: argparse.Namespace) -> int:
    from bench.report.document import parse_formats, write_reports
    from bench.analysis.results import load_run

    for path in write_reports(load_run(args.run_dir), args.out, parse_formats(args.format)):
        print(path)
    return EXIT_OK


def _cmd_plot(args: argparse.Namespace) -> int:
    from bench.report.figures import formats_for, plot_runs, save_figures
    from bench.analysis.results import load_run

    runs = [load_run(path) for path in args.run_dirs]
    out = args.out or (runs[0].path / "figures" if len(runs) == 1 else Path("."))
    for path in save_figures(plot_runs(runs), out, formats_for(args.format)):
        print(path)
    return EXIT_OK


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from bench.commands.calibrate import calibrate, safe_range

    print(f"client ceiling against `bench sim --profile zero` (same machine), {args.seconds:g} s per point, "
          f"workers={args.workers}")
    safe = safe_range(calibrate(seconds=args.seconds, workers=args.workers))
    if safe["ceiling_chunks_per_s"]:
        print(f"ceiling (client and simulator on this machine): {safe['ceiling_chunks_per_s']:,.0f} chunks/s, "
              f"{safe['ceiling_requests_per_s']:,.0f} req/s")
    rate = f"up to {safe['rate']:g} req/s" if safe["rate"] else "below the lowest rate tried"
    chunks = f"{safe['safe_chunks_per_s']:,.0f}" if safe["safe_chunks_per_s"] else "?"
    print(f"safe operating range: open loop {rate} with no client warning; streaming loads up to ~{chunks} "
          "chunks/s in total (streams x tokens/s each). Above it, use --workers or another client machine.")
    return EXIT_OK


def _cmd_probe(args: argparse.Namespace) -> int:
    import asyncio
    from contextlib import ExitStack

    from bench.target.probe import ProbeConnectError, print_report, run_probe

    if args.timeout <= 0:
        raise BenchInputError(f"--timeout: {args.timeout:g} is not a positive number of seconds")
    api_key = None
    if args.api_key_env:
        api_key = (os.environ.get(args.api_key_env) or "").strip()
        if not api_key:
            raise BenchInputError(f"--api-key-env: environment variable {args.api_key_env} is not set")
    with ExitStack() as stack:
        base_url, target = args.base_url, "server"
        if not base_url:
            from bench.sim import ProfileError
            from bench.sim import SimStartError, start_sim

            try:
                sim = stack.enter_context(start_sim(profile=args.profile, seed=0))
            except (ProfileError, SimStartError) as exc:
                raise BenchInputError(f"--profile: {exc}") from None
            base_url = sim.base_url
            target = f"built-in simulator, profile {args.profile!r} (no --base-url given)"
        try:
            report = asyncio.run(run_probe(base_url, args.model, api_key, target, args.timeout))
        except (ProbeConnectError, ValueError) as exc:
            raise BenchInputError(str(exc)) from None
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print_report(report)
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bench.report.compare import compare_runs, console_tables, write_compare
    from bench.report.console import print_wrapped
    from bench.analysis.results import load_run

    if len(args.run_dirs) < 2:
        raise BenchInputError("compare: give at least two run directories (baseline first)")
    if args.resamples < 500:
        raise BenchInputError(f"--resamples: {args.resamples} is too few for the intervals (use >= 500)")
    runs = [load_run(path) for path in args.run_dirs]
    if not 0 <= args.min_effect < 1:
        raise BenchInputError(f"--min-effect: {args.min_effect} is not a share between 0 and 1")
    comparison = compare_runs(runs, seed=args.seed, n_resamples=args.resamples, min_effect=args.min_effect)
    console = Console()
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = max(console.width, 160)  # a file or pipe has no width to fit, unless told
    for table in console_tables(comparison, console.width):
        console.print(table)
    for warning in comparison.warnings:
        print_wrapped(console, f"WARNING: scenario mismatch: {warning}", style="yellow")
    for path in write_compare(comparison, runs, args.out):
        console.print(str(path), highlight=False)
    return EXIT_OK
