"""run.json, the manifest: typed, strict, and read back from every readable schema version.

The sections that are ours (`client`, `workload`, the scrape stats under `server.metrics`)
are models with extra="forbid", so a future or damaged file is refused loudly, not misread.
What a server says about itself (GET /version, /props, /info) is kept as the raw JSON it sent.

`client` and `server` record only what a run measured: a field never set is left out of
run.json (not written as null), so a stored section reads back and writes out unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from bench.errors import BenchInputError, RunFailed, ValidityWarning
from bench.records import RunState
from bench.store.layout import MANIFEST, READABLE_VERSIONS

__all__ = [
    "ClientInfo", "ClockOffset", "CpuUse", "LoopLag", "Manifest", "ProcessLoad", "PromptTokenModel", "Provenance", "RaySetup",
    "RecordedSection", "ScrapeStats", "ServerInfo", "WorkerInfo", "WorkloadInfo", "read_manifest", "write_manifest",
]


class RecordedSection(BaseModel):
    """A run.json section holding what was recorded: its fields never set (at construction,
    by validation or by assignment) are left out of the JSON, not written as null."""

    model_config = ConfigDict(extra="forbid")

    @model_serializer(mode="wrap")
    def recorded_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        return {name: value for name, value in data.items() if name in self.model_fields_set}


class LoopLag(RecordedSection):
    """Event-loop lag of one client process (ms; bench.runner.loopmon): the percentiles are
    absent when no sample was taken."""

    count: int | None = None  # samples
    interval_ms: float | None = None  # the sampler's sleep
    p50: float | None = None
    p99: float | None = None
    max: float | None = None
    p99_first_third: float | None = None  # of the samples in time order: a loop falling behind
    p99_last_third: float | None = None


class CpuUse(RecordedSection):
    """CPU use of one client process, % of one core (None: not measured, a zero-length run)."""

    mean: float | None = None  # over the whole run
    max: float | None = None  # of the half-second windows
    cpu_s: float | None = None
    wall_s: float | None = None


class ProcessLoad(RecordedSection):
    """One client process's self-calibration, as bench.runner.loopmon.LoopMonitor.stats()
    returns it; ClientInfo and WorkerInfo carry the same two fields."""

    loop_lag_ms: LoopLag | None = None
    cpu_percent: CpuUse | None = None


class ClockOffset(RecordedSection):
    """A Ray actor's clock minus the driver's, from the round trip with the smallest time."""

    offset_ms: float | None = None
    uncertainty_ms: float | None = None  # half that round trip
    rtt_min_ms: float | None = None
    round_trips: int | None = None


class WorkerInfo(RecordedSection):
    """One client worker process or Ray actor (run.json `client.workers`) and its
    self-calibration. A worker that never reported is stored empty."""

    index: int | None = None
    host: str | None = None  # Ray actors: the machine
    node_id: str | None = None
    pid: int | None = None
    num_cpus: float | None = None
    clock: ClockOffset | None = None  # Ray actors only
    lost: str | None = None  # why a Ray actor was lost
    loop_lag_ms: LoopLag | None = None
    cpu_percent: CpuUse | None = None


class RaySetup(BaseModel):
    """How the Ray cluster was reached (run.json `client.ray`)."""

    model_config = ConfigDict(extra="forbid")

    address: str
    started_local: bool
    nodes: int


class PromptTokenModel(BaseModel):
    """Prompt tokens the server counts for a prompt of `words` words: overhead + per_word x
    words (bench.scenario.prompts.TokenModel, as probed before the run)."""

    model_config = ConfigDict(extra="forbid")

    overhead: float
    per_word: float


class ClientInfo(RecordedSection):
    """run.json `client`: the load generator, and the self-calibration of its own process
    (the parent process when there are workers)."""

    library: str | None = None
    pid: int | None = None
    arrival_stamps: Literal["kernel", "read"] | None = None  # where chunk arrival times came from
    prompt_tokens_model: PromptTokenModel | None = None
    worker_count: int | None = None
    ray: RaySetup | None = None
    loop_lag_ms: LoopLag | None = None
    cpu_percent: CpuUse | None = None
    workers: list[WorkerInfo] | None = None
    warnings: list[ValidityWarning] | None = None  # the client near its ceiling (bench.analysis.clientload)
    in_flight_cap: int | None = None  # most requests in flight at once (load.max_concurrency or the default)
    in_flight_cap_from: str | None = None  # "load.max_concurrency", or which machine limit set the default
    not_sent: int | None = None  # scheduled requests never sent: later than load.max_send_lag_s
    drain_cancelled: int | None = None  # in flight when the drain time ran out: cancelled
    peak_rss_mib: float | None = None  # the client process's peak resident memory

    def record_load(self, stats: Mapping[str, Any]) -> None:
        """Take this process's LoopMonitor stats (`loop_lag_ms`, `cpu_percent`)."""
        load = ProcessLoad.model_validate(stats)
        for name in load.model_fields_set:
            setattr(self, name, getattr(load, name))


