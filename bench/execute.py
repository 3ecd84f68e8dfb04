"""`bench run`: resolve the target, run the plan, store and summarise. The composition root.

Each step is its own function; this module wires the layers together and owns the
process-level concerns (signals, event loop, GC, the embedded simulator's lifetime).
"""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import shutil
import signal
import socket
import sys
import tempfile
import time
from contextlib import AsyncExitStack, ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import numpy as np
import orjson

from bench import __version__, saturation
from bench.client import ClientConfig, ClientError, StreamClient, arrival_stamp_source
from bench.errors import BenchInputError, RunFailed, TargetUnusable
from bench.loopmon import LoopMonitor, client_warnings
from bench.records import OUTPUT_KIND_CODES, RequestRecord
from bench.redact import redact_argv, redact_scenario
from bench.results import Run, finalize_run
from bench.runner import Progress, RunPlan, Runner, StagePlan
from bench.scenario import Launch, Load, Scenario, resolve_path
from bench.schedule import Schedule, StageSpec, build_schedule
from bench.store import SCHEMA_VERSION, SERVER_LOG, SERVER_METRICS, Manifest, RunWriter, WorkloadInfo
from bench.recorder import StreamProtocolError, StreamRecorder
from bench.workload import PromptSet, TokenModel, Workload, synthetic_text

ENDPOINT_PATHS = {"chat": "/chat/completions", "completions": "/completions"}
T = TypeVar("T")


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
    if scenario.load.stop_on_saturation and (scenario.ray is not None or scenario.load.workers != 1):
        raise BenchInputError(f"{options.scenario_path}: load.stop_on_saturation: the early stop watches one "
                              "client process; set load.workers: 1 and no ray section")
    if scenario.ray is not None:
        from bench.ray_workers import require_ray

        require_ray()  # before anything starts: exit 2 with how to install it
    with ExitStack() as stack:
        target = _resolve_target(scenario, stack)
        api_key = read_api_key(scenario)
        result: RunResult = _run_loop(_execute(scenario, options, target, api_key))
    keep_server_log(target, result.run.path)
    return result


