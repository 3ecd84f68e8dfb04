"""Micro costs behind README figures that no end-to-end benchmark prints.

- chunk parse: `orjson.loads` vs `json.loads` of one streamed chat chunk (us per chunk);
- worker records: a finished record packed for the parent (`record_values`), a batch of them
  pickled and unpickled as tuples vs as the dataclasses, and the parent's unpickle-and-store
  (`RunWriter.write_values`), per record of a 1-token response;
- wake-up lag: how late a 1 ms `asyncio.sleep` wakes, on asyncio's loop and on uvloop;
- SDK cost per request: client CPU per short (1-token) streamed request against the
  zero-latency server of benchmarks/_sse_server.py (another process), on bench's direct path
  (`StreamClient`) and through the SDK's public `AsyncOpenAI.post(..., stream=True)`
  (`SdkClient.post_stream`, the fallback), 16 in flight, on asyncio's loop; and the direct
  path's CPU on uvloop (the CPU side of uvloop's gain);
- Ray round trips (when Ray is installed, `--ray`): the fastest of 16 calls to one local actor's
  clock, which bounds the clock-offset uncertainty (half of it).

Each figure is the median of `--repeat` timings of a tight loop; they vary with the machine.

    python benchmarks/micro_costs.py [--repeat 5] [--ray]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import statistics
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench import records  # noqa: E402

CHUNK = (b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",'
         b'"choices":[{"index":0,"delta":{"content":" word"},"logprobs":null,"finish_reason":null}]}')
BATCH = 256  # records per worker message, as bench.runner.shard.BATCH_MAX
RECORD_CHUNKS = 3  # a 1-token response (role, content, usage), as in benchmarks/worker_scaling.py


def _per_call_us(fn: Callable[[], object], calls: int, repeat: int) -> float:
    """Median over `repeat` timings of `calls` calls: microseconds a call."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(times)


def chunk_parse(repeat: int) -> list[str]:
    text = CHUNK.decode()
    fast = _per_call_us(lambda: orjson.loads(CHUNK), 100_000, repeat)
    slow = _per_call_us(lambda: json.loads(text), 100_000, repeat)
    return [f"chunk parse: orjson {fast:.2f} us, json {slow:.2f} us ({slow / fast:.1f}x)"]


def _record(i: int, chunks: int = RECORD_CHUNKS) -> records.RequestRecord:
    t = array("d", [0.05 + 0.02 * k for k in range(chunks)])
    kinds = array("b", [records.KIND_ROLE] + [records.KIND_CONTENT] * (chunks - 2) + [records.KIND_USAGE])
    return records.RequestRecord(
        request_id=i, stage=0, phase="measure", variant="", block=-1, conversation=-1, turn=0, prompt_index=i,
        scheduled_s=0.0, submitted_s=0.0, sent_s=1e-4, headers_s=0.01, end_s=t[-1], status="ok", error_kind=None,
        error_message=None, http_status=200, retry_after_s=None, finish_reason="length", usage_prompt_tokens=16,
        usage_completion_tokens=chunks - 2, server_request_id=str(i), max_tokens=chunks - 2, n=1, done_seen=True,
        reconnected=False, output_chars=4 * chunks,
        chunks=records.ChunkColumns(t, kinds, array("i", [records.NO_TOKENS] * chunks), array("i", [0] * chunks)))


def worker_records(repeat: int) -> list[str]:
    from bench.store import SCHEMA_VERSION, Manifest, RunWriter

    recs = [_record(i) for i in range(BATCH)]
    rows = [records.record_values(r) for r in recs]
    pack = _per_call_us(lambda: [records.record_values(r) for r in recs], 200, repeat) / BATCH
    tuples = _per_call_us(lambda: pickle.loads(pickle.dumps(rows, pickle.HIGHEST_PROTOCOL)), 200, repeat) / BATCH
    objects = _per_call_us(lambda: pickle.loads(pickle.dumps(recs, pickle.HIGHEST_PROTOCOL)), 200, repeat) / BATCH
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Manifest(schema_version=SCHEMA_VERSION, bench_version="micro", name="micro", scenario={},
                            target={}, model="m", seed=0, t0_perf_counter=0.0, started_at="", ended="completed",
                            python="", platform="", host="")
        writer = RunWriter(Path(tmp) / "run", manifest)
        message = pickle.dumps(rows, pickle.HIGHEST_PROTOCOL)
        store = _per_call_us(lambda: writer.write_values(pickle.loads(message)), 100, repeat) / BATCH
        writer.close()
    return [f"worker records ({BATCH} a batch, {RECORD_CHUNKS} chunks each): pack {pack:.1f} us a record; "
            f"pickle+unpickle as tuples {tuples:.1f} us, as dataclasses {objects:.1f} us; "
            f"parent unpickle+store {store:.1f} us"]


