"""The openai SDK seam: one module imports the SDK, its version range is the one declared,
and when a private hook the direct path needs is missing, the public SDK path gives the same
answers (bodies, error kinds, statuses, server messages) against the same loopback server."""

from __future__ import annotations

import ast
import asyncio
import sys
import tomllib
from pathlib import Path

import openai
import orjson
import pytest
from faultserver import FaultServer

from bench.runner import sdk
from bench.runner.client import ClientConfig, ClientError, StreamClient

ROOT = Path(__file__).resolve().parents[3]
BEHAVIOURS = ["ok", "http_400_json", "http_404_detail", "http_422_str", "http_429", "http_500_plain",
              "http_503_html", "eof_mid", "abort_mid"]


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_the_seam_imports_the_sdk_or_its_http_library():
    users = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "bench").rglob("*.py")
                   if _imported_roots(p) & {"openai", "httpx2", "httpx"})
    assert users == ["bench/runner/sdk.py"]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def test_declared_range_is_the_seams_and_the_installed_sdk_is_inside_it():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    line = next(d for d in deps if d.startswith("openai"))
    assert line == f"openai[aiohttp]{sdk.SUPPORTED_OPENAI}"
    low, high = (part.lstrip("<>=") for part in sdk.SUPPORTED_OPENAI.split(","))
    assert _version(low) <= _version(sdk.openai_version()) < _version(high)


def test_the_installed_sdk_has_every_hook_of_the_direct_path():
    # A client without the private methods (as a release that renamed them would be).
    assert sdk.missing_hooks(object())[:4] == list(sdk.DIRECT_HOOKS[:4])
    assert sdk.missing_hooks(openai.AsyncOpenAI(api_key="x")) == []
    client = StreamClient(ClientConfig("http://127.0.0.1:9/v1", None, 1.0, 4))
    assert client.direct
    asyncio.run(client.aclose())


async def _answer(client: StreamClient, base_url: str, behaviour: str) -> tuple[object, ...]:
    body = orjson.dumps({"model": behaviour, "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    try:
        response = await client.open_stream("/chat/completions", body)
    except ClientError as exc:
        return ("error", exc.kind, exc.http_status, exc.retry_after_s, str(exc))
    try:
        data = b"".join([piece async for _, piece in response.reads()])
    except ClientError as exc:
        return ("dropped", response.status, exc.kind)
    finally:
        await response.aclose()
    return ("ok", response.status, response.content_type, data)


async def _answers(server: FaultServer) -> dict[str, tuple[object, ...]]:
    client = StreamClient(ClientConfig(server.base_url, "sk-test", 2.0, 8))
    try:
        return {b: await _answer(client, server.base_url, b) for b in BEHAVIOURS}
    finally:
        await client.aclose()


def _remove_options_class(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if a release moved it: the SDK's own modules keep the name they imported.
    monkeypatch.delattr(sys.modules["openai._models"], "FinalRequestOptions")


def _remove_bridge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai._vendor.httpx_aiohttp", None)  # import fails


async def _sent_time_known(server: FaultServer) -> bool:
    client = StreamClient(ClientConfig(server.base_url, "sk-test", 2.0, 8))
    try:
        body = orjson.dumps({"model": "ok", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        response = await client.open_stream("/chat/completions", body)
        await response.aclose()
        return response.sent_at is not None
    finally:
        await client.aclose()


@pytest.mark.parametrize("remove, missing, on_our_session", [
    (_remove_options_class, ["openai._models.FinalRequestOptions"], True),
    (_remove_bridge, ["openai._vendor.httpx_aiohttp.AiohttpTransport"], False),
])
async def test_without_a_private_hook_the_public_path_answers_alike(monkeypatch, remove, missing, on_our_session):
    with FaultServer(api_key="sk-test") as server:
        direct = await _answers(server)
        remove(monkeypatch)
        client = StreamClient(ClientConfig(server.base_url, "sk-test", 2.0, 8))
        assert not client.direct
        await client.aclose()
        assert sdk.missing_hooks(openai.AsyncOpenAI(api_key="x")) == missing
        fallback = await _answers(server)
        # With the SDK's bridge the requests still go out on our session (send time known).
        assert await _sent_time_known(server) is on_our_session
    assert direct["ok"][0] == "ok" and direct["ok"][1] == 200 and direct["ok"][3].endswith(b"data: [DONE]\n\n")
    assert direct["http_429"][1:4] == ("http_429", 429, 2.0)
    assert direct["http_503_html"][1:4] == ("http_503", 503, 7.0)
    assert "503 Service Unavailable" in str(direct["http_503_html"][4])
    assert direct["abort_mid"][:3] == ("dropped", 200, "stream_dropped")
    assert fallback == direct
