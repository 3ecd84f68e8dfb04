"""`bench probe`: its rows say what the server really does.

Against the built-in simulator the expected values come from the simulator itself: its
profile (tokens per chunk, reasoning), its ground-truth records of the probe's own requests
(output tokens, chunk writes, choices, finish reasons), and what its emitter is known to
write (a role chunk with content "", usage in a final chunk with choices [] only when asked,
vLLM's continuous_usage_stats, [DONE], `x-request-id` equal to the chunk id, no comments, no
`timings`, aiohttp keep-alive). A scripted loopback server with the opposite answer on
every row checks that no row is stuck on the simulator's value.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from itertools import pairwise
from typing import Any

import pytest
from aiohttp import web
from benchtest import sim_truth
from faultserver import refused_port

from bench.commands.cli import main
from bench.sim import load_profile, start_sim
from bench.target.probe import run_probe
from bench.target.probe_requests import sse_keepalives, stop_word

ORDER = ("chat", "chat_usage", "chat_continuous", "chat_n2", "chat_stop", "completions")


def _probe_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["probe", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def _switches(choices: list[int]) -> int:
    return sum(1 for a, b in pairwise(choices) if a != b)


@pytest.mark.parametrize("profile_name", ["default", "reasoning"])
def test_probe_rows_match_the_simulator(capsys: pytest.CaptureFixture[str], profile_name: str) -> None:
    profile = load_profile(profile_name)
    with start_sim(profile_name, seed=3) as sim:
        report = _probe_json(capsys, "--base-url", sim.base_url)
        truths = sorted(sim_truth(sim.root_url).values(), key=lambda t: t["received_s"])
    rows = {key: row["value"] for key, row in report["dialect"].items()}
    names = [r["name"] for r in report["requests"]]
    chat_text = profile.reasoning_tokens < 24  # reasoning longer than max_tokens: no content, no stop word
    assert names == [n for n in ORDER if chat_text or n != "chat_stop"]
    assert len(truths) == len(names) and all(r["error"] is None for r in report["requests"])
    truth = dict(zip(names, truths, strict=True))
    assert report["model"] == profile.models[0]

    assert rows["role_first_chunk"] == {"role_only": True, "content": '""', "ms_before_first_token": 0.0}
    assert rows["usage_final"] == {"with_include_usage": "final", "without_include_usage": None,
                                   "completion_tokens": truth["chat_usage"]["output_tokens"]}
    cont = truth["chat_continuous"]
    assert rows["usage_continuous"] == {"supported": True, "chunks_with_usage": len(cont["chunk_write_times_s"]),
                                        "output_chunks": len(cont["chunk_write_times_s"])}
    assert rows["reasoning_field"]["fields"] == (["reasoning_content"] if profile.reasoning_tokens else [])
    assert rows["done"] == {"streams": len(names), "with_done": len(names)}
    # the simulator's truth: tokens it produced over the chunks it wrote
    mean = cont["output_tokens"] / len(cont["chunk_write_times_s"])
    assert rows["tokens_per_chunk"]["mean"] == pytest.approx(mean)
    assert (mean == 1.0) == (profile.tokens_per_chunk == 1)
    n2 = truth["chat_n2"]
    assert n2["n"] == 2
    assert rows["n2"]["choices"] == 2 and rows["n2"]["usage_chunks"] == 1
    assert rows["n2"]["interleaved"] == (_switches(n2["chunk_choice_index"]) > 1) is True
    assert rows["n2"]["completion_tokens"] == n2["output_tokens"]
    if chat_text:
        assert rows["stop"]["honoured"] is True and truth["chat_stop"]["finish_reasons"] == ["stop"]
    else:
        assert rows["stop"] == {"honoured": None}
    assert rows["completions"]["supported"] is True and truth["completions"]["endpoint"] == "completions"
    assert rows["sse_keepalive"] == {"comment_lines": 0, "empty_data_events": 0}
    later = len(names) - 1
    assert rows["http_keepalive"] == {"later_requests": later, "reused": later, "reconnects": 0, "advertised": None}
    assert rows["server_timings"] == {"fields": []}
    assert rows["request_id"] == {"headers": ["x-request-id"], "matches_chunk_id": True}

    measures = {key: row["summary"] for key, row in report["measures"].items()}
    assert "role-only first chunk is not a token" in measures["ttft"] and "earlier" not in measures["ttft"]
    assert measures["output_tokens"].startswith("server usage")
    assert ("= per token" in measures["itl"]) == (profile.tokens_per_chunk == 1)


def test_probe_without_base_url_probes_the_builtin_simulator(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("built-in simulator, profile 'default' (no --base-url given): http://127.0.0.1:")
    for label in ("role-only first chunk", "usage, final", "usage, continuous", "reasoning field", "[DONE]",
                  "tokens per chunk", "SSE keep-alives", "HTTP keep-alive", "server timings",
                  "request id header", "what bench will measure", "TTFT", "ITL"):
        assert label in out


@pytest.mark.parametrize("model", [None, "m"])
def test_unreachable_server_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], model: str | None) -> None:
    with refused_port() as port:
        url = f"http://127.0.0.1:{port}/v1"
        code = main(["probe", "--base-url", url, *(["--model", model] if model else [])])
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"bench: error: cannot connect to {url}: connection refused\n"


def test_a_server_that_fails_every_request_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--model", "no-such-model"]) == 2  # the built-in simulator: a 404 each
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "answered no probe request with a stream" in err[0]
    assert "http_404: The model `no-such-model` does not exist." in err[0]


def test_bad_flags_are_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["probe", "--timeout", "0"]) == 2
    monkeypatch.delenv("BENCH_PROBE_NO_SUCH_KEY", raising=False)
    assert main(["probe", "--api-key-env", "BENCH_PROBE_NO_SUCH_KEY"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "bench: error: --timeout: 0 is not a positive number of seconds",
        "bench: error: --api-key-env: environment variable BENCH_PROBE_NO_SUCH_KEY is not set"]


# -- a server whose answer differs from the simulator's on every row ----------------------

WORDS = [" alpha", " bravo", " charlie", " delta", " echo", " foxtrot"]


class ScriptedServer:
    """llama.cpp-like in places, unlike the simulator everywhere: role chunk with content
    null, a `reasoning` delta, two words per chunk, `timings` but never usage or [DONE],
    `: ping` comments, `Connection: close`, n and stop ignored, no request id header, no
    /v1/completions (404)."""

    async def chat(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        resp.force_close()
        await resp.prepare(request)
        head = {"id": "x", "object": "chat.completion.chunk"}

        async def send(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
            event = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            await resp.write(b": ping\n\ndata: " + json.dumps(event).encode() + b"\n\n")
            await asyncio.sleep(0.002)

        await send({"role": "assistant", "content": None})
        await send({"reasoning": "hmm"})
        for i in range(0, len(WORDS), 2):
            await send({"content": "".join(WORDS[i:i + 2])})
        await send({}, "length", timings={"prompt_ms": 1.0, "predicted_ms": 2.0})
        await resp.write_eof()
        return resp

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "scripted", "object": "model"}]})


@pytest.fixture
async def scripted() -> AsyncIterator[str]:
    server = ScriptedServer()
    app = web.Application()
    app.router.add_get("/v1/models", server.models)
    app.router.add_post("/v1/chat/completions", server.chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # port 0: ask the socket
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


async def test_probe_rows_follow_a_different_dialect(scripted: str) -> None:
    report = await run_probe(scripted, None, None, "scripted", timeout_s=5.0)
    rows = {f.key: f for f in report.dialect}
    value = {key: f.value for key, f in rows.items()}
    assert report.model == "scripted"
    assert value["role_first_chunk"]["role_only"] is True and value["role_first_chunk"]["content"] == "null"
    assert value["role_first_chunk"]["ms_before_first_token"] > 0  # the reasoning chunk came in a later write
    assert value["usage_final"]["with_include_usage"] is None and "not sent" in rows["usage_final"].summary
    assert value["usage_continuous"]["supported"] is False
    assert value["reasoning_field"]["fields"] == ["reasoning"]
    assert value["done"] == {"streams": 5, "with_done": 0}  # every stream but the 404
    assert value["tokens_per_chunk"]["mean"] is None
    assert value["n2"]["choices"] == 1 and rows["n2"].summary.startswith("n ignored")
    assert value["stop"]["honoured"] is False and value["stop"]["stop"] in [w.strip() for w in WORDS]
    assert value["completions"]["supported"] is False and "http_404" in value["completions"]["error"]
    assert value["sse_keepalive"]["comment_lines"] == 5 * 6 and value["sse_keepalive"]["empty_data_events"] == 0
    assert value["http_keepalive"]["reused"] == 0 and value["http_keepalive"]["later_requests"] == 4
    assert value["http_keepalive"]["advertised"] == "Connection: close"
    assert value["server_timings"]["fields"] == ["prompt_ms", "predicted_ms"]
    assert value["request_id"]["headers"] == []
    measures = {f.key: f.summary for f in report.measures}
    assert "the role-only first chunk is not a token (it came" in measures["ttft"]
    assert measures["output_tokens"].startswith("ESTIMATES")
    assert "tokens per chunk unknown" in measures["itl"]
    assert "no [DONE] needed" in measures["end"]
    assert measures["connections"].startswith("a new one per request")


def test_keepalive_and_stop_word_helpers() -> None:
    body = b": ping\r\n\r\ndata: {}\n\ndata:\n\n:\rdata: \n\n"
    assert sse_keepalives(body) == ((": ping", ":"), 2)
    assert stop_word("The river runs to the sea, slowly.") == "runs"  # from the middle on
    assert stop_word("Rivers, rivers.") == "rivers"  # "Rivers" is where the answer starts
    assert stop_word("Go to it") is None  # no word of 3+ characters after the first third
