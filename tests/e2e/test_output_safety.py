"""Output safety: a run directory is never overwritten, and a write failure mid-run stops the
run with one clear line while everything written before stays readable."""

from __future__ import annotations

import gc
import resource
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import orjson
import pytest
from benchtest import write_scenario
from faultserver import FaultServer

import bench
from bench.commands.cli import main
from bench.commands.run import run_scenario
from bench.commands.rundir import RunOptions
from bench.errors import BenchInputError
from bench.scenario.loader import load_scenario
from bench.store import journal_chunks

REPO = Path(__file__).resolve().parents[2]
FSIZE_LIMIT = 64 * 1024  # bytes per file: run.json fits, the journal outgrows it after ~12 records
MAX_REQUESTS = 300


def _scenario(base_url: str, **load) -> dict:
    return {
        "name": "safety",
        "target": {"base_url": base_url, "model": "fault-model"},
        "requests": {"inline": ["coalesced"]},  # a whole 200-token stream in one write: fast
        "load": {"concurrency": 4, "max_requests": 4, **load},
    }


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


# -- never overwritten ---------------------------------------------------------------------


@pytest.mark.parametrize("existing", ["run", "empty_dir", "file"])
def test_an_existing_out_path_is_refused_and_left_untouched(tmp_path, capsys, existing):
    out = tmp_path / "out"
    if existing == "run":
        with FaultServer(tokens=4) as server:
            path = write_scenario(tmp_path, _scenario(server.base_url))
            assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    elif existing == "empty_dir":
        out.mkdir()
    else:
        out.write_text("not a run\n")
    before = _snapshot(tmp_path)
    capsys.readouterr()
    with FaultServer(tokens=4) as server:
        path = write_scenario(tmp_path, _scenario(server.base_url), name="again.yaml")
        before[path.name] = _snapshot(tmp_path)[path.name]
        code = main(["run", str(path), "--out", str(out), "--quiet"])
        seen = list(server.seen)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "already exists" in err and str(out) in err, err
    assert seen == []  # refused before sending anything
    assert _snapshot(tmp_path) == before


def test_a_run_refused_during_set_up_still_closes_its_client(tmp_path):
    out = tmp_path / "out"
    out.mkdir()  # run_scenario finds this only after it has set up the client
    with FaultServer(tokens=4) as server:
        scenario = _scenario(server.base_url)
        del scenario["target"]["model"]  # asked of the server: the client is in use before the refusal
        path = write_scenario(tmp_path, scenario)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            with pytest.raises(BenchInputError, match="already exists"):
                run_scenario(load_scenario(path), RunOptions(scenario_path=path, out_dir=out, show_progress=False))
            gc.collect()
    assert [str(w.message) for w in caught if "Unclosed" in str(w.message)] == []


def test_runs_in_the_same_second_never_share_a_directory(tmp_path):
    """Default directories are `<UTC second>-<name>`: a second run in the same second must
    get a directory of its own or be refused, never write into the first one."""
    with FaultServer(tokens=4) as server:
        path = write_scenario(tmp_path, _scenario(server.base_url))
        scenario = load_scenario(path)
        options = RunOptions(scenario_path=path, results_root=tmp_path / "results", show_progress=False)
        first = run_scenario(scenario, options)
        before = _snapshot(first.run.path)
        try:
            second = run_scenario(scenario, options)
        except BenchInputError as exc:
            assert "already exists" in str(exc)
        else:
            assert second.run.path != first.run.path
    assert _snapshot(first.run.path) == before


def test_an_unwritable_results_root_is_one_line_exit_2(tmp_path, capsys):
    # A results root under a regular file cannot be created, by root too (CI runs as root,
    # which ignores directory permissions).
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    root = blocker / "results"
    with FaultServer(tokens=4) as server:
        path = write_scenario(tmp_path, _scenario(server.base_url))
        code = main(["run", str(path), "--results-root", str(root), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot create run directory" in err, err
    assert not root.exists()


# -- a write failure mid-run ---------------------------------------------------------------


def _limit_file_size() -> None:  # runs in the child between fork and exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


@pytest.fixture(scope="module")
def full_disk_run(tmp_path_factory):
    """`bench run` in a child whose files cannot grow past FSIZE_LIMIT (like a full disk)."""
    tmp = tmp_path_factory.mktemp("fsize")
    out = tmp / "run"
    with FaultServer(tokens=200) as server:
        path = write_scenario(tmp, _scenario(server.base_url, max_requests=MAX_REQUESTS))
        proc = subprocess.run([sys.executable, "-m", "bench", "run", str(path), "--out", str(out), "--quiet"],
                              cwd=REPO, preexec_fn=_limit_file_size, capture_output=True, text=True, timeout=60)
        sent = len(server.seen)
    return proc, out, sent


def _journal_lines(out: Path) -> list[dict]:
    data = (out / "requests.jsonl").read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    return [orjson.loads(line) for line in complete.splitlines()]


def test_a_write_failure_stops_the_run_and_keeps_what_was_written(full_disk_run):
    proc, out, sent = full_disk_run
    assert proc.returncode != 0
    journal = (out / "requests.jsonl").read_bytes()
    assert len(journal) <= FSIZE_LIMIT
    rows = _journal_lines(out)
    assert len(rows) >= 5  # every record written before the failure parses
    assert all(r["status"] == "ok" and journal_chunks(r)[0].size == 203 for r in rows)
    assert sent < MAX_REQUESTS / 2  # sending stopped soon after the failure
    manifest = orjson.loads((out / "run.json").read_bytes())
    assert manifest["t0_perf_counter"] > 0


def test_a_write_failure_is_one_clear_line_and_the_run_still_loads(full_disk_run):
    proc, out, _ = full_disk_run
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("bench: run failed: ") and "requests.jsonl" in lines[0]
    assert "File too large" in lines[0]
    rows = _journal_lines(out)
    run = bench.load_run(out)
    assert run.manifest.ended == "failed" and "cannot write records" in (run.manifest.end_reason or "")
    assert len(run.requests) == len(rows) and (run.requests["output_tokens"] == 200).all()
    assert run.requests["ttft_ms"].notna().all()
