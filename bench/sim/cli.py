"""`python -m bench.sim` / `bench sim`: run the simulator in the foreground.

On start it prints one line to stdout, ``bench-sim ready http://HOST:PORT/v1 pid=PID``
(the parent process in `start_sim` reads the port from it), logs to stderr, and runs
until SIGINT/SIGTERM, then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.sim.faults import FaultSpec, parse_fault
from bench.sim.listen import listen
from bench.sim.process import READY_PREFIX
from bench.sim.profile import Profile, ProfileError, builtin_profiles, load_profile
from bench.sim.server import SimServer

__all__ = ["add_arguments", "add_profile_flags", "main", "run_from_args"]

log = logging.getLogger("bench.sim")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8011, help="port (0: any free port)")
    parser.add_argument("--profile", default="default",
                        help=f"built-in name ({', '.join(builtin_profiles())}) or a YAML/JSON file")
    parser.add_argument("--profile-json", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help="seed of text, lengths and faults")
    parser.add_argument("--fault", action="append", default=[], metavar="SPEC",
                        help="inject a fault, e.g. http_500:p=0.1 or drop:every=5 (repeatable)")
    parser.add_argument("--trace", default=None, metavar="FILE",
                        help="append each request's ground truth to FILE as JSONL")
    parser.add_argument("--list-profiles", action="store_true",
                        help="print the built-in profiles and exit")
    parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    add_profile_flags(parser)


# Scalar profile fields are flags too (`--max-num-seqs 16`), so that a server-config sweep
# (`bench sweep --serve-params`) drives the simulator exactly as it drives a real server.
_FLAG_TYPES: dict[Any, Callable[[str], Any]] = {int: int, float: float, str: str}


def add_profile_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per scalar field of Profile, overriding the loaded profile's value."""
    group = parser.add_argument_group("profile fields (override the profile's value)")
    for name, info in Profile.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if info.annotation is bool:
            group.add_argument(flag, dest=f"set_{name}", action=argparse.BooleanOptionalAction, default=None)
        elif info.annotation in _FLAG_TYPES and name not in ("name", "description"):
            kind = _FLAG_TYPES[info.annotation]
            group.add_argument(flag, dest=f"set_{name}", type=kind, default=None, metavar=kind.__name__.upper())


def _with_flags(profile: Profile, args: argparse.Namespace) -> Profile:
    overrides = {name: getattr(args, f"set_{name}") for name in Profile.model_fields
                 if getattr(args, f"set_{name}", None) is not None}
    if not overrides:
        return profile
    return load_profile({**profile.model_dump(), **overrides})


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Stop when the process that started us is gone (we get re-parented), so that a
    crashed or killed test run leaves no server behind. Polling getppid() works whatever
    thread of the parent started us (PR_SET_PDEATHSIG fires when that thread ends)."""
    while os.getppid() == parent_pid:  # noqa: ASYNC110 - no event says the parent is gone: poll
        await asyncio.sleep(0.5)
    log.info("parent %d is gone: stopping", parent_pid)
    stop.set()


async def _serve(args: argparse.Namespace, server: SimServer) -> None:
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False,
                           shutdown_timeout=1.0)
    await runner.setup()
    loop = asyncio.get_running_loop()
    assert runner.server is not None
    # Our own listening socket (instead of web.TCPSite) so that each connection's
    # protocol is wrapped to stamp request arrival (SimServer.protocol_factory).
    listener = await listen(server.protocol_factory(runner.server), args.host, args.port,
                            server.profile.kernel_rx_stamps)
    port = listener.port
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watchdog = None
    if args.parent_pid is not None:
        watchdog = loop.create_task(_watch_parent(args.parent_pid, stop))
    host = args.host if ":" not in args.host else f"[{args.host}]"
    print(f"{READY_PREFIX}http://{host}:{port}/v1 pid={os.getpid()}", flush=True)
    # Objects made at start-up live forever: keep them out of the collector's scans, which
    # otherwise add milliseconds of jitter to step times.
    gc.collect()
    gc.freeze()
    try:
        await stop.wait()
    finally:
        if watchdog is not None:
            watchdog.cancel()
        listener.close()
        await runner.cleanup()


def run_from_args(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s bench.sim %(levelname)s %(message)s")
    if args.list_profiles:
        for name in builtin_profiles():
            prof = load_profile(name)
            print(f"{name:12s} models={','.join(prof.models)}  {prof.description}")
        return 0
    try:
        if args.profile_json is not None:
            profile = load_profile(json.loads(Path(args.profile_json).read_text()))
        else:
            profile = load_profile(args.profile)
        profile = _with_flags(profile, args)
        faults: list[FaultSpec] = [parse_fault(f) for f in args.fault]
    except (ProfileError, ValueError, OSError) as exc:
        print(f"bench sim: {exc}", file=sys.stderr)
        return 2
    server = SimServer(profile, seed=args.seed, faults=faults, trace_path=args.trace)
    log.info("profile %s, models %s, seed %d, faults %s", profile.name,
             ",".join(profile.models), args.seed,
             ",".join(f.label() for f in server.fault_plan.specs) or "none")
    try:
        import uvloop

        run: Callable[[Coroutine[Any, Any, None]], None] = uvloop.run
    except ImportError:
        run = asyncio.run
    try:
        run(_serve(args, server))
    except OSError as exc:  # e.g. the port is taken
        print(f"bench sim: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m bench.sim") -> int:
    parser = argparse.ArgumentParser(prog=prog,
                                     description="Simulated OpenAI-compatible LLM server.")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
