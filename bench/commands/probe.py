"""`bench probe`: send the probe's requests to a server (or the built-in simulator) and print its dialect."""

from __future__ import annotations

import argparse
import json
import os

from bench.commands.exits import EXIT_OK
from bench.errors import BenchInputError

__all__ = ["cmd_probe"]


def cmd_probe(args: argparse.Namespace) -> int:
    import asyncio
    from contextlib import ExitStack

    from bench.report.probe import print_probe_report
    from bench.target.probe import ProbeConnectError, run_probe

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
            from bench.sim import ProfileError, SimStartError, start_sim

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
        print_probe_report(report)
    return EXIT_OK