class ScrapeStats(BaseModel):
    """The server's /metrics scrapes during the run (run.json `server.metrics`)."""

    model_config = ConfigDict(extra="forbid")

    url: str
    scrapes_ok: int
    scrapes_failed: int
    last_error: str | None


class ServerInfo(RecordedSection):
    """run.json `server`: what the server said about itself, as sent (long strings and deep
    nesting trimmed, bench.target.resolve.fetch_server_info), and our scrape stats."""

    version: JsonValue = None  # GET /version (vLLM)
    props: JsonValue = None  # GET /props (llama.cpp)
    info: JsonValue = None  # GET /info (TGI)
    metrics: ScrapeStats | None = None


class WorkloadInfo(BaseModel):
    """run.json `workload`: what the prompt source held and how the run drew from it."""

    model_config = ConfigDict(extra="forbid")

    source: str  # inline | file | synthetic | trace
    records: int | None = None  # records (or inline items) read; None: synthetic
    prompts: int | None = None  # usable prompts among them; None: synthetic, one made per draw
    skipped: int = 0  # records never sent: empty or whitespace-only text, no reply, unreadable
    skipped_reasons: dict[str, int] = {}  # by reason (bench.scenario.prompts.SKIP_REASONS)
    drawn: int | None = None  # prompts drawn in the run (one per block: variants share one)
    repeated: int | None = None  # draws of a prompt already drawn before in the run


class Provenance(RecordedSection):
    """What made the run, so it can be made again (`bench rerun`): the command line (secrets
    masked), bench's source revision, key package versions and the client machine."""

    command: list[str] | None = None  # argv as typed, e.g. ["bench", "run", "s.yaml", "--rate", "4"]
    git_revision: str | None = None  # of bench's source tree, when it is a git checkout
    git_dirty: bool | None = None  # uncommitted changes in that tree
    packages: dict[str, str] = {}  # distribution -> version (openai, aiohttp, numpy, ...)
    cpu_model: str | None = None
    logical_cores: int | None = None
    physical_cores: int | None = None
    memory_gib: float | None = None
    gpus: list[str] = []  # `nvidia-smi` name, memory, driver per GPU, when present


class Manifest(BaseModel):
    """run.json. Strict so that a future format is refused loudly, not misread."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int
    bench_version: str
    name: str
    scenario: dict[str, Any]
    scenario_path: str | None = None
    target: dict[str, Any]
    model: str | None
    seed: int
    t0_perf_counter: float
    started_at: str
    ended_at: str | None = None
    ended: RunState  # "saturated": stopped by load.stop_on_saturation
    end_reason: str | None = None
    python: str
    platform: str
    host: str
    client: ClientInfo = Field(default_factory=ClientInfo)
    server: ServerInfo = Field(default_factory=ServerInfo)
    stages: list[dict[str, Any]] = []
    notes: list[str] = []
    workload: WorkloadInfo | None = None  # absent in runs stored before it was recorded
    provenance: Provenance | None = None  # absent in runs stored before it was recorded


def read_manifest(run_dir: Path) -> Manifest:
    """`run_dir`/run.json; BenchInputError (one line naming the field) when it is missing,
    unreadable, of a schema version this bench does not read, or not a valid manifest."""
    path = run_dir / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchInputError(f"{run_dir}: not a run directory (no {MANIFEST})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchInputError(f"{path}: cannot read manifest: {exc}") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version not in READABLE_VERSIONS:
        readable = " and ".join(map(str, READABLE_VERSIONS))
        raise BenchInputError(f"{path}: schema_version {version!r} is not supported (this bench reads {readable})")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(map(str, error["loc"])) or "(top level)"
        raise BenchInputError(f"{path}: {where}: {error['msg']} ({exc.error_count()} problem(s))") from None


def write_manifest(run_dir: Path, manifest: Manifest) -> None:
    """`run_dir`/run.json, replaced atomically; RunFailed when it cannot be written."""
    path = run_dir / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise RunFailed(f"{path}: cannot write manifest: {exc.strerror or exc}") from None
