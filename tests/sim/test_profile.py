"""Profiles, the predict() model and fault-spec parsing (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.sim import ProfileError, load_profile, max_request_rate, predict
from bench.sim.faults import FaultPlan, parse_fault
from bench.sim.profile import builtin_profiles
from bench.sim.text import build_corpus, draw_output_len


def test_builtins_load() -> None:
    names = builtin_profiles()
    assert {"default", "zero", "slow-70b"} <= set(names)
    default = load_profile("default")
    assert default.models == ["sim-small"] and default.max_num_seqs == 64
    assert load_profile("slow-70b").models == ["sim-70b"]
    assert load_profile("zero").zero_latency


def test_bad_profile_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [x]\nmax_num_seqs: 0\nbogus_knob: 3\n")
    with pytest.raises(ProfileError) as exc:
        load_profile(bad)
    msg = str(exc.value)
    assert str(bad) in msg and "max_num_seqs" in msg and "bogus_knob" in msg
    with pytest.raises(ProfileError, match=r"output_len\.dist"):
        load_profile({"output_len": {"dist": "zipf"}})
    with pytest.raises(ProfileError, match="unknown profile"):
        load_profile("no-such-profile")
    with pytest.raises(ProfileError, match="nonsense"):
        load_profile({"faults": ["nonsense:p=1"]})


def test_fault_specs() -> None:
    spec = parse_fault("drop:every=5,after=3")
    assert (spec.kind, spec.every, spec.after) == ("drop", 5, 3)
    with pytest.raises(ValueError, match="either p= or every="):
        parse_fault("http_500:p=0.5,every=2")
    plan = FaultPlan([parse_fault("http_500:p=0.3")], seed=1)
    hits = [plan.pick(i) is not None for i in range(1, 2001)]
    assert 0.25 < sum(hits) / len(hits) < 0.35
    assert hits == [FaultPlan(plan.specs and list(plan.specs), 1).pick(i) is not None
                    for i in range(1, 2001)]
    every = FaultPlan([parse_fault("stall:every=4")], seed=0)
    assert [i for i in range(1, 13) if every.pick(i)] == [4, 8, 12]


def test_predict_directions() -> None:
    p = load_profile("default")
    one, eight, many = (predict(p, c, 100, 128) for c in (1, 8, 64))
    assert one["itl_ms"] == pytest.approx(p.decode_ms_base + p.decode_ms_per_seq, rel=0.05)
    assert one["itl_ms"] < eight["itl_ms"] < many["itl_ms"]
    assert one["tokens_per_s"] < eight["tokens_per_s"] < many["tokens_per_s"]
    # Beyond max_num_seqs the batch is full: throughput stays, waiting lands in TTFT.
    over = predict(p, 256, 100, 128)
    assert over["batch"] == p.max_num_seqs
    assert over["tokens_per_s"] == pytest.approx(many["tokens_per_s"], rel=0.05)
    assert over["ttft_ms"] > 3 * many["ttft_ms"]


def test_output_len_distribution() -> None:
    p = load_profile("default")
    lens = [draw_output_len(p.output_len, 0, key, 0) for key in range(4000)]
    mean = sum(lens) / len(lens)
    assert abs(mean - p.output_len.mean) / p.output_len.mean < 0.08
    assert min(lens) >= p.output_len.min and max(lens) <= p.output_len.max


def test_corpus_is_words() -> None:
    c = build_corpus(3)
    text = c.text(0, 50)
    assert text.startswith(" ") and len(text.split()) == 50
    assert all(w.strip(".").isalpha() for w in text.split())
    assert build_corpus(3).text(10, 20) == c.text(10, 20) != build_corpus(4).text(10, 20)


def test_max_request_rate() -> None:
    p = load_profile("default")
    rate = max_request_rate(p, 100, 128)
    assert rate == pytest.approx(predict(p, 1000, 100, 128)["requests_per_s"], rel=0.01)
    assert rate > predict(p, 8, 100, 128)["requests_per_s"]
    assert max_request_rate(load_profile("slow-70b"), 100, 128) < rate
