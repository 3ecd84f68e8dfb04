"""Command line: `bench run | rerun | sim | sweep | probe | scenario-schema | summary | report | plot | compare | calibrate`.

Every user-facing failure is one line on stderr with a non-zero exit code: 2 for bad input,
1 for a failed run, 130 for an interrupted one; 3 for a run stopped early on saturation
(`--stop-on-saturation`). Library code raises; only `main` exits. The parser is
`bench.commands.parser`; the handlers are `bench.commands.handlers`, `.probe` and `.calibrate`.
"""

from __future__ import annotations

import argparse
import gc
import sys

from bench.commands.exits import EXIT_FAILED, EXIT_INPUT, EXIT_INTERRUPTED
from bench.commands.handlers import (
    cmd_compare,
    cmd_plot,
    cmd_report,
    cmd_rerun,
    cmd_run,
    cmd_scenario_schema,
    cmd_sim,
    cmd_summary,
    cmd_sweep,
)
from bench.commands.parser import build_parser
from bench.errors import BenchInputError, RunFailed

__all__ = ["entry", "main"]


def entry() -> None:
    """The `bench` command and `python -m bench`: main(), then exit without the interpreter's
    final garbage collection, which walks every object a large run made (2 s after 4,096
    requests in flight; the run is stored and its files closed by then)."""
    code = main()
    gc.freeze()
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else argv
        args = build_parser(with_sim=argv[:1] == ["sim"]).parse_args(argv)
        args.command_line = ("bench", *argv)  # as typed, for run.json provenance
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
    if args.command == "calibrate":
        from bench.commands.calibrate import cmd_calibrate  # imports yaml: only when asked

        return cmd_calibrate(args)
    if args.command == "probe":
        from bench.commands.probe import cmd_probe

        return cmd_probe(args)
    handlers = {"run": cmd_run, "sim": cmd_sim, "sweep": cmd_sweep, "scenario-schema": cmd_scenario_schema,
                "rerun": cmd_rerun, "summary": cmd_summary, "report": cmd_report, "plot": cmd_plot, "compare": cmd_compare}
    handler = handlers.get(args.command)
    if handler is None:
        raise BenchInputError(f"unknown command {args.command!r}")
    return handler(args)
