"""Starting and stopping: no process is left behind, errors carry the child's stderr."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from bench.sim import SimStartError, start_sim
from bench.sim.process import READY_PREFIX

ROOT = Path(__file__).resolve().parents[2]


def gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.02)
    return False


def test_handle_stop_and_context_manager() -> None:
    sim = start_sim("zero")
    pid = sim.pid
    assert psutil.pid_exists(pid) and sim.base_url.endswith(f":{sim.port}/v1")
    assert sim.root_url.startswith("http://127.0.0.1:")
    assert sim.stop() == 0 and gone(pid)
    assert sim.stop() == 0  # idempotent
    with start_sim("zero") as sim2:
        pid2 = sim2.pid
        with urllib.request.urlopen(f"{sim2.root_url}/health") as resp:
            assert resp.status == 200
    assert gone(pid2)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_cleanly_mid_stream(sig: signal.Signals) -> None:
    sim = start_sim("slow-70b")
    # A long stream in flight must not keep the server alive.
    req = urllib.request.Request(
        f"{sim.base_url}/completions",
        data=json.dumps({"model": "sim-70b", "prompt": "x", "max_tokens": 500,
                         "stream": True, "ignore_eos": True}).encode(),
        headers={"Content-Type": "application/json"})
    resp = urllib.request.urlopen(req, timeout=10)
    resp.readline()
    t0 = time.monotonic()
    os.kill(sim.pid, sig)
    assert sim.proc.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 5
    assert gone(sim.pid)
    resp.close()
    sim.stop()


def test_module_cli_foreground_sigint(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.sim", "--port", "0", "--profile", "zero", "--seed", "2",
         "--fault", "http_500:every=2", "--trace", str(trace)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        line = proc.stdout.readline().decode()
        assert line.startswith(READY_PREFIX)
        base = line[len(READY_PREFIX):].split()[0]
        body = json.dumps({"model": "sim-zero", "prompt": "a b", "max_tokens": 3}).encode()
        for _ in range(2):
            try:
                urllib.request.urlopen(urllib.request.Request(
                    f"{base}/completions", data=body,
                    headers={"Content-Type": "application/json"}), timeout=5).read()
            except urllib.error.HTTPError as err:
                assert err.code == 500
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [r["fault"] for r in records] == [None, "http_500:every=2"]
    assert records[0]["output_tokens"] == 3 and records[1]["status"] == 500


def test_bad_start_reports_stderr(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("max_num_seqs: -1\n")
    with pytest.raises(SimStartError, match="max_num_seqs"):
        start_sim(str(bad))
    with pytest.raises(SimStartError, match="bad_kind"):
        start_sim("zero", faults=["bad_kind:p=1"])


def test_child_dies_with_parent() -> None:
    # A parent that exits without stopping its simulator must not leave it running.
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "from bench.sim import start_sim\n"
            "sim = start_sim('zero'); print(sim.pid, flush=True)\n"
            "import os; os._exit(0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30,
                         text=True)
    pid = int(out.stdout.split()[0])
    assert gone(pid), f"simulator {pid} outlived its parent"


def test_port_in_use_is_a_clear_error() -> None:
    with start_sim("zero") as sim:
        with pytest.raises(SimStartError, match="cannot serve"):
            start_sim("zero", port=sim.port)


def test_rejected_requests_have_an_id_and_a_record() -> None:
    with start_sim("zero") as sim:
        req = urllib.request.Request(f"{sim.base_url}/completions", data=b"{}",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req)
        rid = err.value.headers["x-request-id"]
        with urllib.request.urlopen(f"{sim.root_url}/sim/requests/{rid}") as resp:
            assert json.load(resp)["status"] == 400
