"""The official openai client (sync and async) against the simulator, every field."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import openai
import pytest

from bench.sim import SimHandle
from tests.sim.conftest import get_json, truth

MSGS = [{"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Tell me a story about a river"}]


def client(sim: SimHandle) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0, timeout=30)


def stream_chat(sim: SimHandle, **kw: Any) -> tuple[str, list[Any], dict[str, Any]]:
    raw = client(sim).chat.completions.with_raw_response.create(
        model="sim-small", messages=MSGS, stream=True,
        stream_options={"include_usage": True}, **kw)
    rid = raw.headers["x-request-id"]
    chunks = list(raw.parse())
    return rid, chunks, truth(sim, rid)


def test_models_and_health(sim_default: SimHandle) -> None:
    models = client(sim_default).models.list()
    assert [m.id for m in models.data] == ["sim-small"]
    assert client(sim_default).models.retrieve("sim-small").id == "sim-small"
    with pytest.raises(openai.NotFoundError):
        client(sim_default).models.retrieve("other")
    with urllib.request.urlopen(f"{sim_default.root_url}/health") as resp:
        assert resp.status == 200


def test_sync_stream_chat_layout_and_usage(sim_default: SimHandle) -> None:
    rid, chunks, t = stream_chat(
        sim_default, max_tokens=30, temperature=0.7, top_p=0.9, seed=5,
        presence_penalty=0.1, frequency_penalty=0.2, extra_body={"ignore_eos": True})
    first, *content, usage_chunk = chunks
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    assert all(c.id == rid for c in chunks)
    assert all(c.choices[0].finish_reason is None for c in content[:-1])
    assert content[-1].choices[0].finish_reason == "length"
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == len(content) == 30
    text = "".join(c.choices[0].delta.content for c in content)
    assert len(text.split()) == 30 and text.startswith(" ")
    # Prompt convention: words in all contents + 4 per message.
    assert usage_chunk.usage.prompt_tokens == 3 + 7 + 4 * 2
    assert t["output_tokens"] == 30 and len(t["chunk_write_times_s"]) == 30
    assert len(t["token_times_s"]) == 30 and t["finish_reason"] == "length"
    assert t["received_s"] <= t["admitted_s"] <= t["prefill_end_s"] <= t["chunk_write_times_s"][0]


def test_async_stream_completions(sim_default: SimHandle) -> None:
    async def go() -> tuple[list[Any], str]:
        ac = openai.AsyncOpenAI(base_url=sim_default.base_url, api_key="x", max_retries=0)
        async with ac:
            stream = await ac.completions.create(
                model="sim-small", prompt="one two three four five", max_tokens=12,
                stream=True, stream_options={"include_usage": True}, seed=3,
                extra_body={"ignore_eos": True})
            chunks = [c async for c in stream]
            again = await ac.completions.create(model="sim-small",
                                                prompt="one two three four five",
                                                max_tokens=12, seed=3,
                                                extra_body={"ignore_eos": True})
        return chunks, again.choices[0].text

    chunks, unary_text = asyncio.run(go())
    content, usage = chunks[:-1], chunks[-1]
    assert all(c.object == "text_completion" for c in chunks)
    assert usage.usage.prompt_tokens == 5 and usage.usage.completion_tokens == 12
    assert len(content) == 12 and content[-1].choices[0].finish_reason == "length"
    streamed = "".join(c.choices[0].text for c in content)
    assert streamed == unary_text  # same seed -> same text, streamed or not


def test_determinism_with_seed(sim_default: SimHandle) -> None:
    c = client(sim_default)

    def gen(seed: int | None, **kw: Any) -> str:
        r = c.chat.completions.create(model="sim-small", messages=MSGS, max_tokens=20,
                                      seed=seed, extra_body={"ignore_eos": True}, **kw)
        return r.choices[0].message.content or ""

    assert gen(11) == gen(11) != gen(12)
    assert gen(None) != gen(None)  # no seed: a per-request counter
    assert gen(None, temperature=0) == gen(None, temperature=0)  # greedy: prompt decides


def test_natural_eos_and_max_tokens(sim_zero: SimHandle) -> None:
    c = client(sim_zero)
    reasons, lengths = [], []
    for seed in range(12):
        r = c.completions.create(model="sim-small", prompt="hi", max_tokens=400, seed=seed)
        reasons.append(r.choices[0].finish_reason)
        lengths.append(r.usage.completion_tokens)
        assert len(r.choices[0].text.split()) == r.usage.completion_tokens
    assert "stop" in reasons and len(set(lengths)) > 3  # EOS lengths are drawn
    r = c.completions.create(model="sim-small", prompt="hi", max_tokens=400, seed=0,
                             extra_body={"min_tokens": 300})
    assert r.usage.completion_tokens >= 300
    r = c.chat.completions.create(model="sim-small", messages=MSGS, max_completion_tokens=7,
                                  max_tokens=50, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 7 and r.choices[0].finish_reason == "length"


def test_stop_strings(sim_default: SimHandle) -> None:
    _rid, chunks, _t = stream_chat(sim_default, max_tokens=200, stop=["."], seed=2,
                                 extra_body={"ignore_eos": True})
    content = [c for c in chunks[1:] if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in content)
    assert "." not in text and content[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage.completion_tokens == len(content) < 200
    unary = client(sim_default).completions.create(
        model="sim-small", prompt="x", max_tokens=200, stop=["."], seed=2,
        extra_body={"ignore_eos": True})
    assert "." not in unary.choices[0].text and unary.choices[0].finish_reason == "stop"


def test_n2_interleaved(sim_default: SimHandle) -> None:
    _rid, chunks, t = stream_chat(sim_default, max_tokens=10, n=2, seed=1,
                                 extra_body={"ignore_eos": True})
    indices = [c.choices[0].index for c in chunks if c.choices]
    assert indices[:4] == [0, 0, 1, 1]  # role + first token per choice, interleaved
    texts = {i: "".join(c.choices[0].delta.content or "" for c in chunks
                        if c.choices and c.choices[0].index == i) for i in (0, 1)}
    assert texts[0] != texts[1] and all(len(x.split()) == 10 for x in texts.values())
    assert chunks[-1].usage.completion_tokens == 20 and t["n"] == 2
    assert sorted(t["chunk_choice_index"]) == [0] * 10 + [1] * 10
    r = client(sim_default).completions.create(model="sim-small", prompt="a", n=3,
                                               max_tokens=5, extra_body={"ignore_eos": True})
    assert [c.index for c in r.choices] == [0, 1, 2] and r.usage.completion_tokens == 15


def test_logprobs(sim_default: SimHandle) -> None:
    _rid, chunks, _t = stream_chat(sim_default, max_tokens=6, logprobs=True, top_logprobs=3,
                                 extra_body={"ignore_eos": True})
    for c in chunks[1:-1]:
        (entry,) = c.choices[0].logprobs.content
        assert entry.token == c.choices[0].delta.content and entry.logprob <= 0
        assert len(entry.top_logprobs) == 3 and entry.top_logprobs[0].token == entry.token
        assert entry.bytes == list(entry.token.encode())
        lps = [x.logprob for x in entry.top_logprobs]
        assert lps == sorted(lps, reverse=True)
    r = client(sim_default).completions.create(model="sim-small", prompt="a b", max_tokens=5,
                                               logprobs=2, extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    assert "".join(lp.tokens) == r.choices[0].text and len(lp.token_logprobs) == 5
    assert lp.text_offset == [sum(len(x) for x in lp.tokens[:i]) for i in range(5)]
    assert all(len(d) == 2 for d in lp.top_logprobs)


def test_continuous_usage_stats(sim_default: SimHandle) -> None:
    stream = client(sim_default).chat.completions.create(
        model="sim-small", messages=MSGS, max_tokens=5, stream=True,
        stream_options={"include_usage": True, "continuous_usage_stats": True},
        extra_body={"ignore_eos": True})
    chunks = list(stream)
    assert [c.usage.completion_tokens for c in chunks] == [0, 1, 2, 3, 4, 5, 5]


def test_non_streamed_chat(sim_default: SimHandle) -> None:
    raw = client(sim_default).chat.completions.with_raw_response.create(
        model="sim-small", messages=MSGS, max_tokens=9, extra_body={"ignore_eos": True})
    r = raw.parse()
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert len(r.choices[0].message.content.split()) == r.usage.completion_tokens == 9
    t = truth(sim_default, raw.headers["x-request-id"])
    assert t["stream"] is False and len(t["token_times_s"]) == 9


def test_errors(sim_default: SimHandle) -> None:
    c = client(sim_default)
    with pytest.raises(openai.NotFoundError) as exc:
        c.chat.completions.create(model="gpt-nope", messages=MSGS)
    body = exc.value.body
    assert set(body) >= {"message", "type", "param", "code"} and "gpt-nope" in body["message"]
    bad_calls = [
        dict(messages=[]),
        dict(messages=MSGS, max_tokens=0),
        dict(messages=MSGS, temperature=3),
        dict(messages=MSGS, n=0),
        dict(messages=MSGS, max_tokens=10**6),
        dict(messages=MSGS, top_logprobs=2),
        dict(messages=MSGS, stream_options={"include_usage": True}),
        dict(messages=[{"content": "no role"}]),
    ]
    for kw in bad_calls:
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model="sim-small", **kw)
    req = urllib.request.Request(f"{sim_default.base_url}/completions", data=b"{not json",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(req)
    assert http.value.code == 400
    err = json.loads(http.value.read())["error"]
    assert err["code"] == 400 and err["type"] == "BadRequestError"


def test_metrics(sim_default: SimHandle) -> None:
    client(sim_default).completions.create(model="sim-small", prompt="a b c", max_tokens=4)
    with urllib.request.urlopen(f"{sim_default.root_url}/metrics") as resp:
        text = resp.read().decode()
    values = {line.split("{")[0].split(" ")[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if line and not line.startswith("#")}
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting",
                 "vllm:kv_cache_usage_perc"):
        assert name in values
    assert values["vllm:prompt_tokens_total"] >= 3
    assert values["vllm:generation_tokens_total"] >= 4
    assert get_json(f"{sim_default.root_url}/sim/profile")["models"] == ["sim-small"]


def test_reasoning_and_multi_token_chunks() -> None:
    from bench.sim import start_sim

    profile = {"models": ["r1"], "decode_ms_base": 1, "decode_ms_per_seq": 0,
               "prefill_ms_per_token": 0, "tokens_per_chunk": 3, "reasoning_tokens": 6}
    with start_sim(profile) as sim:
        chunks = list(client(sim).chat.completions.create(
            model="r1", messages=MSGS, max_tokens=16, stream=True,
            stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
        body = [c for c in chunks[1:] if c.choices]
        deltas = [c.choices[0].delta.model_dump() for c in body]
        reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
        content = "".join(d.get("content") or "" for d in deltas)
        assert len(reasoning.split()) == 6 and len(content.split()) == 10
        # First chunk: 1 token (prefill step), then 3 per decode step.
        sizes = [len(((d.get("reasoning_content") or "") + (d.get("content") or "")).split())
                 for d in deltas]
        assert sizes == [1, 3, 3, 3, 3, 3]
        assert chunks[-1].usage.completion_tokens == 16
