"""Smoke test against a real llama.cpp server (built by scripts/llama_server.sh).

Set LLAMA_SERVER and LLAMA_MODEL to skip the build/fetch step. Run with `pytest -m real_server`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import urllib.request
from pathlib import Path

import openai
import pytest

from bench.target.launch import LaunchedServer, free_port
from bench.target.promscrape import MetricsScraper, key_series, parse_prometheus_text

pytestmark = pytest.mark.real_server

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "llama_server.sh"
BUILD_TIMEOUT_S = 40 * 60  # a cold build is 5-9 min on 2 cores; leave room for a loaded CI box


def llama_paths() -> tuple[str, str]:
    """(binary, gguf) from the environment, else from scripts/llama_server.sh (cached build)."""
    server, model = os.environ.get("LLAMA_SERVER"), os.environ.get("LLAMA_MODEL")
    if server and model:
        return server, model
    out = subprocess.run(
        ["bash", str(SCRIPT)], check=True, stdout=subprocess.PIPE, text=True, timeout=BUILD_TIMEOUT_S
    ).stdout
    found = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return found["LLAMA_SERVER"], found["LLAMA_MODEL"]


def llama_command(server: str, model: str, port: int) -> list[str]:
    # The flags of issue 8: the GGUF has no chat template, so name one and turn jinja off.
    return [
        server, "--model", model, "--alias", "gemma3-270m", "--host", "127.0.0.1", "--port", str(port),
        "--threads", "1", "--parallel", "8", "--ctx-size", "16384", "--no-jinja",
        "--chat-template", "gemma", "--no-webui", "--metrics",
        # The repacked-weight kernels use AMX when the CPU advertises it; VMs that advertise
        # AMX without letting programs use it kill the server with SIGILL at start-up.
        "--no-repack",
    ]  # fmt: skip


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_launch_stream_usage_metrics_and_stop(tmp_path: Path) -> None:
    server, model = llama_paths()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log = tmp_path / "llama-server.log"
    with LaunchedServer(llama_command(server, model, port), base_url, log, ready_timeout_s=120) as srv:
        pid = srv.pid
        assert pid is not None
        client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=120)
        chunks = list(
            client.chat.completions.create(
                model="gemma3-270m",
                messages=[{"role": "user", "content": "Name three rivers."}],
                max_tokens=16,
                stream=True,
                stream_options={"include_usage": True},
                seed=1,
            )
        )
        # llama.cpp's layout: a role-only first chunk with no content, then content chunks,
        # the finish_reason chunk, and a usage chunk with no choices.
        first = chunks[0]
        assert first.choices[0].delta.role == "assistant" and not first.choices[0].delta.content
        usage_chunks = [c for c in chunks if c.usage is not None]
        assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
        assert chunks[-1].choices == []
        usage = chunks[-1].usage
        assert usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 16
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish in (["length"], ["stop"])

        root = base_url.removesuffix("/v1")
        with urllib.request.urlopen(f"{root}/metrics", timeout=10) as resp:
            samples = {s.name: s.value for s in parse_prometheus_text(resp.read().decode())}
        assert samples["llamacpp:tokens_predicted_total"] >= usage.completion_tokens
        assert "llamacpp:requests_processing" in samples and "llamacpp:requests_deferred" in samples
    assert pid_gone(pid), f"llama-server pid {pid} still alive after stop"
    assert "# bench launch:" in log.read_text()


async def test_metrics_scraper_sees_real_load(tmp_path: Path) -> None:
    server, model = llama_paths()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    with LaunchedServer(llama_command(server, model, port), base_url, tmp_path / "log") as srv:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=120)

        async def one(i: int) -> int:
            stream = await client.chat.completions.create(
                model="gemma3-270m",
                messages=[{"role": "user", "content": f"Count to {i + 5}."}],
                max_tokens=32,
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"ignore_eos": True},  # llama.cpp: always produce max_tokens
            )
            usage = [chunk.usage async for chunk in stream if chunk.usage is not None]
            return usage[-1].completion_tokens

        async with MetricsScraper(f"{base_url.removesuffix('/v1')}/metrics", interval_s=0.1) as scraper:
            produced = sum(await asyncio.gather(*(one(i) for i in range(3))))
        await client.close()
        pid = srv.pid
    assert pid is not None and pid_gone(pid)
    assert scraper.stats.errors == 0, scraper.stats.last_error
    ks = key_series(scraper.to_frame())
    assert ks.attrs["sources"]["running"] == "llamacpp:requests_processing"
    assert ks["running"].max() >= 1  # caught the server while it was busy
    assert ks["generation_tokens_total"].iloc[-1] >= produced == 3 * 32  # final scrape after the load
    assert ks["kv_cache_usage"].isna().all()  # this llama.cpp exports no KV-cache gauge
