"""Resolving the server under test: an external URL, a launched command or the built-in
simulator; its API key, model, self-description, and retries for set-up requests."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bench.errors import BenchInputError, ServerStartFailed, TargetUnusable
from bench.redact import redact_argv
from bench.runner.client import ClientError, StreamClient
from bench.runner.process import separate_cores
from bench.runner.sse import StreamProtocolError
from bench.scenario.schema import Launch, Scenario

__all__ = [
    "PROBE_ATTEMPTS", "PROBE_BACKOFF_S", "TargetInfo", "fetch_server_info", "read_api_key",
    "resolve_model", "resolve_target", "root_url", "with_retries",
]

T = TypeVar("T")


@dataclass(frozen=True)
class TargetInfo:
    base_url: str
    description: str
    simulated: bool = False
    launch_pid: int | None = None
    launch_command: str | None = None
    launch_log: Path | None = None

    def manifest_dict(self, endpoint: str) -> dict[str, Any]:
        info: dict[str, Any] = {"base_url": self.base_url, "endpoint": endpoint, "simulated": self.simulated,
                                "description": self.description}
        if self.launch_pid is not None:
            info["launched"] = {"pid": self.launch_pid, "command": self.launch_command}
        return info


def resolve_target(scenario: Scenario, stack: ExitStack) -> TargetInfo:
    target = scenario.target
    if target.launch is not None and target.base_url:
        return _launch_server(target.launch, target.base_url, stack)
    if target.base_url:
        return TargetInfo(target.base_url, "external server")
    from bench.sim import start_sim

    profile = target.sim_profile or "default"
    sim = stack.enter_context(start_sim(profile=profile, seed=scenario.seed))
    cores = separate_cores(sim.pid, stack)
    note = f"built-in simulator, profile {profile!r}" + (f", on core {cores}" if cores is not None else "")
    return TargetInfo(sim.base_url, note, simulated=True)


def _launch_server(launch: Launch, base_url: str, stack: ExitStack) -> TargetInfo:
    from bench.target.launch import LaunchedServer, LaunchError, split_command

    fd, name = tempfile.mkstemp(prefix="bench-server-", suffix=".log")
    os.close(fd)
    log = Path(name)
    server = LaunchedServer(launch.command, base_url, log, env=launch.env or None,
                            ready_timeout_s=launch.ready_timeout_s)
    try:
        server.start()
    except LaunchError as exc:
        raise ServerStartFailed(f"target.launch: {exc}", log) from None
    # Stopped by PID (its process group) however the run ends.
    stack.callback(server.stop)
    command = " ".join(redact_argv(split_command(launch.command)))
    return TargetInfo(base_url, "launched server", launch_pid=server.pid, launch_command=command, launch_log=log)


def read_api_key(scenario: Scenario) -> str | None:
    target = scenario.target
    if target.api_key_env:
        value = os.environ.get(target.api_key_env)
        if not value:
            raise BenchInputError(f"target.api_key_env: environment variable {target.api_key_env} is not set")
        return value.strip()
    if target.api_key_file:
        path = Path(target.api_key_file).expanduser()
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise BenchInputError(f"target.api_key_file: cannot read {path}: {exc.strerror or exc}") from None
    return None


# Set-up requests (model list, prompt-token probes) are tried this often while the server
# fails in a way that can pass (5xx, 429, a dropped stream), with these pauses between.
PROBE_ATTEMPTS = 4


PROBE_BACKOFF_S = (0.25, 0.5, 1.0)


_CONNECT_KINDS = {"connect_refused": "connection refused", "connect_timeout": "connect timed out"}


async def with_retries(base_url: str, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """`attempt()`, tried again (PROBE_ATTEMPTS in all) while its failure may pass: an HTTP
    5xx or 429, a dropped or broken stream. An unreachable server, a lasting failure, a
    4xx or a timeout raise TargetUnusable with one line saying which."""
    failure: BaseException | None = None
    for tries in range(1, PROBE_ATTEMPTS + 1):
        try:
            return await attempt()
        except ClientError as exc:
            if exc.kind in _CONNECT_KINDS or exc.kind == "connect_error":
                raise TargetUnusable(f"cannot connect to {base_url}: {_CONNECT_KINDS.get(exc.kind, exc)}") from None
            failure = exc
            if exc.http_status is not None and exc.http_status < 500 and exc.http_status != 429:
                break  # the server refused this request: asking again gets the same answer
        except StreamProtocolError as exc:
            failure = exc
        except TimeoutError:
            raise TargetUnusable(f"the server at {base_url} did not answer {what} in time") from None
        if tries < PROBE_ATTEMPTS:
            await asyncio.sleep(PROBE_BACKOFF_S[tries - 1])
    raise TargetUnusable(f"the server at {base_url} failed {what}"
                         + (f" {tries} times in a row" if tries > 1 else "") + f": {_failure_line(failure)}")


def _failure_line(exc: BaseException | None) -> str:
    status = getattr(exc, "http_status", None)
    kind = f"HTTP {status}" if status is not None else getattr(exc, "kind", "error")
    return f"{kind}: {exc}"


def root_url(base_url: str) -> str:
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


async def fetch_server_info(base_url: str) -> dict[str, Any]:
    """What the server says about itself (vLLM /version, llama.cpp /props, TGI /info)."""
    import aiohttp

    info: dict[str, Any] = {}
    root = root_url(base_url)
    timeout = aiohttp.ClientTimeout(total=2.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for path in ("/version", "/props", "/info"):
            try:
                async with session.get(root + path) as resp:
                    if resp.status == 200 and "json" in resp.content_type:
                        info[path.strip("/")] = _small(await resp.json())
            except (aiohttp.ClientError, TimeoutError, ValueError):
                continue  # not every server has every endpoint
    return info


def _small(value: Any) -> Any:
    """Keep run.json readable: drop long strings (chat templates) and deep nesting."""
    if isinstance(value, dict):
        return {k: _small(v) for k, v in list(value.items())[:50] if not (isinstance(v, str) and len(v) > 500)}
    if isinstance(value, list):
        return [_small(v) for v in value[:20]]
    return value


async def resolve_model(scenario: Scenario, client: StreamClient, base_url: str) -> str:
    if scenario.target.model:
        return scenario.target.model
    if scenario.target.models:
        return next(iter(scenario.target.models))  # the first named; each request names its own
    models = await with_retries(base_url, "the model list (GET /models; target.model unset)", client.list_models)
    if not models:
        raise BenchInputError(f"target.model: {base_url}/models lists no model; set target.model")
    return models[0]
