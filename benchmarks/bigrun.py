"""Big-run analysis: `bench report` and `bench compare` of a 1M-request x 128-chunk run.

Targets (issue 15): `bench report RUN` <= 10 s, `bench compare RUN RUN2` <= 20 s, each with a
peak RSS <= 4 GiB. Both commands run as the CLI runs them: a fresh `python -m bench` process
each, timed wall-clock from start to exit, peak RSS from the kernel's accounting of that child
(`os.wait4`). The runs are synthetic (`benchmarks/scale.py`'s records: 128 chunks, 125 ITL gaps
a request, stored through `RunWriter` and finalized as a run is); the second run has another
seed, so compare sees two different runs. The load average is printed beside the figures: the
machine may be shared.

    python benchmarks/bigrun.py                          # make both runs in a temporary directory
    python benchmarks/bigrun.py --keep /tmp/bigrun       # make them there (or reuse them if present)
    python benchmarks/bigrun.py --run DIR --run2 DIR2    # time existing runs (--finalize: finalize them again)
    python benchmarks/bigrun.py --keep /tmp/bigrun --requests 100000 --repeat 3 --profile /tmp/prof

Exit 1 when a target is missed at 1M x 128 (at other sizes the targets are not judged).
A 1M x 128 run takes ~3.3 GB of disk (the journal 2.2 GB).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale import synthetic_records  # noqa: E402

TARGETS_S = {"report": 10.0, "compare": 20.0}
TARGET_GIB = 4.0
TARGET_SIZE = (1_000_000, 128)


@dataclass(frozen=True)
class Timing:
    command: str
    wall_s: float
    cpu_s: float  # user + system, less sensitive to a shared machine's load than wall time
    peak_gib: float
    load: float  # 1-minute load average at the end
    code: int


def make_run(run_dir: Path, n: int, chunks: int, seed: int) -> float:
    """Store and finalize a synthetic run of n requests x chunks; seconds taken."""
    from bench.analysis.results import finalize_run
    from bench.store import SCHEMA_VERSION, Manifest, RunWriter

    t = time.perf_counter()
    manifest = Manifest(schema_version=SCHEMA_VERSION, bench_version="bigrun", name=f"bigrun-{seed}",
                        scenario={"load": {"rate": 1000.0}}, target={}, model="m", seed=seed,
                        t0_perf_counter=0.0, started_at="", ended="completed", python="", platform="", host="")
    writer = RunWriter(run_dir, manifest)
    for block in synthetic_records(n, chunks, seed):
        for record in block:
            writer.write(record)
    writer.close()
    finalize_run(run_dir, manifest)
    return time.perf_counter() - t


def finalize_again(run_dir: Path) -> Timing:
    """`finalize_run` of a stored run again (as `bench run` ends), in a fresh process: this
    one stays small, so that the commands' peak RSS is theirs (a forked child counts its
    parent's pages until it execs)."""
    code = ("import sys; from pathlib import Path; from bench.analysis.results import finalize_run; "
            "from bench.store import read_manifest; d = Path(sys.argv[1]); finalize_run(d, read_manifest(d))")
    return timed("finalize", ["-c", code, str(run_dir)], None, module=False)


def ensure_run(run_dir: Path, n: int, chunks: int, seed: int, finalize: bool = False) -> None:
    if (run_dir / "summary.json").exists():
        print(f"reusing {run_dir}", flush=True)
        if finalize:
            print(_line(finalize_again(run_dir)), flush=True)
        return
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an unfinished run of an earlier attempt
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    # In a spawned process: this one stays small, so the commands' processes forked from it
    # count only their own pages (a parent that had finalized counted 3.7 GiB in each).
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        elapsed = pool.apply(make_run, (run_dir, n, chunks, seed))
    print(f"made {run_dir} ({n:,} x {chunks} chunks) in {elapsed:.1f} s", flush=True)


def timed(name: str, args: list[str], profile: Path | None, module: bool = True) -> Timing:
    """Run `python -m bench ARGS` (`module` False: `python ARGS`) in a fresh process; its wall
    time, CPU time and peak RSS."""
    prefix = [sys.executable]
    if profile is not None:
        prefix += ["-m", "cProfile", "-o", str(profile / f"{name}.prof")]
    t = time.perf_counter()
    command = [*prefix, *(["-m", "bench"] if module else []), *args]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    if proc.returncode != 0:
        print(f"{name}: exit {proc.returncode}: {stderr.strip()[-2000:]}")
    return Timing(name, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024 / 1024, os.getloadavg()[0], proc.returncode)


