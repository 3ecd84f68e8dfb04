"""The simulator's served names (models, adapters, per-model profiles) and tool-call answers."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from bench.sim import ProfileError, load_profile, start_sim
from bench.sim.profile import model_profile
from bench.target.promscrape import parse_prometheus_text

TOOLS = [{"type": "function", "function": {"name": "alpha"}}, {"type": "function", "function": {"name": "beta"}}]
PROFILE = {"models": ["base", "other"], "adapters": {"base-lora": "base"},
           "model_profiles": {"other": {"decode_ms_base": 3.0}, "base-lora": {"tool_call_probability": 1.0}},
           "decode_ms_base": 1.0, "decode_ms_per_seq": 0.0, "prefill_ms_per_token": 0.0,
           "output_len": {"dist": "fixed", "mean": 5}}


def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def _chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 20, **extra}


@pytest.mark.parametrize(("profile", "message"), [
    ({"models": ["a"], "adapters": {"l": "zz"}}, "base model 'zz' is not one of models"),
    ({"models": ["a"], "adapters": {"a": "a"}}, "'a' is also a model"),
    ({"models": ["a"], "model_profiles": {"b": {}}}, "'b' is neither a model nor an adapter"),
    ({"models": ["a"], "model_profiles": {"a": {"faults": []}}}, "faults cannot differ by model"),
    ({"models": ["a"], "adapters": {"l": "a"}, "model_profiles": {"l": {"decode_ms_base": 1}}}, "base model's engine"),
    ({"models": ["a"], "model_profiles": {"a": {"decode_ms_base": -1}}}, "model_profiles.a.decode_ms_base"),
])
def test_bad_model_tables_are_refused_naming_the_field(profile, message):
    with pytest.raises(ProfileError, match=r"model_profiles|adapters") as exc:
        load_profile(profile)
    assert message in str(exc.value)


def test_model_profile_merges_base_then_own_overrides():
    profile = load_profile({**PROFILE, "model_profiles": {"base": {"decode_ms_base": 2.0},
                                                          "base-lora": {"tool_call_probability": 1.0}}})
    lora = model_profile(profile, "base-lora")
    assert lora.decode_ms_base == 2.0 and lora.tool_call_probability == 1.0 and lora.models == ["base-lora"]
    assert model_profile(profile, "other").decode_ms_base == 1.0


def test_models_adapters_404_and_tool_answers():
    with start_sim(profile=PROFILE, seed=4) as sim:
        with urllib.request.urlopen(f"{sim.base_url}/models", timeout=10) as resp:
            cards = {c["id"]: c["parent"] for c in json.load(resp)["data"]}
        assert cards == {"base": None, "other": None, "base-lora": "base"}
        with urllib.request.urlopen(f"{sim.root_url}/metrics", timeout=10) as resp:
            samples = parse_prometheus_text(resp.read().decode())
        running = sorted(dict(s.labels)["model_name"] for s in samples if s.name == "vllm:num_requests_running")
        assert running == ["base", "other"]  # one series per engine (the adapter runs in base's)
        status, body = _post(f"{sim.base_url}/chat/completions", _chat("missing"))
        assert status == 404 and body["error"]["message"] == "The model `missing` does not exist."
        # tools on a model whose probability is 0 (auto): text; "required": a call of one of them
        status, body = _post(f"{sim.base_url}/chat/completions", _chat("base", tools=TOOLS))
        assert status == 200 and body["choices"][0]["finish_reason"] == "stop"
        status, body = _post(f"{sim.base_url}/chat/completions", _chat("base", tools=TOOLS, tool_choice="required"))
        message = body["choices"][0]["message"]
        assert body["choices"][0]["finish_reason"] == "tool_calls" and message["content"] is None
        (call,) = message["tool_calls"]
        assert call["function"]["name"] in ("alpha", "beta") and json.loads(call["function"]["arguments"])["text"]
        # the adapter's own probability 1; "none" and a named tool win over it
        status, body = _post(f"{sim.base_url}/chat/completions", _chat("base-lora", tools=TOOLS))
        assert body["choices"][0]["finish_reason"] == "tool_calls"
        status, body = _post(f"{sim.base_url}/chat/completions", _chat("base-lora", tools=TOOLS, tool_choice="none"))
        assert body["choices"][0]["finish_reason"] == "stop"
        named = {"type": "function", "function": {"name": "beta"}}
        status, body = _post(f"{sim.base_url}/chat/completions", _chat("base", tools=TOOLS, tool_choice=named))
        assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "beta"
        status, body = _post(f"{sim.base_url}/chat/completions",
                             _chat("base", tools=TOOLS, tool_choice={"type": "function", "function": {"name": "gamma"}}))
        assert status == 400 and body["error"]["param"] == "tool_choice"
