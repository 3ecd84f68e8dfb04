"""The prompt-token probe before a synthetic run (issue 14, condition 9), against
real loopback servers: transient failures are tried again (bounded, short pauses); a lasting
failure names the server's status and message, an unreachable server gets its own line;
both exit 2 with one line and no run directory.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from benchtest import run_in_process, write_scenario
from faultserver import (
    PROMPT_TOKENS_OVERHEAD,
    PROMPT_TOKENS_PER_WORD,
    FaultServer,
    RecordingServer,
    prompt_text,
    refused_port,
)

from bench.commands.cli import main
from bench.scenario.prompts import sample_lengths
from bench.scenario.schema import Uniform

PROMPT = {"dist": "uniform", "min": 20, "max": 120}


def synthetic_scenario(server_url: str, requests: int, basis: str = "server", **load) -> dict:
    return {"seed": 3, "target": {"base_url": server_url, "model": "m"},
            "requests": {"synthetic": {"prompt_tokens": PROMPT, "output_tokens": 4, "prompt_basis": basis}},
            "load": {"concurrency": 32, "max_requests": requests, **load}}


@pytest.mark.parametrize("status", [503, 500])
def test_a_server_failing_its_first_two_probes_is_calibrated_all_the_same(scenario_dir, status):
    with RecordingServer(fail_first=2, fail_status=status, tokens=2) as server:
        result = run_in_process(scenario_dir, synthetic_scenario(server.base_url, 20))
        bodies = list(server.bodies)
    assert result.ended == "completed"
    assert [prompt_text(b).split()[0] for b in bodies[:4]] == ["calibration"] * 4  # 2 failed, then 64 and 512 words
    assert [len(prompt_text(b).split()) for b in bodies[2:4]] == [64, 512]
    model = result.run.manifest.client.prompt_tokens_model
    assert model is not None and model.model_dump() == {"overhead": PROMPT_TOKENS_OVERHEAD,
                                                       "per_word": PROMPT_TOKENS_PER_WORD}
    req = result.run.requests
    assert len(req) == 20 and (req["status"] == "ok").all()
    wanted = sample_lengths(Uniform(**PROMPT), 1024, np.random.default_rng([3, 0x5EED]))[req["prompt_index"]]
    assert np.abs(req["prompt_tokens"].to_numpy(dtype=float) - wanted).max() <= PROMPT_TOKENS_PER_WORD / 2


def test_the_raw_basis_sizes_text_tokens_and_the_server_adds_its_template(scenario_dir):
    """prompt_basis raw (the default): prompts carry the requested tokens of text, as vLLM's and
    GuideLLM's random datasets do; the server's count is that plus its template overhead."""
    with RecordingServer(tokens=2) as server:
        result = run_in_process(scenario_dir, synthetic_scenario(server.base_url, 20, basis="raw"))
    req = result.run.requests
    wanted = sample_lengths(Uniform(**PROMPT), 1024, np.random.default_rng([3, 0x5EED]))[req["prompt_index"]]
    extra = req["prompt_tokens"].to_numpy(dtype=float) - wanted
    assert np.abs(extra - PROMPT_TOKENS_OVERHEAD).max() <= PROMPT_TOKENS_PER_WORD / 2
    notes = " ".join(result.run.manifest.notes)
    assert "synthetic prompt_tokens: text tokens" in notes
    assert f"the server adds about {PROMPT_TOKENS_OVERHEAD:.0f} tokens of template" in notes


def test_calibration_against_a_server_failing_every_probe_is_one_line(tmp_path, capsys):
    path = write_scenario(tmp_path, synthetic_scenario("http://unused", 1))
    with FaultServer() as server:
        started = time.perf_counter()
        code = main(["run", str(path), "--base-url", server.base_url, "--model", "http_500_plain",
                     "--out", str(tmp_path / "run"), "--quiet"])
        elapsed = time.perf_counter() - started
        tries = len(server.seen)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"bench: error: the server at {server.base_url} failed the prompt-token calibration "
                             "probe"), err[0]
    assert "4 times in a row: HTTP 500: " in err[0] and "Internal Server Error: worker died" in err[0]
    assert tries == 4 and elapsed < 5.0  # bounded: four tries, 1.75 s of pauses
    assert not (tmp_path / "run").exists()


def test_a_refused_request_is_not_tried_again(tmp_path, capsys):
    path = write_scenario(tmp_path, synthetic_scenario("http://unused", 1))
    with FaultServer() as server:
        code = main(["run", str(path), "--base-url", server.base_url, "--model", "http_400_json", "--quiet"])
        tries = len(server.seen)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and tries == 1
    assert err[0].endswith("probe (requests.synthetic.calibrate; false skips it): HTTP 400: "
                           "max_tokens is too large: 999999"), err[0]


@pytest.mark.parametrize("model", [["--model", "m"], []], ids=["calibration-probe", "model-list"])
def test_an_unreachable_server_gets_its_own_line(tmp_path, capsys, model):
    path = write_scenario(tmp_path, synthetic_scenario("http://unused", 1))
    with refused_port() as port:
        url = f"http://127.0.0.1:{port}/v1"
        code = main(["run", str(path), "--base-url", url, *model, "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"bench: error: cannot connect to {url}: connection refused\n"
    assert not (tmp_path / "run").exists()
