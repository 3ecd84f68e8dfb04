"""`bench run`: resolve the target, run the plan, store and summarise. The composition root.

Each step is its own function; this module wires the layers together and owns the
process-level concerns (signals, event loop, GC, the embedded simulator's lifetime).
"""

from __future__ import annotations

import asyncio
import signal
import time
from contextlib import AsyncExitStack, ExitStack
from typing import Any

from bench.analysis.clientload import client_warnings
from bench.commands.rundir import (
    GuardedSink,
    RunOptions,
    RunResult,
    count_repeats,
    finish_run,
    keep_server_log,
    new_manifest,
    run_dir_for,
    workload_info,
)
from bench.commands.tokens import count_output_tokens
from bench.commands.watch import run_watched
from bench.errors import BenchInputError, RunFailed
from bench.records import Progress, RunState, run_state
from bench.runner.client import ClientConfig, StreamClient
from bench.runner.loopmon import LoopMonitor
from bench.runner.process import freeze_gc, in_flight_cap, peak_rss_mib, run_loop, thaw_gc
from bench.runner.runner import Runner
from bench.runner.sender import Pool, Sender, StageSender
from bench.runner.shards import WorkerConfig
from bench.scenario.loader import resolve_path
from bench.scenario.prompts import TokenModel
from bench.scenario.schema import Scenario
from bench.store import SERVER_METRICS, PromptTokenModel, RaySetup, RunWriter, ScrapeStats, ServerInfo, WorkerInfo
from bench.target.resolve import TargetInfo, fetch_server_info, read_api_key, resolve_model, resolve_target, root_url
from bench.target.tokenizer_file import LocalTokenizer, load_tokenizer
from bench.target.tokens import probe_prompt_tokens
from bench.workload.plan import build_plan, peak_concurrency, read_trace_for, stage_note, stage_plans, trace_prompts_for
from bench.workload.requests import Workload
from bench.workload.schedule import build_schedule

__all__ = ["RunSession", "run_scenario", "scenario_tokenizer"]



def run_scenario(scenario: Scenario, options: RunOptions) -> RunResult:
    """Run a validated scenario to a stored, summarised run directory."""
    if scenario.load.stop_on_saturation and (scenario.ray is not None or scenario.load.workers != 1):
        raise BenchInputError(f"{options.scenario_path}: load.stop_on_saturation: the early stop watches one "
                              "client process; set load.workers: 1 and no ray section")
    if scenario.ray is not None:
        from bench.runner.ray_workers import require_ray

        require_ray()  # before anything starts: exit 2 with how to install it
    tokenizer = scenario_tokenizer(scenario, options)  # a bad file is exit 2 before anything is sent
    with ExitStack() as stack:
        target = resolve_target(scenario, stack)
        api_key = read_api_key(scenario)
        result: RunResult = run_loop(_execute(scenario, options, target, api_key, tokenizer))
    keep_server_log(target, result.run.path)
    return result


def scenario_tokenizer(scenario: Scenario, options: RunOptions) -> LocalTokenizer | None:
    """The scenario's local tokenizer (`tokens.tokenizer`), loaded; BenchInputError for a bad file."""
    if scenario.tokens is None or scenario.tokens.tokenizer is None:
        return None
    return load_tokenizer(resolve_path(options.scenario_path, scenario.tokens.tokenizer),
                          f"{options.scenario_path}: tokens.tokenizer")


async def _execute(scenario: Scenario, options: RunOptions, target: TargetInfo, api_key: str | None,
                   tokenizer: LocalTokenizer | None) -> RunResult:
    async with RunSession(scenario, options, target, api_key, workers=scenario.load.workers,
                          ray=scenario.ray is not None) as session:
        stages = stage_plans(session.schedule, scenario.load)
        try:
            if scenario.load.stop_on_saturation:
                session.ended = run_state(await run_watched(session, stages))
            else:
                session.ended = run_state(await session.runner.run(stages, session.stop))
        except RunFailed as exc:  # a client worker or Ray actor died: keep what it sent
            session.failure = str(exc)
        await session.count_tokens(tokenizer)
    return session.result()