def _run_loop(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # optional: a plain asyncio loop works, with more wake-up lag
        factory = None
    else:
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


@dataclass(frozen=True)
class TargetInfo:
    base_url: str
    description: str
    simulated: bool = False
    launch_pid: int | None = None
    launch_command: str | None = None
    launch_log: Path | None = None

    def manifest_dict(self, endpoint: str) -> dict[str, Any]:
        info: dict[str, Any] = {"base_url": self.base_url, "endpoint": endpoint, "simulated": self.simulated,
                                "description": self.description}
        if self.launch_pid is not None:
            info["launched"] = {"pid": self.launch_pid, "command": self.launch_command}
        return info


def _resolve_target(scenario: Scenario, stack: ExitStack) -> TargetInfo:
    target = scenario.target
    if target.launch is not None and target.base_url:
        return _launch_server(target.launch, target.base_url, stack)
    if target.base_url:
        return TargetInfo(target.base_url, "external server")
    from bench.sim import start_sim  # only needed when no server was given

    profile = target.sim_profile or "default"
    sim = stack.enter_context(start_sim(profile=profile, seed=scenario.seed))
    cores = separate_cores(sim.pid, stack)
    note = f"built-in simulator, profile {profile!r}" + (f", on core {cores}" if cores is not None else "")
    return TargetInfo(sim.base_url, note, simulated=True)


def separate_cores(server_pid: int, stack: ExitStack) -> int | None:
    """Put a local server (the embedded simulator, a test's or benchmark's) on a core of its
    own and this process on the others (Linux, >= 2 cores), until `stack` closes.

    Left to the OS scheduler, client and simulator keep landing on one core and every
    timestamp waits for the other process (measured on 2 cores: ~1.1 ms of added lateness
    at 64 streams; ~0.1 ms once separated)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    try:
        os.sched_setaffinity(server_pid, {cpus[-1]})
        os.sched_setaffinity(0, set(cpus[:-1]))
    except OSError:
        return None  # not permitted here: timings stay valid, just noisier
    stack.callback(os.sched_setaffinity, 0, set(cpus))
    return cpus[-1]


def _launch_server(launch: Launch, base_url: str, stack: ExitStack) -> TargetInfo:
    from bench.launch import LaunchedServer, LaunchError, split_command

    fd, name = tempfile.mkstemp(prefix="bench-server-", suffix=".log")
    os.close(fd)
    log = Path(name)
    server = LaunchedServer(launch.command, base_url, log, env=launch.env or None,
                            ready_timeout_s=launch.ready_timeout_s)
    try:
        server.start()
    except LaunchError as exc:
        raise RunFailed(f"target.launch: {exc}") from None
    # Stopped by PID (its process group) however the run ends.
    stack.callback(server.stop)
    command = " ".join(redact_argv(split_command(launch.command)))
    return TargetInfo(base_url, "launched server", launch_pid=server.pid, launch_command=command, launch_log=log)


def keep_server_log(target: TargetInfo, run_dir: Path) -> None:
    """Move the launched server's log into the run directory (it is stopped by now)."""
    log = target.launch_log
    if log is not None and log.exists() and run_dir.is_dir():
        shutil.move(str(log), run_dir / SERVER_LOG)


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


async def _execute(scenario: Scenario, options: RunOptions, target: TargetInfo, api_key: str | None) -> RunResult:
    async with RunSession(scenario, options, target, api_key, workers=scenario.load.workers,
                          ray=scenario.ray is not None) as session:
        stages = stage_plans(session.schedule, scenario.load)
        try:
            if scenario.load.stop_on_saturation:
                session.ended = await run_watched(session, stages)
            else:
                session.ended = await session.runner.run(stages, session.stop)
        except RunFailed as exc:  # a client worker or Ray actor died: keep what it sent
            session.failure = str(exc)
    return session.result()


async def run_watched(session: RunSession, stages: list[StagePlan]) -> str:
    """`Runner.run` with the early stop (load.stop_on_saturation): send the stages while a
    watcher samples the runner's counters; once `saturation.saturated_now` holds, stop
    sending, drain for saturation.DRAIN_TIMEOUT_S (cancelling what is left, every record
    kept) and end "saturated". Returns completed | saturated | interrupted."""
    runner = session.runner
    halt = asyncio.Event()
    watch = SaturationWatch(session, stages, halt)
    watcher = asyncio.ensure_future(watch.run())
    try:
        for stage in stages:
            if not await runner.send(stage, halt):
                break
        if session.stop.is_set():
            await runner.cancel_in_flight()
            return "interrupted"
        saturated = watch.reason is not None
        if not await runner.drain(session.stop, saturation.DRAIN_TIMEOUT_S if saturated else None):
            await runner.cancel_in_flight()
        if session.stop.is_set():
            return "interrupted"
        if saturated:
            session.end_reason = watch.reason
            session.stopped = (watch.stage, watch.stopped_s)
            return "saturated"
        return "completed"
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


WAITS_PRUNE_AT = 16_384  # finished-request waits held by the watch before old ones are dropped


class SaturationWatch:
    """Samples `session.progress` every saturation.SAMPLE_S during the open-loop stages and
    reads the finished records' waits for a first token (`saturation.saturated_now`); sets
    `halt` on the user's stop or on saturation (then `reason` says why). Arrivals are the
    stage's schedule, so requests waiting for a load.max_concurrency slot count as queued."""

    def __init__(self, session: RunSession, stages: list[StagePlan], halt: asyncio.Event) -> None:
        self.session = session
        self.stages = {s.index: s for s in stages if s.offsets is not None}
        self.halt = halt
        self.reason: str | None = None
        self.stopped_s: float | None = None  # when the watch fired (seconds from t0)
        self.waits: list[saturation.Wait] = []
        self.stage = -1
        session.sink.observer = self._observe

    def _observe(self, record: RequestRecord) -> None:
        if record.stage != self.stage:
            return
        chunks = record.chunks  # in arrival order: the first output chunk is the first token
        first = next((t for t, kind in zip(chunks.t, chunks.kind, strict=True) if kind in OUTPUT_KIND_CODES), None)
        wait = saturation.record_wait(record.scheduled_s, first, record.error_kind)
        if wait is not None:
            self.waits.append(wait)

    async def run(self) -> None:
        session = self.session
        progress = session.progress
        samples: list[saturation.Sample] = []
        sent_before = 0
        keep = int((saturation.SETTLE_S + saturation.WINDOW_S) / saturation.SAMPLE_S) + 4
        try:
            while not session.stop.is_set():
                now = session.now_s()
                if progress.stage != self.stage:
                    self.stage, sent_before, samples, self.waits = progress.stage, progress.sent, [], []
                plan = self.stages.get(self.stage)
                if plan is not None and now > plan.start_s:
                    assert plan.offsets is not None
                    arrived = int(np.searchsorted(plan.offsets, now, side="right"))
                    waiting = max(0, arrived - (progress.sent - sent_before))  # for a concurrency slot
                    samples.append((now, progress.in_flight + waiting, arrived, progress.done - progress.errors))
                    del samples[:-keep]
                    if len(self.waits) > WAITS_PRUNE_AT:  # keep memory bounded on long stages
                        self.waits = [w for w in self.waits if w[0] >= now - saturation.WAIT_LOOKBACK_S]
                    if saturation.saturated_now(samples, plan.start_s, self.waits):
                        self.stopped_s = now
                        self.reason = self._why(samples, self.stage)
                        break
                await asyncio.sleep(saturation.SAMPLE_S)
        finally:
            session.sink.observer = None
            self.halt.set()

    def _why(self, samples: list[saturation.Sample], stage: int) -> str:
        window = [s for s in samples if s[0] >= samples[-1][0] - saturation.WINDOW_S]
        span = window[-1][0] - window[0][0]
        sent, done = window[-1][2] - window[0][2], window[-1][3] - window[0][3]
        where = f"stage {stage}, " if len(self.stages) > 1 else ""
        return (f"load.stop_on_saturation: stopped sending at t={samples[-1][0]:.1f}s ({where}in flight "
                f"{window[0][1]} -> {window[-1][1]}; arrivals {sent / span:.2f}/s, completions "
                f"{done / span:.2f}/s over the last {span:.1f} s)")


class RunSession:
    """Everything one run directory needs while requests flow: client, workload, schedule,
    writer, runner, signal handling. Used by `bench run` (all stages at once) and by
    `bench sweep` (one stage at a time, deciding the next from the stored results)."""

    def __init__(self, scenario: Scenario, options: RunOptions, target: TargetInfo, api_key: str | None,
                 workers: int | str = 1, ray: bool = False) -> None:
        self.scenario = scenario
        self._workers_setting = workers  # > 1 or "auto": client worker processes (`bench run` only)
        self._ray = ray  # scenario.ray: Ray actors instead (`bench run --ray` only)
        self.pool: Any = None
        self.options = options
        self.target = target
        self.base_url = target.base_url
        self.api_key = api_key
        self.stop = asyncio.Event()
        self.signals: list[str] = []
        self.ended = "failed"
        self.failure: str | None = None
        self.end_reason: str | None = None  # why a run ended "saturated"
        self.stopped: tuple[int, float | None] | None = None  # (stage, t) the saturation watch stopped
        self.stage_notes: list[dict[str, Any]] = []
        self._cleanup = AsyncExitStack()

    async def __aenter__(self) -> RunSession:
        try:
            await self._enter()
        except BaseException:
            # __aexit__ only runs after a successful __aenter__: close what was opened
            await self._cleanup.aclose()
            raise
        return self

    async def _enter(self) -> None:
        from bench.console import live_progress

        scenario = self.scenario
        load = scenario.load
        trace = read_trace_for(scenario, self.options.scenario_path)
        self.schedule = build_schedule(load, scenario.seed, trace)
        peak = _peak_concurrency(scenario, self.schedule)
        self.client = StreamClient(ClientConfig(self.base_url, self.api_key,
                                                scenario.target.timeouts.connect_s, max(peak, 64)))
        self._cleanup.push_async_callback(self.client.aclose)
        self.model = await _resolve_model(scenario, self.client, self.base_url)
        server_info = await fetch_server_info(self.base_url)
        prompts = trace_prompts_for(scenario, trace)
        self.token_model = token_model = await calibrate_prompts(scenario, self.client, self.model, self.base_url)
        self.workload = Workload(scenario, self.options.scenario_path, self.model, prompts, token_model)
        self.writer = RunWriter(_run_dir(scenario, self.options),
                                _manifest(scenario, self.options, self.target, self.model))
        self.writer.manifest.server = server_info
        self.writer.manifest.workload = workload_info(self.workload.prompt_set)
        if token_model is not None:
            self.writer.manifest.client["prompt_tokens_model"] = asdict(token_model)
        self.writer.write_manifest()
        self.sink = _GuardedSink(self.writer, self.stop)
        self.progress = Progress()
        self._install_signals()
        if self._ray:
            await self._start_ray(peak)
        elif (workers := self._worker_count()) > 1:
            await self._start_workers(workers, peak)
        _freeze_gc()
        self._cleanup.callback(_thaw_gc)
        await self._cleanup.enter_async_context(live_progress(self.progress, self.options.show_progress))
        # t0 is taken after all set-up so the first send is not born late (workers need
        # the start message first).
        t0 = time.perf_counter() + (getattr(self.pool, "start_delay_s", 0.1) if self.pool is not None else 0.01)
        self.writer.manifest.t0_perf_counter = t0
        self.writer.write_manifest()
        await self._start_scraper(t0)
        self._start_monitor()
        if self.pool is not None:
            self.pool.t0 = t0
            self.runner = self.pool
        else:
            self.runner = Runner(build_plan(scenario), self.workload, self.client, self.sink, t0, self.progress)

    def _worker_count(self) -> int:
        from bench.workers import resolve_workers

        closed = [s.concurrency or 0 for s in self.schedule.stages if s.kind == "closed"]
        return resolve_workers(self._workers_setting, self.schedule.offered_rate, max(closed, default=0),
                               simulated=self.target.simulated)

    def _worker_configs(self, count: int, peak: int) -> list[Any]:
        from bench.workers import WorkerConfig, shard_plan

        plan = build_plan(self.scenario)
        return [WorkerConfig(index=k, count=count, scenario=self.scenario,
                             scenario_path=self.options.scenario_path, base_url=self.base_url,
                             api_key=self.api_key, model=self.model,
                             max_connections=max(peak // count + 1, 64), plan=shard_plan(plan, k, count),
                             token_model=self.token_model)
                for k in range(count)]

    async def _start_workers(self, count: int, peak: int) -> None:
        from bench.workers import WorkerPool

        self.pool = WorkerPool(self._worker_configs(count, peak), self.sink, self.progress)
        self._cleanup.push_async_callback(self.pool.aclose)
        await self.pool.start()
        self.writer.manifest.client["worker_count"] = count

    async def _start_ray(self, peak: int) -> None:
        from bench.ray_workers import RayPool, connect, disconnect

        settings = self.scenario.ray
        assert settings is not None
        started, node_cpus = connect(settings.address)
        self._cleanup.callback(disconnect, started)  # after the actors are killed (LIFO)
        count = settings.workers or max(1, len(node_cpus))
        self.pool = RayPool(self._worker_configs(count, peak), self.sink, self.progress, node_cpus,
                            continue_on_failure=settings.continue_on_actor_failure)
        self._cleanup.push_async_callback(self.pool.aclose)
        await self.pool.start()
        self.writer.manifest.client.update(worker_count=count, ray={"address": settings.address or "local",
                                                                    "started_local": started and settings.address in (None, "local"),
                                                                    "nodes": len(node_cpus)})

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is not None:
                await self.runner.cancel_in_flight() if hasattr(self, "runner") else None
        finally:
            await self._cleanup.aclose()

    def _start_monitor(self) -> None:
        """Self-calibration: event-loop lag and CPU of this process, into manifest.client."""
        monitor = LoopMonitor()
        monitor.start()

        async def finish() -> None:
            self.writer.manifest.client.update(await monitor.stop())

        self._cleanup.push_async_callback(finish)

    async def _start_scraper(self, t0: float) -> None:
        settings = self.scenario.target.metrics
        if not settings.enabled:
            return
        from bench.promscrape import MetricsScraper

        url = settings.url or f"{_root_url(self.base_url)}/metrics"
        scraper = MetricsScraper(url, settings.interval_s, clock=lambda: time.perf_counter() - t0)
        await scraper.start()

        async def finish() -> None:
            await scraper.stop()
            self._store_server_metrics(scraper)

        self._cleanup.push_async_callback(finish)

    def _store_server_metrics(self, scraper: Any) -> None:
        stats = scraper.stats
        manifest = self.writer.manifest
        manifest.server["metrics"] = {"url": scraper.url, "scrapes_ok": stats.ok, "scrapes_failed": stats.errors,
                                      "last_error": stats.last_error}
        if stats.ok:
            scraper.to_frame().to_parquet(self.writer.run_dir / SERVER_METRICS, index=False)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            self.signals.append(signal.Signals(signum).name)
            self.stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
            self._cleanup.callback(loop.remove_signal_handler, sig)

    def now_s(self) -> float:
        return time.perf_counter() - self.runner.t0

    def result(self) -> RunResult:
        ended, reason = self.ended, None
        if self.sink.failure is not None:
            ended, reason = "failed", self.sink.failure
        elif self.failure is not None:
            ended, reason = "failed", self.failure
        elif ended == "interrupted":
            reason = f"signal {self.signals[0]}" if self.signals else "stopped"
        elif ended == "saturated":
            reason = self.end_reason
        self.writer.manifest.stages = self.stage_notes or [_stage_note(s) for s in self.schedule.stages]
        if self.stopped is not None:  # the stored verdict replays the watch up to this moment
            for note in self.writer.manifest.stages:
                if note.get("index") == self.stopped[0]:
                    note["stopped_s"] = self.stopped[1]
        if self.pool is not None:
            self.writer.manifest.client["workers"] = self.pool.worker_stats
            self.writer.manifest.notes.extend(getattr(self.pool, "notes", []))
        result = _finish(self.writer, ended, reason)
        count_repeats(result.run)
        _note_client_warnings(result, self.schedule.offered_rate)
        self.writer.write_manifest()
        return result


def workload_info(prompt_set: PromptSet) -> WorkloadInfo:
    """run.json `workload` at the start: the source, its records and those left out."""
    synthetic = prompt_set.source == "synthetic"
    return WorkloadInfo(source=prompt_set.source, records=None if synthetic else prompt_set.records,
                        prompts=None if synthetic else len(prompt_set.prompts),
                        skipped=sum(prompt_set.skipped.values()), skipped_reasons=dict(prompt_set.skipped))


def count_repeats(run: Run) -> None:
    """run.json `workload.drawn` / `repeated` from the stored records: how many prompts the
    run drew (one per block, a conversation's opening turn) and how many of those draws
    repeated a prompt drawn before (dataset prompts under `order: random`, or cycled past
    their number; a server may answer a repeat from its prefix cache). Not for traces,
    whose rows share prompt blocks on purpose."""
    info = run.manifest.workload
    requests = run.requests
    if info is None or info.source == "trace" or not {"turn", "block", "prompt_index"} <= set(requests.columns):
        return
    opening = requests.loc[requests["turn"] == 0, ["prompt_index", "block"]]
    blocks_per_prompt = opening.groupby("prompt_index")["block"].nunique()
    info.drawn = int(blocks_per_prompt.sum())
    info.repeated = info.drawn - len(blocks_per_prompt)


def _note_client_warnings(result: RunResult, offered_rate: float | None) -> None:
    """Store why the client may have shaped the figures (run.json: client.warnings and notes)."""
    run = result.run
    manifest = run.manifest
    warnings = client_warnings(manifest.client, run.requests, offered_rate)
    manifest.client["warnings"] = [{"code": w.code, "message": w.message} for w in warnings]
    manifest.notes.extend(w.message for w in warnings)
    result.notes.extend(w.message for w in warnings)


CALIBRATION_WORDS = (64, 512)
# Set-up requests (model list, calibration probes) are tried this often while the server
# fails in a way that can pass (5xx, 429, a dropped stream), with these pauses between.
PROBE_ATTEMPTS = 4
PROBE_BACKOFF_S = (0.25, 0.5, 1.0)
_CONNECT_KINDS = {"connect_refused": "connection refused", "connect_timeout": "connect timed out"}


async def calibrate_prompts(scenario: Scenario, client: StreamClient, model: str,
                            base_url: str) -> TokenModel | None:
    """Probe how many prompt tokens the server counts for two synthetic prompt sizes, so
    synthetic prompts can be sized in the server's own tokens (tokenizer and template).

    TargetUnusable (one line, exit 2) when the server cannot be reached, or fails every
    one of PROBE_ATTEMPTS tries of a probe (with its HTTP status and message)."""
    req = scenario.requests
    if req is None or req.synthetic is None or not req.synthetic.calibrate:
        return None
    what = "the prompt-token calibration probe (requests.synthetic.calibrate; false skips it)"
    # (a probe that outlasts target.timeouts.ttft_s is not tried again: it would only wait as long again)
    counts = [await with_retries(base_url, what, lambda w=words: _probe_prompt_tokens(scenario, client, model, w))
              for words in CALIBRATION_WORDS]
    if any(c is None for c in counts):
        return None  # the server gives no usage: prompts stay one word per requested token
    (w1, w2), (t1, t2) = CALIBRATION_WORDS, counts
    per_word = (t2 - t1) / (w2 - w1)
    if per_word <= 0:
        return None
    return TokenModel(overhead=t1 - per_word * w1, per_word=per_word)


async def with_retries(base_url: str, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """`attempt()`, tried again (PROBE_ATTEMPTS in all) while its failure may pass: an HTTP
    5xx or 429, a dropped or broken stream. An unreachable server, a lasting failure, a
    4xx or a timeout raise TargetUnusable with one line saying which."""
    failure: BaseException | None = None
    for tries in range(1, PROBE_ATTEMPTS + 1):
        try:
            return await attempt()
        except ClientError as exc:
            if exc.kind in _CONNECT_KINDS or exc.kind == "connect_error":
                raise TargetUnusable(f"cannot connect to {base_url}: {_CONNECT_KINDS.get(exc.kind, exc)}") from None
            failure = exc
            if exc.http_status is not None and exc.http_status < 500 and exc.http_status != 429:
                break  # the server refused this request: asking again gets the same answer
        except StreamProtocolError as exc:
            failure = exc
        except TimeoutError:
            raise TargetUnusable(f"the server at {base_url} did not answer {what} in time") from None
        if tries < PROBE_ATTEMPTS:
            await asyncio.sleep(PROBE_BACKOFF_S[tries - 1])
    raise TargetUnusable(f"the server at {base_url} failed {what}"
                         + (f" {tries} times in a row" if tries > 1 else "") + f": {_failure_line(failure)}")


def _failure_line(exc: BaseException | None) -> str:
    status = getattr(exc, "http_status", None)
    kind = f"HTTP {status}" if status is not None else getattr(exc, "kind", "error")
    return f"{kind}: {exc}"


async def _probe_prompt_tokens(scenario: Scenario, client: StreamClient, model: str, words: int) -> int | None:
    rng = np.random.default_rng([scenario.seed, words, 0xCA1])
    text = synthetic_text(words, rng, "calibration")
    body: dict[str, Any] = {"model": model, "max_tokens": 1, "stream": True, "stream_options": {"include_usage": True}}
    if scenario.target.endpoint == "chat":
        body["messages"] = [{"role": "user", "content": text}]
    else:
        body["prompt"] = text
    recorder = StreamRecorder(0.0)
    async with asyncio.timeout(scenario.target.timeouts.ttft_s):
        response = await client.open_stream(ENDPOINT_PATHS[scenario.target.endpoint], orjson.dumps(body))
        try:
            async for t, data in response.reads():
                recorder.feed(t, data)
        finally:
            await response.aclose()
    return recorder.usage_tokens()[0]


def _root_url(base_url: str) -> str:
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


async def fetch_server_info(base_url: str) -> dict[str, Any]:
    """What the server says about itself (vLLM /version, llama.cpp /props, TGI /info)."""
    import aiohttp

    info: dict[str, Any] = {}
    root = _root_url(base_url)
    timeout = aiohttp.ClientTimeout(total=2.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for path in ("/version", "/props", "/info"):
            try:
                async with session.get(root + path) as resp:
                    if resp.status == 200 and "json" in resp.content_type:
                        info[path.strip("/")] = _small(await resp.json())
            except (aiohttp.ClientError, TimeoutError, ValueError):
                continue  # not every server has every endpoint
    return info


def _small(value: Any) -> Any:
    """Keep run.json readable: drop long strings (chat templates) and deep nesting."""
    if isinstance(value, dict):
        return {k: _small(v) for k, v in list(value.items())[:50] if not (isinstance(v, str) and len(v) > 500)}
    if isinstance(value, list):
        return [_small(v) for v in value[:20]]
    return value


def stage_plans(schedule: Schedule, load: Load) -> list[StagePlan]:
    plans = []
    for spec in schedule.stages:
        if spec.kind == "open":
            mask = schedule.stage == spec.index
            items = schedule.item[mask] if schedule.item is not None else None
            plans.append(StagePlan(spec.index, spec.start_s, offsets=schedule.offsets[mask], items=items))
        else:
            end = spec.end_s if spec.end_s is not None else load.duration
            plans.append(StagePlan(spec.index, spec.start_s, concurrency=spec.concurrency, end_s=end,
                                   think_time_s=load.think_time))
    return plans


def _stage_note(spec: StageSpec) -> dict[str, Any]:
    return {"index": spec.index, "kind": spec.kind, "start_s": spec.start_s, "duration_s": spec.duration_s,
            "rate": spec.rate, "concurrency": spec.concurrency}


def _peak_concurrency(scenario: Scenario, schedule: Schedule) -> int:
    load = scenario.load
    closed = [s.concurrency or 0 for s in schedule.stages if s.kind == "closed"]
    return max([load.max_concurrency or 4096, *closed])


def read_trace_for(scenario: Scenario, scenario_path: Path) -> Any:
    trace = scenario.load.trace
    if trace is None:
        return None
    from bench.traces import read_trace

    return read_trace(resolve_path(scenario_path, trace.file), trace.format)


def trace_prompts_for(scenario: Scenario, trace: Any) -> list[Any] | None:
    if trace is None:
        return None
    from bench.traces import trace_prompts

    assert scenario.load.trace is not None
    return trace_prompts(trace, scenario.load.trace.block_tokens, scenario.seed)


async def _resolve_model(scenario: Scenario, client: StreamClient, base_url: str) -> str:
    if scenario.target.model:
        return scenario.target.model
    models = await with_retries(base_url, "the model list (GET /models; target.model unset)", client.list_models)
    if not models:
        raise BenchInputError(f"target.model: {base_url}/models lists no model; set target.model")
    return models[0]


def build_plan(scenario: Scenario) -> RunPlan:
    load = scenario.load
    return RunPlan(
        path=ENDPOINT_PATHS[scenario.target.endpoint],
        timeouts=scenario.target.timeouts,
        max_concurrency=load.max_concurrency,
        send_rate_limit=load.send_rate_limit,
        max_requests=load.max_requests,
        warmup_requests=load.warmup.requests,
        warmup_s=load.warmup.seconds,
    )


class _GuardedSink:
    """Stops the run, instead of crashing a request task, when records cannot be written."""

    def __init__(self, writer: RunWriter, stop: asyncio.Event) -> None:
        self._writer = writer
        self._stop = stop
        self.failure: str | None = None
        self.observer: Callable[[RequestRecord], None] | None = None  # the saturation watch

    def write(self, record: RequestRecord) -> None:
        self._guard(self._writer.write, record)
        if self.observer is not None:
            self.observer(record)

    def write_values(self, batch: list[tuple[Any, ...]]) -> None:
        self._guard(self._writer.write_values, batch)

    def _guard(self, write: Any, item: Any) -> None:
        if self.failure is not None:
            return
        try:
            write(item)
        except RunFailed as exc:
            self.failure = str(exc)
            self._stop.set()


_GC_THRESHOLDS: list[tuple[int, int, int]] = []


def _freeze_gc() -> None:
    gc.collect()
    gc.freeze()  # half of the timing tail is GC pauses (shared/FACTS.md)
    _GC_THRESHOLDS.append(gc.get_threshold())
    gc.set_threshold(200_000, 50, 100)


def _thaw_gc() -> None:
    gc.set_threshold(*_GC_THRESHOLDS.pop())
    gc.unfreeze()


def _finish(writer: RunWriter, ended: str, reason: str | None) -> RunResult:
    try:
        writer.close()
    except RunFailed as exc:
        ended, reason = "failed", reason or str(exc)
    manifest = writer.manifest
    manifest.ended = ended
    manifest.end_reason = reason
    manifest.ended_at = _utc_now()
    try:
        writer.write_manifest()
        run = finalize_run(writer.run_dir, manifest)
    except (RunFailed, OSError) as exc:
        if ended != "failed":
            raise RunFailed(f"{writer.run_dir}: cannot finish the run: {exc}") from None
    if ended == "failed":
        # Everything journalled before the failure stays readable with bench.load_run.
        raise RunFailed(f"{reason} (records written before it are kept in {writer.run_dir})")
    return RunResult(run, ended)


def _run_dir(scenario: Scenario, options: RunOptions) -> Path:
    if options.out_dir is not None:
        return options.out_dir
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    candidate = options.results_root / f"{stamp}-{scenario.name}"
    suffix = 2
    while candidate.exists():  # two runs in one second: a new name, never the old directory
        candidate = options.results_root / f"{stamp}-{scenario.name}-{suffix}"
        suffix += 1
    return candidate


def _manifest(scenario: Scenario, options: RunOptions, target: TargetInfo, model: str) -> Manifest:
    return Manifest(
        schema_version=SCHEMA_VERSION,
        bench_version=__version__,
        name=scenario.name,
        scenario=redact_scenario(scenario.model_dump(mode="json")),
        scenario_path=str(options.scenario_path),
        target=target.manifest_dict(scenario.target.endpoint),
        model=model,
        seed=scenario.seed,
        t0_perf_counter=0.0,
        started_at=_utc_now(),
        ended="running",
        python=sys.version.split()[0],
        platform=platform.platform(),
        host=socket.gethostname(),
        client={"library": "openai", "pid": os.getpid(), "arrival_stamps": arrival_stamp_source(target.base_url)},
    )


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
