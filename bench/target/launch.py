"""Start, wait for, and stop a server under test (llama-server, vLLM, SGLang, the simulator).

The server runs in its own process group so that stopping it also stops whatever it forked
(vLLM's engine workers, a wrapper shell), and its output goes straight to a log file so a
chatty server can never block on a full pipe.
"""

from __future__ import annotations

import atexit
import http.client
import os
import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from bench.redact import redact_argv

__all__ = ["LaunchError", "LaunchedServer", "free_port", "log_tail", "split_command"]

DEFAULT_READY_TIMEOUT_S = 120.0
DEFAULT_STOP_TIMEOUT_S = 5.0
LOG_TAIL_LINES = 20


class LaunchError(RuntimeError):
    """The server did not become ready; the message carries its exit code and log tail."""


@dataclass(frozen=True)
class ReadyProbe:
    """Where and how often readiness is polled."""

    url: str
    interval_s: float = 0.2
    request_timeout_s: float = 2.0


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago on `host`.

    The kernel picks it; another process may still take it before the server binds, which
    is the accepted race of every "find a free port" helper.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def split_command(command: str | Sequence[str]) -> list[str]:
    """A command as an argv list; strings are split like a shell would, but never run by one."""
    if isinstance(command, str):
        argv = shlex.split(command)
    else:
        argv = [str(arg) for arg in command]
    if not argv:
        raise ValueError("empty server command")
    return argv


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log file ('' when it does not exist)."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            return "".join(deque(f, maxlen=lines)).rstrip("\n")
    except FileNotFoundError:
        return ""


def _answers_ok(probe: ReadyProbe) -> bool:
    """True when the probe URL answers 200; connection errors and other statuses mean "not yet"."""
    try:
        with urllib.request.urlopen(probe.url, timeout=probe.request_timeout_s) as resp:
            return bool(resp.status == 200)
    except urllib.error.HTTPError:
        return False  # e.g. llama-server's 503 while the model is still loading
    except (urllib.error.URLError, http.client.HTTPException, OSError):
        return False  # not listening yet, reset, timeout (socket.timeout is an OSError)


class LaunchedServer:
    """A server process started from a command and stopped for sure.

    Use as a context manager::

        with LaunchedServer(cmd, base_url="http://127.0.0.1:8080/v1", log_path=log) as srv:
            ...  # srv.pid, srv.base_url

    `base_url` includes the API prefix (`/v1`); readiness is `GET {base_url}/models` == 200.
    `env` is overlaid on the current environment unless `inherit_env` is False.
    """

    def __init__(
        self,
        command: str | Sequence[str],
        base_url: str,
        log_path: str | Path,
        env: Mapping[str, str] | None = None,
        *,
        inherit_env: bool = True,
        cwd: str | Path | None = None,
        ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S,
        stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
        poll_interval_s: float = 0.2,
    ) -> None:
        self.argv = split_command(command)
        self.base_url = base_url.rstrip("/")
        self.log_path = Path(log_path)
        self._env = dict(env or {})
        self._inherit_env = inherit_env
        self._cwd = None if cwd is None else str(cwd)
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.probe = ReadyProbe(url=f"{self.base_url}/models", interval_s=poll_interval_s)
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopped = False
        self.ready_after_s: float | None = None

    # -- state ------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return log_tail(self.log_path, lines)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> LaunchedServer:
        """Start the process and block until it is ready; raise LaunchError otherwise.

        On failure the process (group) is already stopped when the error is raised.
        """
        if self._proc is not None:
            raise RuntimeError("LaunchedServer.start() called twice")
        self._spawn()
        try:
            self._wait_ready()
        except BaseException:
            # Also on KeyboardInterrupt: never leave a half-started server behind.
            self.stop()
            raise
        return self

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self._env} if self._inherit_env else dict(self._env)
        with self.log_path.open("ab") as log:
            header = f"# bench launch: {shlex.join(redact_argv(self.argv))}\n"
            log.write(header.encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self._cwd,
                    start_new_session=True,  # own process group: killpg reaches its children
                )
            except OSError as exc:  # missing binary, not executable, bad cwd
                raise LaunchError(f"cannot start {self.argv[0]!r}: {exc}") from exc
        # Registered per instance so an interpreter exit (normal or via an uncaught
        # exception / Ctrl-C) still stops the server; stop() unregisters it.
        atexit.register(self.stop)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        t0 = time.monotonic()
        deadline = t0 + self.ready_timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                raise LaunchError(self._failure_message(f"exited with code {code} before it was ready"))
            if _answers_ok(self.probe):
                self.ready_after_s = time.monotonic() - t0
                return
            if time.monotonic() >= deadline:
                raise LaunchError(
                    self._failure_message(
                        f"not ready after {self.ready_timeout_s:g} s (GET {self.probe.url} never answered 200)"
                    )
                )
            time.sleep(self.probe.interval_s)

    def _failure_message(self, what: str) -> str:
        tail = self.log_tail()
        body = tail if tail else "(log is empty)"
        return (
            f"server {shlex.join(redact_argv(self.argv))!r} {what}\n"
            f"--- last {LOG_TAIL_LINES} lines of {self.log_path} ---\n{body}"
        )

    def stop(self) -> int | None:
        """SIGTERM the process group, SIGKILL it after `stop_timeout_s`; return the exit code.

        Safe to call any number of times, from atexit too.
        """
        proc = self._proc
        if proc is None or self._stopped:
            return None if proc is None else proc.returncode
        self._stopped = True
        atexit.unregister(self.stop)
        pgid = proc.pid  # start_new_session made the child its group's leader
        _signal_group(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            proc.wait()
        # The leader may exit on SIGTERM while children it forked ignore it; finish them.
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
        return proc.returncode

    def __enter__(self) -> LaunchedServer:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # already gone
    except PermissionError:
        pass  # the pgid was recycled by someone else's group: not ours to signal


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
