"""`bench calibrate`: this machine's client ceiling, measured against the built-in simulator.

Runs short `bench run`s against `bench sim --profile zero` (zero latency: whatever limits
the figures is the client, or the simulator sharing the machine):
- closed loops at rising stream counts: nothing paces them, so they run the client flat
  out; their chunks/s and requests/s are the ceiling (always client-bound, by design);
- open-loop Poisson at rising rates, each judged by the run's own self-calibration
  (event-loop lag, CPU, send lag: `bench.analysis.clientload.client_warnings`) and achieved rate.
Safe range: the highest clean rate, and half the ceiling's chunks/s for streaming loads
(above ~50 % CPU the client starts shaping TTFT and ITL tails).
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.commands.exits import EXIT_OK
from bench.metrics.catalogue import SCHEDULE_LAG
from bench.store import ClientInfo, WorkerInfo

__all__ = ["CeilingPoint", "calibrate", "cmd_calibrate", "point_line", "safe_range"]

STREAMS = (16, 64, 256, 1024)
RATES = (100.0, 300.0, 1000.0, 3000.0)


@dataclass
class CeilingPoint:
    kind: str  # "streams" | "rate"
    value: float
    achieved_rps: float | None
    chunks_per_s: float | None
    loop_lag_p99_ms: float | None
    cpu_percent: float | None
    schedule_lag_p99_ms: float | None
    warnings: list[str]

    @property
    def clean(self) -> bool:
        if self.kind == "streams":
            return False  # unpaced against a zero-latency server: the ceiling, never a safe point
        if self.warnings:
            return False
        if self.kind == "rate" and self.achieved_rps is not None:
            return self.achieved_rps >= 0.98 * self.value
        return True


def _run(tmp: Path, name: str, load: dict[str, Any], tokens: int) -> Any:
    from bench.commands.run import run_scenario
    from bench.commands.rundir import RunOptions
    from bench.scenario.loader import load_scenario

    data = {"name": name, "seed": 1, "target": {"sim_profile": "zero"},
            "requests": {"synthetic": {"prompt_tokens": 16, "output_tokens": tokens}},
            "sampling": {"extra_body": {"ignore_eos": True}}, "load": load}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return run_scenario(load_scenario(path), RunOptions(scenario_path=path, out_dir=tmp / name,
                                                        show_progress=False)).run


def _point(kind: str, value: float, run: Any) -> CeilingPoint:
    client = run.manifest.client
    procs: list[ClientInfo | WorkerInfo] = list(client.workers or []) or [client]
    summary = run.summary
    window = summary.throughput.window_s or 0.0
    chunks = int((run.chunks["kind"] == "content").sum())
    lags = [p.loop_lag_ms.p99 if p.loop_lag_ms else None for p in procs]
    cpus = [p.cpu_percent.mean if p.cpu_percent else None for p in procs]
    return CeilingPoint(kind, value, summary.rate.achieved if kind == "rate" else summary.throughput.requests_per_s,
                 chunks / window if window else None,
                 max((x for x in lags if x is not None), default=None),
                 max((x for x in cpus if x is not None), default=None),
                 summary.metric(SCHEDULE_LAG).p99,
                 [w.code for w in client.warnings or []])


def calibrate(seconds: float = 3.0, workers: int | str = 1, streams: tuple[int, ...] = STREAMS,
              rates: tuple[float, ...] = RATES, tokens: int = 64, echo: Any = print) -> list[CeilingPoint]:
    points: list[CeilingPoint] = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for n in streams:
            run = _run(tmp, f"streams-{n}", {"concurrency": n, "duration": seconds, "workers": workers}, tokens)
            points.append(_point("streams", n, run))
            echo(point_line(points[-1]))
        for rate in rates:
            run = _run(tmp, f"rate-{rate:g}", {"rate": rate, "arrival": "poisson", "duration": seconds,
                                               "workers": workers}, 16)
            points.append(_point("rate", rate, run))
            echo(point_line(points[-1]))
    return points


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def point_line(p: CeilingPoint) -> str:
    """One measured point as `bench calibrate` prints it, with its verdict."""
    what = f"{int(p.value)} streams" if p.kind == "streams" else f"{p.value:g} req/s Poisson"
    return (f"{what:>20}: {_fmt(p.achieved_rps, ',.0f')} req/s, {_fmt(p.chunks_per_s, ',.0f')} chunks/s, "
            f"loop lag p99 {_fmt(p.loop_lag_p99_ms, '.1f')} ms, CPU {_fmt(p.cpu_percent, '.0f')} %, "
            f"send lag p99 {_fmt(p.schedule_lag_p99_ms, '.1f')} ms  "
            + ("(ceiling)" if p.kind == "streams" else
               "ok" if p.clean else "CLIENT-BOUND: " + (",".join(p.warnings) or "rate not reached")))


def safe_range(points: list[CeilingPoint]) -> dict[str, float | None]:
    """The ceiling (closed loops) and the safe range: highest clean rate, half the chunks/s."""
    closed = [p for p in points if p.kind == "streams"]
    best_rate = None
    for p in sorted((p for p in points if p.kind == "rate"), key=lambda p: p.value):
        if not p.clean:
            break
        best_rate = p.value
    ceiling_chunks = max((p.chunks_per_s or 0.0 for p in closed), default=0.0) or None
    ceiling_rps = max((p.achieved_rps or 0.0 for p in closed), default=0.0) or None
    return {"rate": best_rate, "ceiling_chunks_per_s": ceiling_chunks, "ceiling_requests_per_s": ceiling_rps,
            "safe_chunks_per_s": ceiling_chunks / 2 if ceiling_chunks else None}


def cmd_calibrate(args: argparse.Namespace) -> int:
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
