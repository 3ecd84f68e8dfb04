"""`bench sweep`: one run directory, one stage per load point, chosen as the sweep goes.

Points are fixed (`--rates`, `--concurrencies`), automatic (`--auto N`: synchronous, then
maximum throughput, then N rates evenly spaced between, as GuideLLM does) or searched
(`--find-max-rate`: bracketing by doubling, then bisection, for the highest rate whose SLO
percentile holds). Each stage drains before the next starts. A stage that saturates the
server (in-flight requests keep growing) is cut short and marked, so its figures are not
mistaken for a steady state. Decisions read the stored records, never the runner's state.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench import store
from bench.analysis import saturation
from bench.analysis import summary as aggregate
from bench.commands.run import RunSession, scenario_tokenizer
from bench.commands.rundir import RunOptions, RunResult, keep_server_log
from bench.commands.watch import SaturationWatch
from bench.errors import BenchInputError
from bench.metrics import derive, scan
from bench.metrics.catalogue import OUTPUT_TOKENS_PER_S, TTFT, counted_ids
from bench.runner.process import run_loop
from bench.scenario.schema import Scenario
from bench.target.resolve import TargetInfo, read_api_key, resolve_target
from bench.target.tokenizer_file import LocalTokenizer
from bench.workload.plan import StagePlan
from bench.workload.schedule import arrival_offsets

__all__ = [
    "DRAIN_TIMEOUT_S",
    "KNEE_OF_PEAK",
    "KNEE_SHORTFALL",
    "SEARCH_MAX_POINTS",
    "SEARCH_TOLERANCE",
    "STAGE_GAP_S",
    "Point",
    "SweepOutcome",
    "SweepRequest",
    "run_sweep",
    "saturation_stage",
]

# The saturation test and its thresholds live in bench.analysis.saturation (one home), the live
# watch in bench.commands.watch.SaturationWatch (shared with `bench run --stop-on-saturation`).
STAGE_GAP_S = 0.2
DRAIN_TIMEOUT_S = saturation.DRAIN_TIMEOUT_S
SEARCH_TOLERANCE = 0.05
SEARCH_MAX_POINTS = 12


@dataclass(frozen=True)
class Point:
    rate: float | None = None
    concurrency: int | None = None

    def label(self) -> str:
        return f"rate {self.rate:.3g}/s" if self.rate is not None else f"concurrency {self.concurrency}"


@dataclass
class SweepOutcome:
    result: RunResult
    stages: list[dict[str, Any]] = field(default_factory=list)
    max_rate: dict[str, Any] | None = None

    @property
    def saturation_stage(self) -> int | None:
        return saturation_stage(self.stages)


KNEE_SHORTFALL = 0.10  # achieved below offered by more than this: the server stopped keeping up
KNEE_OF_PEAK = 0.90  # or throughput within this share of the best measured: the curve flattens


def saturation_stage(stages: list[dict[str, Any]]) -> int | None:
    """The knee of the throughput curve: the lowest-rate stage where the server stopped
    keeping up (cut short, or achieved more than KNEE_SHORTFALL below offered) or where
    throughput reached KNEE_OF_PEAK of the best any stage measured."""
    rates = sorted((n for n in stages if n.get("rate") is not None), key=lambda n: n["rate"])
    peak = max((n.get("achieved_requests_per_s") or 0.0 for n in stages), default=0.0)
    for note in rates:
        achieved = note.get("achieved_requests_per_s")
        if note.get("saturated") or achieved is None:
            return int(note["index"])
        if achieved < (1 - KNEE_SHORTFALL) * note["rate"] or (peak > 0 and achieved >= KNEE_OF_PEAK * peak):
            return int(note["index"])
    # Every rate was served: the saturation point is the measured maximum throughput (--auto).
    closed = [n for n in stages if n.get("rate") is None and n.get("achieved_requests_per_s") == peak and peak > 0]
    return int(closed[0]["index"]) if closed and len(closed) < len(stages) else None


@dataclass(frozen=True)
class SweepRequest:
    rates: list[float] | None = None
    concurrencies: list[int] | None = None
    auto: int | None = None
    find_max_rate: bool = False
    stage_duration_s: float = 15.0
    max_concurrency: int = 256


def run_sweep(scenario: Scenario, options: RunOptions, request: SweepRequest) -> SweepOutcome:
    if request.find_max_rate and scenario.slo is None:
        raise BenchInputError(f"{options.scenario_path}: slo: --find-max-rate needs an slo section")
    # The sweep decides how much each point sends; the scenario's own bounds would cap the
    # whole sweep instead.
    scenario = scenario.model_copy(update={"load": scenario.load.model_copy(
        update={"max_requests": None, "warmup": scenario.load.warmup.model_copy(update={"requests": 0})})})
    from contextlib import ExitStack

    tokenizer = scenario_tokenizer(scenario, options)
    with ExitStack() as stack:
        target = resolve_target(scenario, stack)
        api_key = read_api_key(scenario)
        outcome: SweepOutcome = run_loop(_sweep(scenario, options, request, target, api_key, tokenizer))
    keep_server_log(target, outcome.result.run.path)
    return outcome


async def _sweep(scenario: Scenario, options: RunOptions, request: SweepRequest, target: TargetInfo,
                 api_key: str | None, tokenizer: LocalTokenizer | None = None) -> SweepOutcome:
    max_rate: dict[str, Any] | None = None
    async with RunSession(scenario, options, target, api_key) as session:
        driver = _Driver(session, request)
        try:
            if request.find_max_rate:
                max_rate = await driver.find_max_rate()
            else:
                await driver.run_points()
            session.ended = "interrupted" if session.stop.is_set() else "completed"
        finally:
            knee = saturation_stage(driver.notes)
            for note in driver.notes:
                note["knee"] = note["index"] == knee
            session.stage_notes = driver.notes
            if max_rate is not None:
                session.writer.manifest.notes.append(f"highest rate meeting the SLO: {max_rate['rate']}")
        await session.count_tokens(tokenizer)
    return SweepOutcome(session.result(), driver.notes, max_rate)


class _Driver:
    def __init__(self, session: RunSession, request: SweepRequest) -> None:
        self.session = session
        self.request = request
        self.notes: list[dict[str, Any]] = []
        self._journal = store.JournalReader(session.writer.run_dir)

    # -- strategies ---------------------------------------------------------------------------

    async def run_points(self) -> None:
        req = self.request
        if req.auto is not None:
            await self._auto(req.auto)
            return
        points = [Point(rate=r) for r in req.rates or []] + [Point(concurrency=c) for c in req.concurrencies or []]
        for point in points:
            if not await self.stage(point):
                return

    async def _auto(self, n: int) -> None:
        sync = await self.stage(Point(concurrency=1))
        if not sync:
            return
        peak = await self.stage(Point(concurrency=self.request.max_concurrency))
        if not peak:
            return
        low = self.notes[0]["achieved_requests_per_s"] or 0.0
        high = self.notes[1]["achieved_requests_per_s"] or 0.0
        if high <= low:
            self.notes[-1]["note"] = "maximum throughput not above synchronous: no rates to sweep"
            return
        for rate in np.linspace(low, high, n + 2)[1:-1]:
            if not await self.stage(Point(rate=float(rate))):
                return

    async def find_max_rate(self) -> dict[str, Any] | None:
        """Double until the SLO fails, then bisect between the last pass and the first fail."""
        rate = self.request.rates[0] if self.request.rates else 1.0
        passing: float | None = None
        failing: float | None = None
        for _ in range(SEARCH_MAX_POINTS):
            if not await self.stage(Point(rate=rate)):
                return None
            ok = self.notes[-1]["slo_met"] and not self.notes[-1]["saturated"]
            if ok:
                passing = rate if passing is None else max(passing, rate)
            else:
                failing = rate if failing is None else min(failing, rate)
            if failing is None:
                rate *= 2
            elif passing is None:
                rate /= 2
            elif (failing - passing) / failing <= SEARCH_TOLERANCE:
                break
            else:
                rate = (passing + failing) / 2
        best = [n for n in self.notes if n["rate"] == passing]
        return {"rate": passing, "first_failing_rate": failing, "stage": best[0]["index"] if best else None,
                "points": [(n["rate"], n["slo_met"]) for n in self.notes]}

    # -- one stage ------------------------------------------------------------------------------

    async def stage(self, point: Point) -> bool:
        """Run one point to its end (or saturation); False when the sweep was interrupted."""
        session = self.session
        index = len(self.notes)
        start = session.now_s() + STAGE_GAP_S
        duration = self.request.stage_duration_s
        plan = self._plan(index, point, start, duration)
        combined = asyncio.Event()  # the user's stop, or saturation: stop sending this stage
        watch = SaturationWatch(session, [plan] if point.rate is not None else [], combined)
        watcher = asyncio.ensure_future(watch.run())
        try:
            sent = await session.stage_runner.send(plan, combined)
            saturated = watch.reason is not None
            if sent or saturated:
                drained = await session.stage_runner.drain(session.stop, DRAIN_TIMEOUT_S if saturated else None)
                if not drained:
                    await session.stage_runner.cancel_in_flight()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        self.notes.append(self._note(index, point, start, watch.reason is not None))
        if watch.stopped_s is not None:  # the stored verdict replays the watch up to this moment
            self.notes[-1]["stopped_s"] = watch.stopped_s
        return not session.stop.is_set()

    def _plan(self, index: int, point: Point, start: float, duration: float) -> StagePlan:
        if point.concurrency is not None:
            return StagePlan(index, start, concurrency=point.concurrency, end_s=start + duration)
        assert point.rate is not None
        load = self.session.scenario.load.model_copy(update={
            "rate": point.rate, "concurrency": None, "ramp": None, "stages": None, "trace": None,
            "duration": duration, "max_requests": None,
        })
        offsets = arrival_offsets(load, self.session.scenario.seed + index)
        assert offsets is not None
        return StagePlan(index, start, offsets=offsets + start)

    def _note(self, index: int, point: Point, start: float, saturated: bool) -> dict[str, Any]:
        # Every request of this stage has ended (drained or cancelled) and is journalled;
        # earlier stages were read for their own notes.
        raw, chunks = self._journal.read()
        stage_raw = raw[raw["stage"] == index]
        stage_chunks = chunks[chunks["request_id"].isin(stage_raw["request_id"])]
        # One scan of the stage's chunks (the metrics' one definition) for both the
        # per-request metrics and the ITL gaps of the counted requests.
        result = scan.scan_frame(stage_chunks, counted_ids(stage_raw))
        requests = derive.per_request_from_stats(stage_raw, result.stats)
        slo = self.session.scenario.slo.model_dump() if self.session.scenario.slo else None
        summary = aggregate.summarize_gaps(requests, result.gaps, point.rate, slo)
        return {
            "index": index, "kind": "open" if point.rate is not None else "closed", "start_s": start,
            "duration_s": self.session.now_s() - start, "rate": point.rate, "concurrency": point.concurrency,
            "saturated": saturated,
            "achieved_requests_per_s": summary.throughput.requests_per_s,
            OUTPUT_TOKENS_PER_S.key: summary.throughput.output_tokens_per_s,
            "ttft_p99_ms": summary.metric(TTFT).p99,
            "slo_met": summary.slo.met if summary.slo is not None else True,
        }
