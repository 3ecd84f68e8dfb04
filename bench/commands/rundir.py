"""The run directory: its name, manifest, guarded writes, and finishing it into a stored run."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import __version__
from bench.analysis.results import Run, finalize_run
from bench.commands.provenance import collect_provenance
from bench.errors import RunFailed
from bench.records import RequestRecord, RunState
from bench.redact import redact_scenario
from bench.runner.client import arrival_stamp_source
from bench.scenario.prompts import PromptSet
from bench.scenario.schema import Scenario
from bench.store import SCHEMA_VERSION, SERVER_LOG, ClientInfo, Manifest, RunWriter, WorkloadInfo
from bench.target.resolve import TargetInfo

__all__ = [
    "GuardedSink", "RunOptions", "RunResult", "count_repeats", "finish_run", "keep_server_log",
    "new_manifest", "run_dir_for", "utc_now", "workload_info",
]


def keep_server_log(target: TargetInfo, run_dir: Path) -> None:
    """Move the launched server's log into the run directory (it is stopped by now)."""
    log = target.launch_log
    if log is not None and log.exists() and run_dir.is_dir():
        shutil.move(str(log), run_dir / SERVER_LOG)


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


class GuardedSink:
    """Stops the run, instead of crashing a request task, when records cannot be written."""

    def __init__(self, writer: RunWriter, stop: asyncio.Event) -> None:
        self._writer = writer
        self._stop = stop
        self.failure: str | None = None
        self.observers: list[Callable[[RequestRecord], None]] = []  # the saturation watch, the live view

    def write(self, record: RequestRecord) -> None:
        self._guard(self._writer.write, record)
        for observe in self.observers:
            observe(record)

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


def finish_run(writer: RunWriter, ended: RunState, reason: str | None) -> RunResult:
    try:
        writer.close()
    except RunFailed as exc:
        ended, reason = "failed", reason or str(exc)
    manifest = writer.manifest
    manifest.ended = ended
    manifest.end_reason = reason
    manifest.ended_at = utc_now()
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


def run_dir_for(scenario: Scenario, options: RunOptions) -> Path:
    if options.out_dir is not None:
        return options.out_dir
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = options.results_root / f"{stamp}-{scenario.name}"
    suffix = 2
    while candidate.exists():  # two runs in one second: a new name, never the old directory
        candidate = options.results_root / f"{stamp}-{scenario.name}-{suffix}"
        suffix += 1
    return candidate


def new_manifest(scenario: Scenario, options: RunOptions, target: TargetInfo, model: str) -> Manifest:
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
        started_at=utc_now(),
        ended="running",
        python=sys.version.split()[0],
        platform=platform.platform(),
        host=socket.gethostname(),
        client=ClientInfo.model_validate({"library": "openai", "pid": os.getpid(),
                                          "arrival_stamps": arrival_stamp_source(target.base_url)}),
        provenance=collect_provenance(list(options.command) if options.command else None),
    )


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class RunOptions:
    scenario_path: Path
    out_dir: Path | None = None
    results_root: Path = Path("results")
    show_progress: bool = True
    command: tuple[str, ...] | None = None  # the command line, for run.json provenance


@dataclass
class RunResult:
    run: Run
    ended: RunState
    notes: list[str] = field(default_factory=list)
