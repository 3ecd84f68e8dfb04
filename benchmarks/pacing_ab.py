"""Simultaneous A/B of two bench source trees at realistic pacing: which one reads cheaper.

`pacing.py` runs its clients one after another, so a change of a few per cent drowns in
this VM's drift (its speed moves by a fifth within minutes). Here both trees run at once,
against one paced server (`benchmarks/_paced_server.py`): a `bench run` closed loop of
`--streams` streams each (`--workers` K), the same window, the same machine state. Each
round prints each tree's content chunks per client CPU-second (chunks it stamped in the
window / CPU seconds of its process tree in the window) and their ratio B/A; the tree that
starts first alternates. On this 2-core VM, A against itself gave ratios of 0.96-1.06.

    git worktree add /tmp/base HEAD~1 --detach
    python benchmarks/pacing_ab.py /tmp/base . [--rounds 6] [--streams 512] [--workers 1]

A tree is put first on PYTHONPATH of its client process: its `bench` is the one imported.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _paced_server import start_paced_server  # noqa: E402

__all__ = ["main", "one_round"]

RATE = 20.0  # tokens/s per stream, as pacing.py
TOKENS = 64
WINDOW_S = 4 * TOKENS / RATE  # four answers long: whole waves of request turnover (see pacing.py)


def one_round(trees: dict[str, Path], streams: int, workers: int, rate: float = RATE, tokens: int = TOKENS,
              window_s: float = WINDOW_S, settle_s: float = 2.0,
              startup_s: float = 15.0) -> dict[str, tuple[int, float]]:
    """Both trees' clients at once against one paced server: (content chunks stamped in the
    window, CPU seconds used in it) of each tree's client. Each closed loop runs for
    `startup_s` (to open its streams) + `settle_s` + `window_s`."""
    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_paced_server(rate, os.path.join(tmp, "stamps.pickle"), None)
        clients: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for tag, tree in trees.items():
                env = dict(os.environ, PYTHONPATH=str(tree.resolve()))
                clients[tag] = subprocess.Popen(
                    [sys.executable, str(HERE / "_pacing_clients.py"), "bench", url, str(streams), str(workers),
                     str(startup_s + settle_s + window_s), str(tokens), os.path.join(tmp, f"{tag}.pickle")],
                    env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            counters = url.removesuffix("/v1") + "/pacing/counters"
            deadline = time.monotonic() + 60
            while json.load(urllib.request.urlopen(counters))["active"] < 0.97 * streams * len(trees):
                if time.monotonic() > deadline:
                    raise SystemExit("the clients did not open their streams within 60 s")
                time.sleep(0.5)
            time.sleep(settle_s)
            trees_procs = {tag: [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]
                           for tag, p in clients.items()}
            cpu0 = {tag: _cpu(procs) for tag, procs in trees_procs.items()}
            t0 = time.perf_counter()
            time.sleep(window_s)
            cpu1 = {tag: _cpu(procs) for tag, procs in trees_procs.items()}
            t1 = time.perf_counter()
            for p in clients.values():
                p.wait()
        finally:
            for p in clients.values():
                p.kill()
            server.terminate()
            server.wait()
        result = {}
        for tag in trees:
            with open(os.path.join(tmp, f"{tag}.pickle"), "rb") as f:
                stamps = pickle.load(f)["stamps"]
            chunks = sum(int(np.count_nonzero((v >= t0) & (v < t1))) for v in stamps.values())
            result[tag] = (chunks, cpu1[tag] - cpu0[tag])
        return result


def _cpu(procs: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="source tree A (the base)")
    parser.add_argument("b", type=Path, help="source tree B (the change)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--streams", type=int, default=512, help="per tree")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    ratios = []
    for r in range(args.rounds):
        order = {"a": args.a, "b": args.b} if r % 2 == 0 else {"b": args.b, "a": args.a}
        got = {tag: chunks / cpu_s for tag, (chunks, cpu_s) in one_round(order, args.streams, args.workers).items()}
        ratios.append(got["b"] / got["a"])
        print(f"round {r}: A {got['a']:,.0f}  B {got['b']:,.0f} chunks per CPU-s  B/A {ratios[-1]:.3f}", flush=True)
    print(f"B/A mean {statistics.mean(ratios):.3f}, median {statistics.median(ratios):.3f}, "
          f"range {min(ratios):.3f}-{max(ratios):.3f} ({args.rounds} rounds, {args.streams} streams x "
          f"{args.workers} worker(s) each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
