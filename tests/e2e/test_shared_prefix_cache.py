"""Synthetic `shared_prefix` seen from the server: the simulator's prefix cache (16-token
blocks, vLLM-style) finds each group's prefix again, to the token."""

from __future__ import annotations

from benchtest import run_in_process, sim_truth

from bench.sim import start_sim

# A 57-token system prompt is 61 chat tokens (4 template tokens around a message), plus the
# 3 that open the user message: 64 tokens, exactly 4 blocks, shared by a group's requests.
PREFIX_TOKENS = 57


def test_the_server_caches_each_group_s_prefix_exactly(tmp_path):
    with start_sim(profile="default", seed=2) as sim:
        result = run_in_process(tmp_path, {
            "name": "prefix", "seed": 3, "target": {"base_url": sim.base_url},
            "requests": {"synthetic": {"prompt_tokens": 24, "output_tokens": 4},
                         "shared_prefix": {"tokens": PREFIX_TOKENS, "groups": 2}},
            "load": {"concurrency": 1, "max_requests": 8},
        })
        truth = sim_truth(sim.root_url)
    requests = result.run.requests.sort_values("request_id")
    assert (requests["status"] == "ok").all() and len(requests) == 8
    cached = [truth[rid]["cached_tokens"] for rid in requests["server_request_id"]]
    # one at a time: the first of each group finds nothing, every later one its 64 tokens
    assert cached == [0, 0, 64, 64, 64, 64, 64, 64]
    # exact lengths: the 24-token prompt (its message's 4 template tokens included) after the
    # prefix's system message of 57 + 4
    assert [truth[rid]["prompt_tokens"] for rid in requests["server_request_id"]] == [24 + PREFIX_TOKENS + 4] * 8
