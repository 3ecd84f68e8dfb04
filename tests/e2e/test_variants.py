"""Paired sampling variants: one shared schedule, the same prompts for every variant."""

from __future__ import annotations

from benchtest import run_in_process

from bench.commands.parser import parse_variant_flag
from bench.sim import start_sim


def _variant_run(scenario_dir, variants, out="run", max_requests=60):
    with start_sim(profile="default", seed=8) as sim:
        return run_in_process(scenario_dir, {
            "seed": 5, "target": {"base_url": sim.base_url},
            "requests": {"synthetic": {"prompt_tokens": {"dist": "uniform", "min": 20, "max": 200}}},
            "sampling": {"temperature": 0.5, "extra_body": {"ignore_eos": True}},
            "variants": variants,
            "load": {"concurrency": 8, "max_requests": max_requests},
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
    summary = result.run.summary.to_json()
    assert set(summary["variants"]) == {"short", "long"}
    assert summary["variants"]["long"]["e2e_ms"]["p50"] > 2 * summary["variants"]["short"]["e2e_ms"]["p50"]


def test_variant_flag_parsing():
    assert parse_variant_flag("a=max_tokens:64,temperature:0.5,stop:END") == (
        "a", {"max_tokens": 64, "temperature": 0.5, "stop": "END"})
    assert parse_variant_flag("b=extra_body.ignore_eos:true") == ("b", {"extra_body": {"ignore_eos": True}})


def _paired(result, metric):
    comp = next(iter(result.run.summary.to_json()["paired"]["comparisons"].values()))
    return comp, comp["metrics"][metric]["mean"]


def test_max_tokens_variants_differ_in_e2e_not_tpot(scenario_dir):
    result = _variant_run(scenario_dir, {"short": {"max_tokens": 64}, "long": {"max_tokens": 256}})
    comp, e2e = _paired(result, "e2e_ms")
    _, tpot = _paired(result, "tpot_ms")
    _, length = _paired(result, "output_tokens")
    assert result.run.summary.to_json()["paired"]["baseline"] == "long"
    assert e2e["significant"] and e2e["diff"] < 0  # short is faster end to end ...
    assert not tpot["significant"]  # ... but not per token
    assert length["significant"] and length["diff"] == -192
    assert "outputs are shorter" in comp["explanation"]


def test_identical_variants_show_nothing_significant(scenario_dir):
    result = _variant_run(scenario_dir, {"a": {"max_tokens": 48}, "b": {"max_tokens": 48}}, max_requests=120)
    comp = next(iter(result.run.summary.to_json()["paired"]["comparisons"].values()))
    for metric, by_stat in comp["metrics"].items():
        for stat, ci in by_stat.items():
            assert not ci["significant"], (metric, stat, ci)
    assert comp["explanation"] is None


def test_reports_show_one_row_and_one_plot_series_per_variant(scenario_dir):
    from bench.report.document import write_reports
    from bench.report.figures import run_figures

    result = _variant_run(scenario_dir, {"short": {"max_tokens": 16}, "long": {"max_tokens": 48}})
    figs = run_figures(result.run)
    for stem in ("variant_cdf", "variant_ladder"):
        for ax in figs[stem].axes:
            labels = [line.get_label().split(" (")[0] for line in ax.get_lines()
                      if not line.get_label().startswith("_")]
            assert sorted(set(labels) & {"short", "long"}) == ["long", "short"], (stem, labels)
    write_reports(result.run)
    report = (result.run.path / "report.md").read_text()
    assert "| short |" in report and "| long |" in report
    assert "variant_cdf" in report