async def _oversleep_ms(samples: int) -> float:
    lags = []
    for _ in range(samples):
        start = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append((time.perf_counter() - start - 0.001) * 1e3)
    return statistics.median(lags)


def wake_up_lag(repeat: int) -> list[str]:
    plain = statistics.median(asyncio.run(_oversleep_ms(500)) for _ in range(repeat))
    try:
        import uvloop
    except ImportError:
        return [f"wake-up lag of a 1 ms sleep: asyncio {plain:.3f} ms (uvloop not installed)"]
    fast = statistics.median(uvloop.run(_oversleep_ms(500)) for _ in range(repeat))
    return [f"wake-up lag of a 1 ms sleep (median): asyncio {plain:.3f} ms, uvloop {fast:.3f} ms "
            f"({plain / fast:.1f}x)" if fast > 0 else f"wake-up lag: asyncio {plain:.3f} ms, uvloop {fast:.3f} ms"]


async def _cpu_per_request_ms(base_url: str, public: bool, requests: int = 2000, in_flight: int = 16) -> float:
    from bench.runner.client import StreamClient
    from bench.runner.sdk import SdkClient
    from bench.runner.streamapi import ClientConfig
    from bench.runner.wire import session_factory

    config = ClientConfig(base_url, None, 10.0, 64)
    client = SdkClient(config, session_factory(64)) if public else StreamClient(config)
    body = b'{"model":"zero","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":1}'
    left = requests

    async def one() -> None:
        response = (await client.post_stream("/chat/completions", body, False) if isinstance(client, SdkClient)
                    else await client.open_stream("/chat/completions", body))
        async for _ in response.reads():
            pass
        await response.aclose()

    async def slot() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one()

    await asyncio.gather(*(slot() for _ in range(in_flight)))  # warm: connections, templates
    left = requests
    cpu = time.process_time()
    await asyncio.gather(*(slot() for _ in range(in_flight)))
    cpu = time.process_time() - cpu
    await client.aclose()
    return cpu / requests * 1e3


def sdk_cost(repeat: int) -> list[str]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _sse_server import start_server

    proc, base_url = start_server()
    try:
        direct = statistics.median(asyncio.run(_cpu_per_request_ms(base_url, False)) for _ in range(repeat))
        public = statistics.median(asyncio.run(_cpu_per_request_ms(base_url, True)) for _ in range(repeat))
        try:
            import uvloop
        except ImportError:
            on_uvloop = None
        else:
            on_uvloop = statistics.median(uvloop.run(_cpu_per_request_ms(base_url, False)) for _ in range(repeat))
    finally:
        proc.terminate()
        proc.wait(10)
    lines = [f"client CPU per short request: direct path {direct:.3f} ms, SDK public post {public:.3f} ms "
             f"({public / direct:.1f}x; one core: ~{1e3 / direct:,.0f} vs ~{1e3 / public:,.0f} req/s)"]
    if on_uvloop is not None:
        lines.append(f"direct path on uvloop: {on_uvloop:.3f} ms of CPU a request ({on_uvloop / direct:.2f}x "
                     "its CPU on asyncio's loop)")
    return lines


def ray_round_trips(repeat: int) -> list[str]:
    import ray

    from bench.runner.ray_workers import CLOCK_ROUND_TRIPS, PACKAGE_DIR, ShardActor, clock_offset

    ray.init(num_cpus=1, include_dashboard=False, logging_level="warning",
             runtime_env={"py_modules": [str(PACKAGE_DIR)]})
    try:
        actor = ray.remote(ShardActor).remote()
        ray.get(actor.clock.remote())  # the actor is up
        rtts = []
        for _ in range(repeat):
            samples = []
            for _ in range(CLOCK_ROUND_TRIPS):
                sent = time.perf_counter()
                remote = ray.get(actor.clock.remote())
                samples.append((sent, remote, time.perf_counter()))
            rtts.append(clock_offset(samples)["rtt_min_ms"])
    finally:
        ray.shutdown()
    return [f"Ray actor-call round trip, fastest of {CLOCK_ROUND_TRIPS} (local Ray): "
            f"{min(rtts):.2f}-{max(rtts):.2f} ms over {repeat} rounds (clock offset known to half that)"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ray", action="store_true", help="also time Ray actor round trips (needs Ray)")
    args = parser.parse_args(argv)
    steps: list[Callable[[int], list[str]]] = [chunk_parse, worker_records, wake_up_lag, sdk_cost]
    if args.ray:
        steps.append(ray_round_trips)
    for step in steps:
        for line in step(args.repeat):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
