"""Overload: a schedule far beyond what the server can take, and a SIGTERM in the middle of it.

Runs `bench run` (a child process, as a user would) on `load: {rate: RATE, duration: D}` with
one inline prompt against the built-in simulator, and measures from outside: wall time, the
child's peak RSS (its `client.peak_rss_mib` too), exit code, `ended`, requests recorded,
`client.not_sent` and `client.drain_cancelled`. Then the same run again, sent SIGTERM
`--term-after` seconds in: how long until it exits, `ended`, and whether every journalled
record is in requests.parquet. PASS/FAIL against the targets: the run ends within 60 s of its
duration with peak RSS under 2 GiB, exit 0 or 1 with the overload among the validity
warnings; SIGTERM ends it within 5 s as `interrupted`. Exit 1 on a FAIL.

    python benchmarks/overload.py [--rate 1000000] [--duration 2] [--term-after 6]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench  # noqa: E402
from bench.analysis import validity  # noqa: E402

END_WITHIN_S, RSS_LIMIT_MIB, TERM_WITHIN_S = 60.0, 2048.0, 5.0


def _start(scenario: Path, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bench", "run", str(scenario), "--out", str(out), "--quiet",
                             "--no-report"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """(exit code, the child's peak RSS in MiB, from wait4: Linux reports KiB)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024


def overloaded(scenario: Path, out: Path, duration: float) -> bool:
    started = time.perf_counter()
    code, rss = _wait(_start(scenario, out))
    wall = time.perf_counter() - started
    manifest = json.loads((out / "run.json").read_text())
    client = manifest["client"]
    run = bench.load_run(out)
    codes = [w.code for w in validity.check(run)]
    print(f"overload: exit {code}, ended {manifest['ended']}, {wall:.1f} s for a {duration:g} s schedule, peak RSS "
          f"{rss:,.0f} MiB (run.json {client.get('peak_rss_mib')} MiB); {len(run.requests):,} requests recorded, "
          f"{client.get('not_sent', 0):,} not sent, {client.get('drain_cancelled', 0):,} cancelled at the drain's end; "
          f"in-flight cap {client.get('in_flight_cap')} ({client.get('in_flight_cap_from')}); warnings {codes}")
    ok = wall <= duration + END_WITHIN_S and rss < RSS_LIMIT_MIB and code in (0, 1) and "not_sent" in codes
    print(f"{'PASS' if ok else 'FAIL'}: ends within {END_WITHIN_S:g} s of its duration, peak RSS under "
          f"{RSS_LIMIT_MIB:,.0f} MiB, exit 0 or 1, the overload named (not_sent)")
    return ok


def terminated(scenario: Path, out: Path, after_s: float) -> bool:
    proc = _start(scenario, out)
    time.sleep(after_s)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    code, rss = _wait(proc)
    took = time.perf_counter() - sent
    manifest = json.loads((out / "run.json").read_text())
    journal = (out / "requests.jsonl").read_bytes().count(b"\n")
    stored = len(bench.load_run(out).requests)
    print(f"SIGTERM after {after_s:g} s: exit {code} {took:.2f} s later, ended {manifest['ended']}, "
          f"{stored:,} requests stored of {journal:,} journalled, peak RSS {rss:,.0f} MiB")
    ok = took <= TERM_WITHIN_S and manifest["ended"] == "interrupted" and stored == journal and code == 130
    print(f"{'PASS' if ok else 'FAIL'}: ends within {TERM_WITHIN_S:g} s as interrupted (exit 130), every record kept")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1_000_000)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--term-after", type=float, default=6.0, help="seconds into the second run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp) / "overload.yaml"
        scenario.write_text(yaml.safe_dump({"name": "overload", "requests": {"inline": ["Say hello."]},
                                            "load": {"rate": args.rate, "duration": args.duration}}))
        first = overloaded(scenario, Path(tmp) / "run", args.duration)
        second = terminated(scenario, Path(tmp) / "term", args.term_after)
    return 0 if first and second else 1


if __name__ == "__main__":
    raise SystemExit(main())
