"""Token truth against a real llama.cpp server bench launches (tier `-m real_server`): after
the run, each answer's text is counted with llama.cpp's own POST /tokenize (its
{"content"} -> {"tokens"} shape, found by the probe) and compared with its usage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_llama_smoke import llama_command, llama_paths

from bench.commands.run import run_scenario
from bench.commands.rundir import RunOptions
from bench.metrics.catalogue import TOKEN_COUNT_DIFF, counted
from bench.scenario.loader import load_scenario
from bench.target.launch import free_port

pytestmark = pytest.mark.real_server

PROMPTS = ["The capital of France is", "Once upon a time, there was a", "Water boils at",
           "The three primary colors are"]


def test_llama_usage_against_its_own_tokenize(tmp_path: Path) -> None:
    port = free_port()
    server, model = llama_paths()
    data = {
        "name": "tokens", "seed": 3, "tokens": {"server_tokenize": True},
        "target": {"base_url": f"http://127.0.0.1:{port}/v1", "model": "gemma3-270m",
                   "launch": {"command": llama_command(server, model, port), "ready_timeout_s": 120},
                   "metrics": {"enabled": False}},
        "requests": {"inline": PROMPTS, "order": "cycle"},
        "sampling": {"max_tokens": 24, "temperature": 0.8, "extra_body": {"seed": 5}},
        "load": {"concurrency": 2, "max_requests": 8},
    }
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(data))
    run = run_scenario(load_scenario(path), RunOptions(scenario_path=path, out_dir=tmp_path / "run",
                                                       show_progress=False)).run
    ok = counted(run.requests)
    assert len(ok) == 8, run.requests["error_message"].tolist()
    assert any("POST /tokenize (llama.cpp shape, 8 answers)" in note for note in run.manifest.notes), run.manifest.notes
    assert (ok["token_source"] == "usage").all() and (ok["token_check_source"] == "server_tokenize").all()
    server_counts = ok["output_tokens_server_tokenize"].astype(int)
    usage = ok["usage_completion_tokens"].astype(int)
    print("usage:", usage.tolist(), "tokenize:", server_counts.tolist(), "finish:", ok["finish_reason"].tolist())
    assert (server_counts > 0).all()
    # re-tokenising the decoded text gives back the generated count, give or take the end-of-
    # generation token a stopped answer generated without text
    assert (ok[TOKEN_COUNT_DIFF.key].abs() <= 1).all()
    cut = ok["finish_reason"] == "length"  # no end-of-generation token: the counts agree exactly
    assert cut.any() and (ok.loc[cut, TOKEN_COUNT_DIFF.key] == 0).all()
    assert ok[TOKEN_COUNT_DIFF.key].tolist() == (usage - server_counts).astype(float).tolist()