class RunSession:
    """Everything one run directory needs while requests flow: client, workload, schedule,
    writer, runner, signal handling. Used by `bench run` (all stages at once) and by
    `bench sweep` (one stage at a time, deciding the next from the stored results)."""

    def __init__(self, scenario: Scenario, options: RunOptions, target: TargetInfo, api_key: str | None,
                 workers: int | str = 1, ray: bool = False) -> None:
        self.scenario = scenario
        self._workers_setting = workers  # > 1 or "auto": client worker processes (`bench run` only)
        self._ray = ray  # scenario.ray: Ray actors instead (`bench run --ray` only)
        self.pool: Pool | None = None  # client worker processes or Ray actors
        self._local: Runner | None = None  # else this process sends
        self._sender: Sender | None = None  # whichever of the two, once the session is entered
        self.options = options
        self.target = target
        self.base_url = target.base_url
        self.api_key = api_key
        self.stop = asyncio.Event()
        self.signals: list[str] = []
        self.ended: RunState = "failed"
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
        from bench.report.live import LiveStats, live_progress

        scenario = self.scenario
        load = scenario.load
        trace = read_trace_for(scenario, self.options.scenario_path)
        self.schedule = build_schedule(load, scenario.seed, trace)
        peak = peak_concurrency(scenario, self.schedule)
        self.client = StreamClient(ClientConfig(self.base_url, self.api_key,
                                                scenario.target.timeouts.connect_s, max(peak, 64)))
        self._cleanup.push_async_callback(self.client.aclose)
        self.model = await resolve_model(scenario, self.client, self.base_url)
        server_info = await fetch_server_info(self.base_url)
        prompts = trace_prompts_for(scenario, trace)
        self.token_model = token_model = await probe_prompt_tokens(scenario, self.client, self.model, self.base_url)
        self.workload = Workload(scenario, self.options.scenario_path, self.model, prompts, token_model)
        self.writer = RunWriter(run_dir_for(scenario, self.options),
                                new_manifest(scenario, self.options, self.target, self.model))
        self.writer.manifest.server = ServerInfo.model_validate(server_info)
        self.writer.manifest.workload = workload_info(self.workload.prompt_set)
        if trace is not None and trace.attrs.get("left_out"):
            self.writer.manifest.notes.append(
                f"trace: {trace.attrs['left_out']} rows with 0 response tokens (failed in the logged service) "
                "were left out of the replay")
        if token_model is not None:
            self.writer.manifest.client.prompt_tokens_model = PromptTokenModel(overhead=token_model.overhead,
                                                                               per_word=token_model.per_word)
        self._note_prompt_basis(token_model)
        self.writer.write_manifest()
        self.sink = GuardedSink(self.writer, self.stop)
        self.progress = Progress()
        self._install_signals()
        if self._ray:
            await self._start_ray(peak)
        elif (workers := self._worker_count()) > 1:
            await self._start_workers(workers, peak)
        freeze_gc()
        self._cleanup.callback(thaw_gc)
        self.live_stats = LiveStats()
        if self.options.show_progress:  # each record costs the live view a few numpy calls: only when shown
            self.sink.observers.append(self.live_stats.observe)
        await self._cleanup.enter_async_context(live_progress(self.progress, self.options.show_progress,
                                                              self.live_stats))
        # t0 is taken after all set-up so the first send is not born late (workers need
        # the start message first).
        t0 = time.perf_counter() + (self.pool.start_delay_s if self.pool is not None else 0.01)
        self.writer.manifest.t0_perf_counter = t0
        self.writer.write_manifest()
        await self._start_scraper(t0)
        self._start_monitor()
        if self.pool is not None:
            self.pool.t0 = t0
            self._sender = self.pool
        else:
            self._sender = self._local = Runner(build_plan(scenario, self._cap()), self.workload, self.client,
                                                self.sink, t0, self.progress)

    @property
    def runner(self) -> Sender:
        """What sends this run's requests: the pool, or this process's runner."""
        if self._sender is None:
            raise RuntimeError("the run session was not entered")
        return self._sender

    @property
    def stage_runner(self) -> StageSender:
        """This process's runner, sent to one stage at a time (`bench sweep`, the early stop);
        those run in one client process, which is checked before any session starts."""
        if self._local is None:
            raise RuntimeError("stage-by-stage sending needs one client process (no workers, no ray)")
        return self._local

    def _cap(self) -> int:
        """Most requests in flight (load.max_concurrency, or the machine's default), noted in run.json."""
        client = self.writer.manifest.client
        if client.in_flight_cap is None:
            if self.scenario.load.max_concurrency is not None:
                client.in_flight_cap, client.in_flight_cap_from = self.scenario.load.max_concurrency, \
                    "load.max_concurrency"
            else:
                cap = in_flight_cap()
                client.in_flight_cap, client.in_flight_cap_from = cap.value, cap.reason
        return client.in_flight_cap

    def _worker_count(self) -> int:
        from bench.runner.shards import resolve_workers

        closed = [s.concurrency or 0 for s in self.schedule.stages if s.kind == "closed"]
        return resolve_workers(self._workers_setting, self.schedule.offered_rate, max(closed, default=0),
                               simulated=self.target.simulated)

    def _worker_configs(self, count: int, peak: int) -> list[WorkerConfig]:
        from bench.runner.shards import shard_plan

        plan = build_plan(self.scenario, self._cap())
        return [WorkerConfig(index=k, count=count, scenario=self.scenario,
                             scenario_path=self.options.scenario_path, base_url=self.base_url,
                             api_key=self.api_key, model=self.model,
                             max_connections=max(peak // count + 1, 64), plan=shard_plan(plan, k, count),
                             token_model=self.token_model)
                for k in range(count)]

    async def _start_workers(self, count: int, peak: int) -> None:
        from bench.runner.workers import WorkerPool

        self.pool = pool = WorkerPool(self._worker_configs(count, peak), self.sink, self.progress)
        self._cleanup.push_async_callback(pool.aclose)
        await pool.start()
        self.writer.manifest.client.worker_count = count

    async def _start_ray(self, peak: int) -> None:
        from bench.runner.ray_workers import RayPool, connect, disconnect

        settings = self.scenario.ray
        assert settings is not None
        started, node_cpus = connect(settings.address)
        self._cleanup.callback(disconnect, started)  # after the actors are killed (LIFO)
        count = settings.workers or max(1, len(node_cpus))
        self.pool = pool = RayPool(self._worker_configs(count, peak), self.sink, self.progress, node_cpus,
                                   continue_on_failure=settings.continue_on_actor_failure)
        self._cleanup.push_async_callback(pool.aclose)
        await pool.start()
        client = self.writer.manifest.client
        client.worker_count = count
        client.ray = RaySetup(address=settings.address or "local",
                              started_local=started and settings.address in (None, "local"), nodes=len(node_cpus))

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is not None and self._sender is not None:
                await self._sender.cancel_in_flight()
        finally:
            await self._cleanup.aclose()

    def _start_monitor(self) -> None:
        """Self-calibration: event-loop lag and CPU of this process, into manifest.client."""
        monitor = LoopMonitor()
        monitor.start()

        async def finish() -> None:
            self.writer.manifest.client.record_load(await monitor.stop())

        self._cleanup.push_async_callback(finish)

    async def _start_scraper(self, t0: float) -> None:
        settings = self.scenario.target.metrics
        if not settings.enabled:
            return
        from bench.target.promscrape import MetricsScraper

        url = settings.url or f"{root_url(self.base_url)}/metrics"
        scraper = MetricsScraper(url, settings.interval_s, clock=lambda: time.perf_counter() - t0)
        await scraper.start()

        async def finish() -> None:
            await scraper.stop()
            self._store_server_metrics(scraper)

        self._cleanup.push_async_callback(finish)

    def _store_server_metrics(self, scraper: Any) -> None:
        stats = scraper.stats
        manifest = self.writer.manifest
        manifest.server.metrics = ScrapeStats(url=scraper.url, scrapes_ok=stats.ok, scrapes_failed=stats.errors,
                                              last_error=stats.last_error)
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
        self.writer.manifest.stages = self.stage_notes or [stage_note(s) for s in self.schedule.stages]
        if self.stopped is not None:  # the stored verdict replays the watch up to this moment
            for note in self.writer.manifest.stages:
                if note.get("index") == self.stopped[0]:
                    note["stopped_s"] = self.stopped[1]
        if self.pool is not None:
            self.writer.manifest.client.workers = [WorkerInfo.model_validate(w) for w in self.pool.worker_stats]
            self.writer.manifest.notes.extend(self.pool.notes)
        self._note_overload()
        result = finish_run(self.writer, ended, reason)
        count_repeats(result.run)
        _note_client_warnings(result, self.schedule.offered_rate)
        self.writer.write_manifest()
        return result


    async def count_tokens(self, tokenizer: LocalTokenizer | None) -> None:
        """Once sending has ended: close the records and count their answers' output tokens
        (scenario `tokens:`; bench.commands.tokens). Not after a failed or interrupted run."""
        settings = self.scenario.tokens
        if settings is None or self.ended not in ("completed", "saturated") or self.failure or self.sink.failure:
            return
        try:
            self.writer.close()
            outcome = await count_output_tokens(self.writer.run_dir, settings, tokenizer, self.base_url,
                                                self.api_key, self.model, self.scenario.target.timeouts.ttft_s)
        except RunFailed as exc:
            self.failure = str(exc)
            return
        self.writer.manifest.notes.extend(outcome.notes)
        self.failure = outcome.failure

    def _note_prompt_basis(self, token_model: TokenModel | None) -> None:
        """Say, in every report, what a synthetic prompt's token count counts."""
        synthetic = self.scenario.requests.synthetic if self.scenario.requests else None
        if synthetic is None:
            return
        if synthetic.prompt_basis == "server":
            note = ("synthetic prompt_tokens: as the server counts them (usage.prompt_tokens, its chat template "
                    "included; prompt_basis: server)")
        else:
            note = ("synthetic prompt_tokens: text tokens, as vLLM bench serve and GuideLLM count them "
                    "(prompt_basis: raw)")
            if token_model is not None and round(token_model.overhead) > 0:
                note += f"; the server adds about {token_model.overhead:.0f} tokens of template to each"
        self.writer.manifest.notes.append(note)

    def _note_overload(self) -> None:
        """Requests never sent and cancelled at the drain's end, and the peak memory, into run.json."""
        client, progress = self.writer.manifest.client, self.progress
        client.not_sent, client.drain_cancelled = progress.not_sent, progress.drain_cancelled
        client.peak_rss_mib = peak_rss_mib()
        if progress.drain_cancelled:
            self.writer.manifest.notes.append(
                f"{progress.drain_cancelled} requests were still in flight when the drain time ran out "
                "(load.drain_s): cancelled, recorded as such")


def _note_client_warnings(result: RunResult, offered_rate: float | None) -> None:
    """Store why the client may have shaped the figures (run.json: client.warnings and notes)."""
    run = result.run
    manifest = run.manifest
    warnings = client_warnings(manifest.client, run.requests, offered_rate)
    manifest.client.warnings = warnings
    manifest.notes.extend(w.message for w in warnings)
    result.notes.extend(w.message for w in warnings)


