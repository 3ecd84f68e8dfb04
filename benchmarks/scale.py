"""Scale: storing, loading and summarising many requests; memory per in-flight stream.

For each size N (default 100k and 1M requests x 128 chunks), in a fresh child process:
1. store: N synthetic RequestRecords through `RunWriter.write` (journal + chunk and request
   parquet row groups), as a run does; records are generated in blocks beforehand, from a
   pool of chunk-time templates offset per request, and that time is reported apart
   ("gen"), so "store" is bench's own cost (also given per write);
2. finalize: `finalize_run` (requests.parquet + summary.json from the raw data, and the
   figures report and compare take from it, `bench.analysis.derived`: "finalized MB");
3. load: `bench.load_run` of the directory (chunks are read lazily, not here).
Prints seconds per step and the child's peak RSS, and at 1M x 128 chunks PASS or FAIL
against the target (store + finalize + load under 60 s, peak RSS under 4 GiB; exit 1 on
FAIL). Then the memory of one in-flight stream's state (`Attempt` + recorder after 128
chunks), measured with tracemalloc.

    python benchmarks/scale.py [--sizes 100000 1000000] [--chunks 128]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from array import array
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.records import KIND_CONTENT, KIND_ROLE, KIND_USAGE, NO_TOKENS, ChunkColumns, RequestRecord  # noqa: E402

TEMPLATES = 4096
BLOCK = 4096
# The scale target: a run of 1M requests x 128 chunks stored, finalized and loaded in under
# 60 s, in under 4 GiB.
TARGET_REQUESTS, TARGET_CHUNKS, TARGET_S, TARGET_GIB = 1_000_000, 128, 60.0, 4.0


def verdict(n: int, chunks: int, total_s: float, peak_gib: float) -> str | None:
    """PASS/FAIL against the target at its size (None at other sizes: no target there)."""
    if (n, chunks) != (TARGET_REQUESTS, TARGET_CHUNKS):
        return None
    ok = total_s < TARGET_S and peak_gib < TARGET_GIB
    return (f"{'PASS' if ok else 'FAIL'}: {n:,} x {chunks} chunks in {total_s:.1f} s (target < {TARGET_S:g} s), "
            f"peak RSS {peak_gib:.2f} GiB (target < {TARGET_GIB:g} GiB)")


def synthetic_records(n: int, chunks: int, seed: int = 0) -> Iterator[list[RequestRecord]]:
    """Blocks of records; chunk times are one of TEMPLATES exponential-gap series (20 ms
    mean) shifted to the request's start, so generating costs one small add per record."""
    rng = np.random.default_rng(seed)
    kinds = array("b", [KIND_ROLE] + [KIND_CONTENT] * (chunks - 2) + [KIND_USAGE])
    tokens = array("i", [NO_TOKENS] * chunks)
    choice = array("i", [0] * chunks)
    templates = 0.05 + np.cumsum(rng.exponential(0.02, (TEMPLATES, chunks)), axis=1)
    picks = rng.integers(0, TEMPLATES, n)
    sched = np.sort(rng.uniform(0, n / 1000.0, n))
    for begin in range(0, n, BLOCK):
        block = []
        for i in range(begin, min(begin + BLOCK, n)):
            start = float(sched[i])
            t = array("d")
            t.frombytes((templates[picks[i]] + start).tobytes())
            block.append(RequestRecord(
                request_id=i, stage=0, phase="measure", variant="", block=-1, conversation=-1, turn=0,
                prompt_index=i % 1000, scheduled_s=start, submitted_s=start, sent_s=start + 1e-4,
                headers_s=start + 0.01, end_s=t[-1] + 1e-4, status="ok", error_kind=None,
                error_message=None, http_status=200, retry_after_s=None, finish_reason="length",
                usage_prompt_tokens=64, usage_completion_tokens=chunks - 2, server_request_id=str(i),
                max_tokens=chunks - 2, n=1, done_seen=True, reconnected=False, output_chars=4 * chunks,
                chunks=ChunkColumns(t, kinds, tokens, choice),
            ))
        yield block


