"""Paired sampling variants: one shared schedule, the same prompts for every variant."""

from __future__ import annotations

import pandas as pd

from bench.cli import parse_variant_flag
from bench.sim import start_sim
from benchtest import run_in_process


def _variant_run(scenario_dir, variants, out="run"):
    with start_sim(profile="default", seed=8) as sim:
        return run_in_process(scenario_dir, {
            "seed": 5, "target": {"base_url": sim.base_url},
            "requests": {"synthetic": {"prompt_tokens": {"dist": "uniform", "min": 20, "max": 200}}},
            "sampling": {"temperature": 0.5, "extra_body": {"ignore_eos": True}},
            "variants": variants,
            "load": {"concurrency": 8, "max_requests": 60},
        }, out=out)


def test_each_variant_gets_the_same_prompts_in_shuffled_blocks(scenario_dir):
    result = _variant_run(scenario_dir, {"short": {"max_tokens": 16}, "long": {"max_tokens": 48}})
    req = result.run.requests
    assert sorted(req["variant"].unique()) == ["long", "short"]
    assert (req["variant"].value_counts() == 30).all()
    by_block = req.groupby("block")
    assert (by_block.size() == 2).all()
    assert (by_block["prompt_index"].nunique() == 1).all()  # both arms of a block share the prompt
    prompts = {v: sorted(g["prompt_index"]) for v, g in req.groupby("variant")}
    assert prompts["short"] == prompts["long"]
    # the order within blocks is randomised, not always the same arm first
    first = req.sort_values("request_id").groupby("block")["variant"].first()
    assert 0 < (first == "short").sum() < len(first)
    tokens = req.groupby("variant")["output_tokens"].unique()
    assert list(tokens["short"]) == [16] and list(tokens["long"]) == [48]
    summary = result.run.summary
    assert set(summary["variants"]) == {"short", "long"}
    assert summary["variants"]["long"]["e2e_ms"]["p50"] > 2 * summary["variants"]["short"]["e2e_ms"]["p50"]


def test_variant_flag_parsing():
    assert parse_variant_flag("a=max_tokens:64,temperature:0.5,stop:END") == (
        "a", {"max_tokens": 64, "temperature": 0.5, "stop": "END"})
    assert parse_variant_flag("b=extra_body.ignore_eos:true") == ("b", {"extra_body": {"ignore_eos": True}})
