"""Start the simulator in a child process on a free loopback port, and stop it."""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import Any

from bench.sim.profile import load_profile

__all__ = ["READY_PREFIX", "SimHandle", "SimStartError", "start_sim"]

READY_PREFIX = "bench-sim ready "  # first stdout line of the child
_LIVE: weakref.WeakSet[SimHandle] = weakref.WeakSet()


class SimStartError(RuntimeError):
    """The simulator did not come up; the message carries its stderr."""


class SimHandle:
    def __init__(self, proc: subprocess.Popen[bytes], host: str, port: int,
                 stderr_path: Path, profile_path: Path | None) -> None:
        self.proc = proc
        self.host = host
        self.port = port
        self.root_url = f"http://{host}:{port}"
        self.base_url = f"{self.root_url}/v1"
        self._stderr_path = stderr_path
        self._profile_path = profile_path
        self._stopped = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_text(self) -> str:
        try:
            return self._stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait, SIGKILL after `timeout`; idempotent. Returns the exit code."""
        if not self._stopped:
            self._stopped = True
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            for path in (self._stderr_path, self._profile_path):
                if path is not None:
                    path.unlink(missing_ok=True)
        return self.proc.returncode

    def __enter__(self) -> SimHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SimHandle(base_url={self.base_url!r}, pid={self.pid})"


def _stop_all() -> None:
    for handle in list(_LIVE):
        handle.stop()


atexit.register(_stop_all)


def start_sim(profile: str | Path | dict[str, Any] = "default", seed: int = 0,
              host: str = "127.0.0.1", port: int = 0, faults: list[str] | None = None,
              trace: str | Path | None = None, timeout: float = 15.0) -> SimHandle:
    """Start `python -m bench.sim` in a child process and wait until /health answers."""
    profile_path: Path | None = None
    if isinstance(profile, dict):
        load_profile(profile)  # fail here, with a clear message, not in the child
        fd, name = tempfile.mkstemp(prefix="bench-sim-profile-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(profile, f)
        profile_path = Path(name)
        profile_args = ["--profile-json", name]
    else:
        profile_args = ["--profile", str(profile)]
    fd, err_name = tempfile.mkstemp(prefix="bench-sim-", suffix=".stderr")
    stderr_path = Path(err_name)
    cmd = [sys.executable, "-m", "bench.sim", "--host", host, "--port", str(port),
           "--seed", str(seed), "--parent-pid", str(os.getpid()), *profile_args]
    for spec in faults or []:
        cmd += ["--fault", spec]
    if trace is not None:
        cmd += ["--trace", str(trace)]
    env = dict(os.environ)
    # The child must import this very package, even when run from another directory.
    pkg_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_root, env.get("PYTHONPATH")]))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=fd, stdin=subprocess.DEVNULL,
                            env=env)
    os.close(fd)
    handle = SimHandle(proc, host, 0, stderr_path, profile_path)
    try:
        handle.port = _wait_ready(proc, timeout, stderr_path)
    except BaseException:
        handle.stop()
        raise
    handle.root_url = f"http://{host if ':' not in host else f'[{host}]'}:{handle.port}"
    handle.base_url = f"{handle.root_url}/v1"
    _LIVE.add(handle)
    return handle


def _wait_ready(proc: subprocess.Popen[bytes], timeout: float, stderr_path: Path) -> int:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if proc.poll() is not None or left <= 0:
            why = f"exited with code {proc.returncode}" if proc.returncode is not None \
                else f"not ready after {timeout:g} s"
            raise SimStartError(f"bench sim {why}; stderr:\n{_read(stderr_path)}")
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.2))
        if ready:
            byte = os.read(proc.stdout.fileno(), 1)
            if not byte:
                continue
            line += byte
    text = line.decode(errors="replace").strip()
    match = re.search(r":(\d+)/v1", text) if text.startswith(READY_PREFIX) else None
    if match is None:
        raise SimStartError(f"unexpected first line from bench sim: {text!r}; stderr:\n"
                            f"{_read(stderr_path)}")
    port = int(match.group(1))
    host_url = text[len(READY_PREFIX):].split()[0].removesuffix("/v1") + "/health"
    host_url = host_url.replace("//0.0.0.0:", "//127.0.0.1:").replace("//[::]:", "//[::1]:")
    # No proxy: an http_proxy in the environment must not capture a loopback probe.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while True:
        try:
            with opener.open(host_url, timeout=1.0) as resp:
                if resp.status == 200:
                    return port
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SimStartError(f"bench sim did not answer /health; stderr:\n{_read(stderr_path)}")
        time.sleep(0.02)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-8000:]
    except OSError:
        return "<no stderr>"