def child(n: int, chunks: int) -> dict[str, float]:
    from bench import load_run
    from bench.analysis.results import finalize_run
    from bench.store import SCHEMA_VERSION, Manifest, RunWriter

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        manifest = Manifest(schema_version=SCHEMA_VERSION, bench_version="scale", name="scale",
                            scenario={"load": {"rate": 1000.0}}, target={}, model="m", seed=0,
                            t0_perf_counter=0.0, started_at="", ended="completed", python="", platform="",
                            host="")
        gen_s = store_s = 0.0
        blocks = synthetic_records(n, chunks)
        writer = RunWriter(run_dir, manifest)
        while True:
            t = time.perf_counter()
            block = next(blocks, None)
            gen_s += time.perf_counter() - t
            if block is None:
                break
            t = time.perf_counter()
            for record in block:
                writer.write(record)
            store_s += time.perf_counter() - t
        t = time.perf_counter()
        writer.close()
        store_s += time.perf_counter() - t
        sizes = {p.name: p.stat().st_size for p in run_dir.iterdir()}
        t = time.perf_counter()
        run = finalize_run(run_dir, manifest)
        finalize_s = time.perf_counter() - t
        derived_mb = sum(p.stat().st_size for p in run_dir.iterdir() if p.name not in sizes) / 1e6
        assert run.summary.to_json()["requests"]["total"] == n
        assert run.summary.to_json()["itl_ms"]["count"] == n * (chunks - 3)
        del run
        t = time.perf_counter()
        run = load_run(run_dir)
        load_s = time.perf_counter() - t
        assert len(run.requests) == n
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024  # KiB -> GiB
    return {"n": n, "gen_s": gen_s, "store_s": store_s, "write_us": store_s / n * 1e6, "finalize_s": finalize_s,
            "load_s": load_s, "peak_gib": peak, "journal_mb": sizes.get("requests.jsonl", 0) / 1e6,
            "chunks_mb": sizes.get("chunks.parquet", 0) / 1e6, "raw_mb": sizes.get("raw_requests.parquet", 0) / 1e6,
            "finalized_mb": derived_mb}


def in_flight_bytes(chunks: int, streams: int = 1000) -> float:
    from bench.runner.attempt import Attempt
    from bench.scenario.schema import Timeouts

    timeouts = Timeouts()
    line = (b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
            b'"choices":[{"index":0,"delta":{"content":" word"},"finish_reason":null}]}\n\n')
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    attempts = []
    for _ in range(streams):
        attempt = Attempt(0.0, timeouts)
        for i in range(chunks):
            attempt.recorder.feed(float(i), line)
        attempts.append(attempt)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / streams


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--chunks", type=int, default=128)
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    print(f"{'requests':>9} {'chunks':>6} {'gen s':>6} {'store s':>8} {'us/write':>8} {'finalize s':>10} "
          f"{'load s':>7} {'total s':>8} {'peak RSS GiB':>12} {'journal MB':>10} {'chunks MB':>9} {'raw MB':>6} "
          f"{'finalized MB':>12}")
    verdicts: list[str] = []
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--child", str(n), str(args.chunks)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{n:9d} failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
            if verdict(n, args.chunks, 0.0, 0.0) is not None:
                verdicts.append(f"FAIL: {n:,} x {args.chunks} chunks did not complete")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        total = r["store_s"] + r["finalize_s"] + r["load_s"]  # without the generation
        print(f"{n:9d} {args.chunks:6d} {r['gen_s']:6.1f} {r['store_s']:8.1f} {r['write_us']:8.1f} "
              f"{r['finalize_s']:10.1f} {r['load_s']:7.1f} {total:8.1f} {r['peak_gib']:12.2f} "
              f"{r['journal_mb']:10.0f} {r['chunks_mb']:9.0f} {r['raw_mb']:6.0f} {r['finalized_mb']:12.0f}", flush=True)
        judged = verdict(n, args.chunks, total, r["peak_gib"])
        if judged is not None:
            verdicts.append(judged)
    per = in_flight_bytes(args.chunks)
    print(f"in-flight stream state after {args.chunks} chunks: {per / 1024:.1f} KiB per stream (tracemalloc)")
    for line in verdicts:
        print(line)
    return 1 if any(line.startswith("FAIL") for line in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
