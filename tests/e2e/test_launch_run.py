"""`target.launch` / `--launch`: bench starts the server, runs, and stops it by PID."""

from __future__ import annotations

import json
import os
import sys

from benchtest import write_scenario

from bench.commands.cli import main
from bench.target.launch import free_port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_launched_server_is_used_logged_and_stopped(scenario_dir):
    port = free_port()
    path = write_scenario(scenario_dir, {
        "requests": {"synthetic": {"prompt_tokens": 8, "output_tokens": 4}},
        "load": {"concurrency": 2, "max_requests": 6},
    })
    out = scenario_dir / "run"
    code = main(["run", str(path), "--quiet", "--no-report", "--out", str(out),
                 "--base-url", f"http://127.0.0.1:{port}/v1",
                 "--launch", f"{sys.executable} -m bench.sim --port {port} --profile zero"])
    assert code == 0
    manifest = json.loads((out / "run.json").read_text())
    launched = manifest["target"]["launched"]
    assert "bench.sim" in launched["command"]
    assert not _alive(launched["pid"])
    assert "bench-sim ready" in (out / "server.log").read_text()
    assert (out / "server_metrics.parquet").exists()


def test_a_server_that_never_starts_fails_the_run_with_its_log_tail(scenario_dir, capsys):
    path = write_scenario(scenario_dir, {
        "target": {"launch": {"command": [sys.executable, "-c", "print('boom at start'); raise SystemExit(3)"],
                              "ready_timeout_s": 20},
                   "base_url": f"http://127.0.0.1:{free_port()}/v1"},
        "requests": {"synthetic": {"prompt_tokens": 8}},
        "load": {"concurrency": 1, "max_requests": 1},
    })
    assert main(["run", str(path), "--quiet", "--out", str(scenario_dir / "run")]) == 1
    err = capsys.readouterr().err
    assert "target.launch" in err and "code 3" in err and "boom at start" in err


def test_launched_server_is_stopped_when_the_run_is_interrupted(scenario_dir):
    import signal
    import subprocess
    import time

    port = free_port()
    path = write_scenario(scenario_dir, {
        "target": {"base_url": f"http://127.0.0.1:{port}/v1",
                   "launch": {"command": [sys.executable, "-m", "bench.sim", "--port", str(port)]}},
        "requests": {"synthetic": {"prompt_tokens": 8, "output_tokens": 200}},
        "load": {"rate": 10, "duration": 60},
    })
    out = scenario_dir / "run"
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", str(path), "--quiet", "--no-report",
                             "--out", str(out)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (out / "requests.jsonl").exists() or not (out / "requests.jsonl").read_bytes():
        assert time.monotonic() < deadline, "no record written"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["ended"] == "interrupted"
    assert not _alive(manifest["target"]["launched"]["pid"])
    assert (out / "server.log").exists()


def test_secrets_in_the_launch_command_and_env_never_reach_the_run_directory(scenario_dir):
    port = free_port()
    secret_env = "hf-secret-env-4711"
    path = write_scenario(scenario_dir, {
        "target": {"base_url": f"http://127.0.0.1:{port}/v1",
                   "launch": {"command": [sys.executable, "-m", "bench.sim", "--port", str(port), "--profile", "zero",
                                          "--trace", "/dev/null"],
                              "env": {"HF_TOKEN": secret_env}}},
        "requests": {"synthetic": {"prompt_tokens": 8, "output_tokens": 4}},
        "load": {"concurrency": 1, "max_requests": 2},
    })
    out = scenario_dir / "run"
    assert main(["run", str(path), "--quiet", "--out", str(out)]) == 0
    assert json.loads((out / "run.json").read_text())["scenario"]["target"]["launch"]["env"]["HF_TOKEN"] == "***"
    for file in out.rglob("*"):
        if file.is_file():
            assert secret_env.encode() not in file.read_bytes(), file
