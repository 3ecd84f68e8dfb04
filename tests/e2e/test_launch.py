"""bench.target.launch against a real child process (tests/data/fake_openai_server.py) on loopback."""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from pathlib import Path

import pytest

from bench.target.launch import LaunchedServer, LaunchError, free_port, split_command

FAKE = Path(__file__).resolve().parents[1] / "data" / "fake_openai_server.py"


def pid_gone(pid: int) -> bool:
    """No such process, or only a zombie left for a (possibly lazy) init to reap."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return bool(re.search(r"^State:\s+Z", status, re.M))


def fake_cmd(port: int, *flags: str) -> list[str]:
    return [sys.executable, str(FAKE), "--port", str(port), *flags]


def base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1"


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))  # raises EADDRINUSE if the port were taken
        assert sock.getsockname()[1] == port


def test_split_command_uses_shell_rules_without_a_shell() -> None:
    assert split_command("llama-server --alias 'a b' --port 1") == ["llama-server", "--alias", "a b", "--port", "1"]
    assert split_command(["x", 1]) == ["x", "1"]  # type: ignore[list-item]
    with pytest.raises(ValueError):
        split_command("   ")


def test_ready_detection_and_clean_stop(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    with LaunchedServer(fake_cmd(port, "--delay-s", "0.5"), base_url(port), log, ready_timeout_s=10) as srv:
        assert srv.running
        assert srv.ready_after_s is not None and srv.ready_after_s >= 0.4
        pid = srv.pid
        assert pid is not None
    assert pid_gone(pid)
    assert not srv.running
    text = log.read_text()
    assert "# bench launch:" in text and "listening on" in text  # stdout reached the log
    assert srv.stop() == srv.returncode  # idempotent


def test_string_command_and_env_overlay(tmp_path: Path) -> None:
    port = free_port()
    cmd = f"{sys.executable} -c 'import os; print(\"FOO=\" + os.environ[\"FOO\"]); print(\"PATH\" in os.environ)'"
    srv = LaunchedServer(cmd, base_url(port), tmp_path / "log", env={"FOO": "bar"}, ready_timeout_s=5)
    with pytest.raises(LaunchError):
        srv.start()  # exits at once, but the environment reached it
    assert "FOO=bar" in srv.log_tail() and "True" in srv.log_tail()


def test_immediate_exit_reports_code_and_log_tail(tmp_path: Path) -> None:
    port = free_port()
    srv = LaunchedServer(fake_cmd(port, "--exit-code", "3"), base_url(port), tmp_path / "log", ready_timeout_s=10)
    t0 = time.monotonic()
    with pytest.raises(LaunchError) as info:
        srv.start()
    assert time.monotonic() - t0 < 5  # noticed the exit, did not wait for the timeout
    msg = str(info.value)
    assert "exited with code 3" in msg
    assert "fatal: model file not found" in msg
    # Only the tail: the first boot lines are cut, the last ones are there.
    assert "boot line 29" in msg and "boot line 5\n" not in msg
    assert srv.pid is not None and pid_gone(srv.pid)


def test_never_ready_times_out_and_is_stopped(tmp_path: Path) -> None:
    port = free_port()
    srv = LaunchedServer(fake_cmd(port, "--status", "503"), base_url(port), tmp_path / "log", ready_timeout_s=1.5)
    with pytest.raises(LaunchError) as info:
        srv.start()
    msg = str(info.value)
    assert "not ready after 1.5 s" in msg and "/v1/models" in msg
    assert "listening on" in msg  # log tail is included
    assert srv.pid is not None and pid_gone(srv.pid)


def test_missing_binary_is_a_launch_error(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="cannot start"):
        LaunchedServer(["/nonexistent/llama-server"], base_url(1), tmp_path / "log").start()


def test_sigterm_ignored_escalates_to_sigkill_and_kills_group(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "log"
    srv = LaunchedServer(
        fake_cmd(port, "--ignore-sigterm", "--spawn-child"), base_url(port), log, ready_timeout_s=10, stop_timeout_s=0.5
    )
    srv.start()
    match = re.search(r"child pid (\d+)", log.read_text())
    assert match, log.read_text()
    child = int(match.group(1))
    assert not pid_gone(child)
    t0 = time.monotonic()
    code = srv.stop()
    assert time.monotonic() - t0 < 3
    assert code == -9  # SIGKILL after the grace period
    assert srv.pid is not None and pid_gone(srv.pid)
    deadline = time.monotonic() + 2  # the orphaned child is reaped by init shortly after
    while not pid_gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_gone(child)