def verdicts(timings: list[Timing], size: tuple[int, int]) -> list[str]:
    """PASS/FAIL per command at the target size, on the best of its repeats (None elsewhere)."""
    if size != TARGET_SIZE:
        return []
    out = []
    for name, target in TARGETS_S.items():
        mine = [t for t in timings if t.command == name]
        if not mine:
            continue
        best = min(mine, key=lambda t: t.wall_s)
        peak = max(t.peak_gib for t in mine)
        ok = all(t.code == 0 for t in mine) and best.wall_s <= target and peak <= TARGET_GIB
        out.append(f"{'PASS' if ok else 'FAIL'}: bench {name} {best.wall_s:.1f} s (target <= {target:g} s), "
                   f"peak RSS {peak:.2f} GiB (target <= {TARGET_GIB:g} GiB)")
    return out


def print_profile(path: Path, top: int) -> None:
    print(f"--- {path.name}: top {top} by cumulative time")
    pstats.Stats(str(path)).sort_stats("cumulative").print_stats(top)


def measure(run: Path, run2: Path, out: Path, repeat: int, profile: Path | None) -> list[Timing]:
    commands = {"report": ["report", str(run), "--out", str(out / "report")],
                "compare": ["compare", str(run), str(run2), "--out", str(out / "compare")]}
    timings = []
    for _ in range(repeat):
        for name, args in commands.items():
            t = timed(name, args, profile)
            timings.append(t)
            print(_line(t), flush=True)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="an existing run directory (default: make one)")
    parser.add_argument("--run2", type=Path, help="the run compared with --run (default: make one, another seed)")
    parser.add_argument("--keep", type=Path, help="make (or reuse) the runs here and keep them (default: temporary)")
    parser.add_argument("--requests", type=int, default=TARGET_SIZE[0])
    parser.add_argument("--chunks", type=int, default=TARGET_SIZE[1])
    parser.add_argument("--repeat", type=int, default=1, help="time each command this many times")
    parser.add_argument("--finalize", action="store_true",
                        help="finalize reused runs again first (a run finalized by an older bench lacks the "
                             "figures finalize now stores for report and compare)")
    parser.add_argument("--profile", type=Path, help="profile each command (cProfile) into this directory")
    parser.add_argument("--top", type=int, default=30, help="profile lines printed per command")
    args = parser.parse_args(argv)
    print(f"{'command':>8} {'wall s':>7} {'CPU s':>6} {'peak RSS GiB':>12} {'load 1m':>7}")
    with tempfile.TemporaryDirectory(prefix="bigrun-") as tmp:
        base = args.keep or Path(tmp)
        run = args.run or base / f"run-{args.requests}x{args.chunks}-s0"
        run2 = args.run2 or base / f"run-{args.requests}x{args.chunks}-s1"
        for path, seed, given in ((run, 0, args.run), (run2, 1, args.run2)):
            if given is None:
                ensure_run(path, args.requests, args.chunks, seed, args.finalize)
            elif args.finalize:
                print(_line(finalize_again(path)), flush=True)
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
        timings = measure(run, run2, Path(tmp) / "out", args.repeat, args.profile)
        if args.profile is not None:
            for name in TARGETS_S:
                print_profile(args.profile / f"{name}.prof", args.top)
    size = (args.requests, args.chunks) if args.run is None else _size_of(run)
    lines = verdicts(timings, size)
    for line in lines:
        print(line)
    return 1 if any(line.startswith("FAIL") for line in lines) else 0


def _line(t: Timing) -> str:
    return f"{t.command:>8} {t.wall_s:7.1f} {t.cpu_s:6.1f} {t.peak_gib:12.2f} {t.load:7.2f}"


def _size_of(run: Path) -> tuple[int, int]:
    """(requests, chunks a request) of a stored run, for the verdict."""
    import pyarrow.parquet as pq

    requests = pq.ParquetFile(run / "requests.parquet").metadata.num_rows
    chunks = pq.ParquetFile(run / "chunks.parquet").metadata.num_rows
    return requests, round(chunks / max(requests, 1))


if __name__ == "__main__":
    sys.exit(main())
