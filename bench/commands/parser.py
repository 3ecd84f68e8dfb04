"""The `bench` command line's parser: subcommands, flags, and the flags that override scenario fields.

Bad arguments raise BenchInputError (one line, exit 2) instead of argparse's usage and exit.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.errors import BenchInputError

__all__ = ["RUN_OVERRIDES", "build_parser", "parse_variant_flag", "run_overrides"]

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
    rerun = sub.add_parser("rerun", help="run a stored run's scenario again, its overrides included")
    rerun.add_argument("run_dir", type=Path, help="a run directory (its run.json holds the resolved scenario)")
    add_run_outputs(rerun)
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
    p.add_argument("--endpoint", choices=["chat", "completions", "embeddings", "responses"])
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
                        "(none: a local Ray for the run); needs pip install 'llm-bench-harness[ray]'")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=key:value,...",
                   help="add or override a sampling variant, e.g. short=max_tokens:64,temperature:0")
    add_run_outputs(p)


def add_run_outputs(p: argparse.ArgumentParser) -> None:
    """Where a new run goes and what is printed: `bench run` and `bench rerun`."""
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
    points = p.add_mutually_exclusive_group()
    points.add_argument("--rates", type=_floats, help="comma-separated request rates, e.g. 1,2,4,8")
    points.add_argument("--concurrencies", type=_ints, help="comma-separated concurrencies, e.g. 1,4,16,64")
    points.add_argument("--auto", type=int, metavar="N", help="synchronous, max throughput, then N rates between")
    points.add_argument("--find-max-rate", action="store_true",
                        help="search the highest rate meeting the scenario's slo")
    p.add_argument("--start-rate", type=float, default=1.0, help="first rate of --find-max-rate")
    p.add_argument("--stage-duration", type=float, default=15.0, help="seconds per point")
    p.add_argument("--sweep-max-concurrency", type=int, default=256, help="concurrency of --auto's throughput point")
    p.add_argument("--serve-params", type=Path, metavar="FILE",
                   help="server configurations (grid: {param: [values]} and/or configs: [...]); each is launched "
                        "and swept in turn (without points: the scenario's own load)")
    p.add_argument("--serve-cmd", metavar="CMD",
                   help='the server command of --serve-params, e.g. "vllm serve M --port {port} {flags}" '
                        "(default: the built-in simulator, its profile fields as parameters)")


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


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path)
    p.add_argument("--format", choices=["md", "html", "csv", "all"], default="all")
    p.add_argument("--out", type=Path, help="output directory (default: the run directory)")
    p.add_argument("--as", dest="as_tool", metavar="TOOL",
                   help="print TTFT, ITL, TPOT, E2E and output throughput as TOOL defines them (vllm, sglang, "
                        "guidellm, aiperf, inference-perf, llmperf, bench) instead of writing the reports")


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
    p.add_argument("--fail-on", metavar="KEY.STAT:+N%,KEY:-N%",
                   help="exit 3 when a run is significantly worse than the baseline past a threshold, "
                        "e.g. ttft_ms.p99:+10%%,output_tokens_per_s:-5%%")
    p.add_argument("--json", action="store_true", help="print the comparison (and the gate) as JSON, no tables")


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
