"""`bench run`: resolve the target, run the plan, store and summarise. The composition root.

Each step is its own function; this module wires the layers together and owns the
process-level concerns (signals, event loop, GC, the embedded simulator's lifetime).
"""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import signal
import socket
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import __version__
from bench.client import ClientConfig, ClientError, StreamClient
from bench.errors import BenchInputError, RunFailed
from bench.records import RequestRecord
from bench.results import Run, finalize_run
from bench.runner import Progress, RunPlan, Runner
from bench.scenario import Scenario
from bench.schedule import arrival_offsets
from bench.store import SCHEMA_VERSION, Manifest, RunWriter
from bench.workload import Workload

ENDPOINT_PATHS = {"chat": "/chat/completions", "completions": "/completions"}


@dataclass(frozen=True)
class RunOptions:
    scenario_path: Path
    out_dir: Path | None = None
    results_root: Path = Path("results")
    show_progress: bool = True


@dataclass
class RunResult:
    run: Run
    ended: str
    notes: list[str] = field(default_factory=list)


def run_scenario(scenario: Scenario, options: RunOptions) -> RunResult:
    """Run a validated scenario to a stored, summarised run directory."""
    with ExitStack() as stack:
        base_url, sim_note = _resolve_target(scenario, stack)
        api_key = read_api_key(scenario)
        return _run_loop(_execute(scenario, options, base_url, api_key, sim_note))


def _run_loop(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # optional: a plain asyncio loop works, with more wake-up lag
        factory = None
    else:
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def _resolve_target(scenario: Scenario, stack: ExitStack) -> tuple[str, str | None]:
    if scenario.target.base_url:
        return scenario.target.base_url, None
    from bench.sim import start_sim  # only needed when no server was given

    profile = scenario.target.sim_profile or "default"
    sim = stack.enter_context(start_sim(profile=profile, seed=scenario.seed))
    return sim.base_url, f"built-in simulator, profile {profile!r}"


def read_api_key(scenario: Scenario) -> str | None:
    target = scenario.target
    if target.api_key_env:
        value = os.environ.get(target.api_key_env)
        if not value:
            raise BenchInputError(f"target.api_key_env: environment variable {target.api_key_env} is not set")
        return value.strip()
    if target.api_key_file:
        path = Path(target.api_key_file).expanduser()
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise BenchInputError(f"target.api_key_file: cannot read {path}: {exc.strerror or exc}") from None
    return None


async def _execute(scenario: Scenario, options: RunOptions, base_url: str, api_key: str | None,
                   sim_note: str | None) -> RunResult:
    load = scenario.load
    peak = load.concurrency or load.max_concurrency or 4096
    client = StreamClient(ClientConfig(base_url, api_key, scenario.target.timeouts.connect_s, max(peak, 64)))
    try:
        model = await _resolve_model(scenario, client, base_url)
        workload = Workload(scenario, options.scenario_path, model)
        plan = build_plan(scenario)
        writer = RunWriter(_run_dir(scenario, options), _manifest(scenario, options, base_url, model, sim_note))
        ended, reason = await _drive(plan, workload, client, writer, options.show_progress)
    finally:
        await client.aclose()
    return _finish(writer, ended, reason)


async def _resolve_model(scenario: Scenario, client: StreamClient, base_url: str) -> str:
    if scenario.target.model:
        return scenario.target.model
    try:
        models = await client.list_models()
    except ClientError as exc:
        raise BenchInputError(f"target.base_url: cannot list models at {base_url}: {exc.kind}: {exc}") from None
    if not models:
        raise BenchInputError(f"target.model: {base_url}/models lists no model; set target.model")
    return models[0]


def build_plan(scenario: Scenario, stage: int = 0) -> RunPlan:
    load = scenario.load
    return RunPlan(
        path=ENDPOINT_PATHS[scenario.target.endpoint],
        timeouts=scenario.target.timeouts,
        offsets=arrival_offsets(load, scenario.seed),
        concurrency=load.concurrency,
        max_concurrency=load.max_concurrency,
        send_rate_limit=load.send_rate_limit,
        duration_s=load.duration,
        max_requests=load.max_requests,
        warmup_requests=load.warmup.requests,
        warmup_s=load.warmup.seconds,
        stage=stage,
    )


class _GuardedSink:
    """Stops the run, instead of crashing a request task, when records cannot be written."""

    def __init__(self, writer: RunWriter, stop: asyncio.Event) -> None:
        self._writer = writer
        self._stop = stop
        self.failure: str | None = None

    def write(self, record: RequestRecord) -> None:
        if self.failure is not None:
            return
        try:
            self._writer.write(record)
        except RunFailed as exc:
            self.failure = str(exc)
            self._stop.set()


async def _drive(plan: RunPlan, workload: Workload, client: StreamClient, writer: RunWriter,
                 show_progress: bool) -> tuple[str, str | None]:
    from bench.console import live_progress

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals: list[str] = []

    def on_signal(signum: int) -> None:
        signals.append(signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    sink = _GuardedSink(writer, stop)
    progress = Progress()
    gc.collect()
    gc.freeze()  # half of the timing tail is GC pauses (shared/FACTS.md)
    thresholds = gc.get_threshold()
    gc.set_threshold(200_000, 50, 100)
    try:
        async with live_progress(progress, show_progress):
            # t0 is taken after all set-up so the first send is not born late.
            t0 = time.perf_counter() + 0.01
            writer.manifest.t0_perf_counter = t0
            writer.write_manifest()
            runner = Runner(plan, workload.next_spec, client, sink, t0, progress)
            ended = await runner.run(stop)
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if sink.failure is not None:
        return "failed", sink.failure
    if ended == "interrupted":
        return "interrupted", f"signal {signals[0]}" if signals else "stopped"
    return "completed", None


def _finish(writer: RunWriter, ended: str, reason: str | None) -> RunResult:
    writer.close()
    manifest = writer.manifest
    manifest.ended = ended
    manifest.end_reason = reason
    manifest.ended_at = _utc_now()
    writer.write_manifest()
    run = finalize_run(writer.run_dir, manifest)
    return RunResult(run, ended)


def _run_dir(scenario: Scenario, options: RunOptions) -> Path:
    if options.out_dir is not None:
        return options.out_dir
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return options.results_root / f"{stamp}-{scenario.name}"


def _manifest(scenario: Scenario, options: RunOptions, base_url: str, model: str,
              sim_note: str | None) -> Manifest:
    return Manifest(
        schema_version=SCHEMA_VERSION,
        bench_version=__version__,
        name=scenario.name,
        scenario=scenario.model_dump(mode="json"),
        scenario_path=str(options.scenario_path),
        target={"base_url": base_url, "endpoint": scenario.target.endpoint, "simulated": sim_note is not None,
                "description": sim_note or "external server"},
        model=model,
        seed=scenario.seed,
        t0_perf_counter=0.0,
        started_at=_utc_now(),
        ended="running",
        python=sys.version.split()[0],
        platform=platform.platform(),
        host=socket.gethostname(),
        client={"library": "openai", "pid": os.getpid()},
    )


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
