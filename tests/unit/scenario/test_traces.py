from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.errors import BenchInputError
from bench.scenario.schema import Load
from bench.scenario.traces import read_trace, trace_offsets, trace_period, trace_prompts, trace_rate
from bench.workload.schedule import build_schedule

SAMPLES = Path(__file__).resolve().parents[3] / "scenarios" / "traces"
AZURE = SAMPLES / "azure_sample.csv"
MOONCAKE = SAMPLES / "mooncake_sample.jsonl"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _cv(offsets: np.ndarray) -> float:
    gaps = np.diff(offsets)
    return float(gaps.std() / gaps.mean())


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- reading -------------------------------------------------------------------------------


def test_azure_csv_parses_seven_digit_timestamps(tmp_path):
    path = _write(tmp_path, "a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                  "2023-11-16 18:15:46.6805900,374,44\n"
                  "2023-11-16 18:15:50.9951690,396,109\n"
                  "\n"
                  "2023-11-16 18:15:51,879,55\n")
    frame = read_trace(path, "azure")
    assert list(frame.columns) == ["timestamp_s", "input_tokens", "output_tokens", "hash_ids"]
    np.testing.assert_allclose(frame["timestamp_s"], [0.0, 4.314579, 4.31941], atol=1e-6)
    assert frame["input_tokens"].tolist() == [374, 396, 879]
    assert frame["output_tokens"].tolist() == [44, 109, 55]
    assert frame["hash_ids"].tolist() == [None, None, None]
    assert frame["input_tokens"].dtype == np.int64 and frame["timestamp_s"].dtype == np.float64


def test_mooncake_jsonl_parses_ms_and_hash_ids(tmp_path):
    path = _write(tmp_path, "m.jsonl",
                  '{"timestamp": 1000, "input_length": 600, "output_length": 20, "hash_ids": [0, 1]}\n'
                  '{"timestamp": 1500, "input_length": 300, "output_length": 7}\n'
                  '{"timestamp": 4250.5, "input_length": 1100, "output_length": 9, "hash_ids": [0, 1, 2]}\n')
    frame = read_trace(path)
    np.testing.assert_allclose(frame["timestamp_s"], [0.0, 0.5, 3.2505])
    assert frame["input_tokens"].tolist() == [600, 300, 1100]
    assert frame["hash_ids"].tolist() == [[0, 1], None, [0, 1, 2]]


def test_auto_detects_by_content_when_the_suffix_says_nothing(tmp_path):
    jsonl = _write(tmp_path, "trace.txt", '{"timestamp": 0, "input_length": 1, "output_length": 1}\n')
    csv = _write(tmp_path, "trace.dat", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,1,1\n")
    assert len(read_trace(jsonl)) == 1 and len(read_trace(csv)) == 1


@pytest.mark.parametrize("path,fmt", [(AZURE, "auto"), (AZURE, "azure"), (MOONCAKE, "auto"), (MOONCAKE, "mooncake")])
def test_shipped_samples_load_and_are_bursty(path, fmt):
    frame = read_trace(path, fmt)
    assert 200 <= len(frame) <= 1000
    assert frame["timestamp_s"].iloc[0] == 0.0
    assert np.all(np.diff(frame["timestamp_s"]) >= 0)
    assert (frame["input_tokens"] > 0).all() and (frame["output_tokens"] > 0).all()
    assert _cv(frame["timestamp_s"].to_numpy()) > 1.2  # clustered, not Poisson


def test_mooncake_sample_shares_prefix_blocks():
    frame = read_trace(MOONCAKE)
    firsts = [ids[0] for ids in frame["hash_ids"]]
    assert len(set(firsts)) < len(firsts) / 10  # a few shared system-prompt blocks
    for ids, tokens in zip(frame["hash_ids"], frame["input_tokens"], strict=True):
        assert (len(ids) - 1) * 512 < tokens <= len(ids) * 512


AZ_HEAD = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
AZ_ROW = "2023-11-16 18:15:46.6805900,10,5\n"
MC_ROW = '{"timestamp": 0, "input_length": 10, "output_length": 5}\n'


@pytest.mark.parametrize("name,text,fmt,expected", [
    ("a.csv", "", "auto", "trace is empty"),
    ("a.csv", AZ_HEAD, "auto", "trace is empty"),
    ("a.csv", "TIMESTAMP,ContextTokens\n2023-11-16 18:15:46,10\n", "auto", "line 1: missing column GeneratedTokens"),
    ("a.csv", AZ_HEAD + AZ_ROW + "yesterday,10,5\n", "auto", "line 3: TIMESTAMP 'yesterday' is not a date-time"),
    ("a.csv", AZ_HEAD + AZ_ROW + AZ_ROW + "2023-11-16 18:15:47,ten,5\n", "auto",
     "line 4: ContextTokens 'ten' is not a non-negative integer"),
    ("a.csv", AZ_HEAD + AZ_ROW + "2023-11-16 18:15:47,10,-3\n", "auto",
     "line 3: GeneratedTokens '-3' is not a non-negative integer"),
    ("a.csv", AZ_HEAD + AZ_ROW + "2023-11-16 18:15:45,10,5\n", "auto", "line 3: timestamp goes back in time"),
    ("a.csv", AZ_HEAD + AZ_ROW + "\n\n2023-11-16 18:15:45,10,5\n", "auto", "line 5: timestamp goes back in time"),
    ("m.jsonl", MC_ROW + "{oops\n", "auto", "line 2: invalid JSON"),
    ("m.jsonl", MC_ROW + "\n[1, 2]\n", "auto", "line 3: expected an object"),
    ("m.jsonl", MC_ROW + '{"timestamp": 5, "output_length": 3}\n', "auto", "line 2: missing field 'input_length'"),
    ("m.jsonl", MC_ROW + '{"timestamp": "soon", "input_length": 1, "output_length": 3}\n', "auto",
     "line 2: timestamp 'soon' is not a number"),
    ("m.jsonl", MC_ROW + '{"timestamp": 5, "input_length": 1.5, "output_length": 3}\n', "auto",
     "line 2: input_length 1.5 is not a non-negative integer"),
    ("m.jsonl", MC_ROW + '{"timestamp": 5, "input_length": 1, "output_length": 3, "hash_ids": "x"}\n', "auto",
     "line 2: hash_ids must be a list of non-negative integers"),
    ("m.jsonl", '{"timestamp": 900, "input_length": 1, "output_length": 1}\n' + MC_ROW, "auto",
     "line 2: timestamp goes back in time"),
    ("m.jsonl", "\n\n", "mooncake", "trace is empty"),
])
def test_bad_traces_give_one_line_naming_file_and_line(tmp_path, name, text, fmt, expected):
    path = _write(tmp_path, name, text)
    with pytest.raises(BenchInputError) as exc:
        read_trace(path, fmt)
    message = _one_line(exc)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_missing_trace_file(tmp_path):
    with pytest.raises(BenchInputError) as exc:
        read_trace(tmp_path / "nope.csv")
    assert _one_line(exc) == f"{tmp_path / 'nope.csv'}: trace file not found"


# --- timing --------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=[AZURE, MOONCAKE], ids=["azure", "mooncake"])
def sample(request) -> pd.DataFrame:
    return read_trace(request.param)


def test_real_speed_replays_the_timestamps(sample):
    offsets, rows = trace_offsets(sample, 1.0, None, seed=0)
    np.testing.assert_array_equal(offsets, sample["timestamp_s"].to_numpy())
    np.testing.assert_array_equal(rows, np.arange(len(sample)))


def test_speedup_halves_the_span(sample):
    offsets, rows = trace_offsets(sample, 2.0, None, seed=0)
    assert offsets[-1] == pytest.approx(sample["timestamp_s"].iloc[-1] / 2)
    np.testing.assert_allclose(offsets * 2, sample["timestamp_s"])
    assert len(rows) == len(sample)


@pytest.mark.parametrize("factor", [0.5, 2.0, 3.3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rerating_hits_the_target_and_keeps_the_bursts(sample, factor, seed):
    rate = trace_rate(sample)
    target = factor * rate
    offsets, rows = trace_offsets(sample, 1.0, target, seed=seed)
    assert np.all(np.diff(offsets) >= 0)
    assert offsets[0] >= 0 and offsets[-1] < trace_period(sample)
    achieved = len(offsets) / trace_period(sample)
    assert achieved == pytest.approx(target, rel=0.05)
    # Gaps measured over the replay itself agree too (mean gap = span / (n - 1)).
    assert (len(offsets) - 1) / (offsets[-1] - offsets[0]) == pytest.approx(target, rel=0.05)
    own = _cv(sample["timestamp_s"].to_numpy())
    if factor <= 2:
        assert _cv(offsets) == pytest.approx(own, rel=0.2)
    # Superposing independent copies drifts toward Poisson (CV 1) as copies are added, but
    # a few copies of a bursty trace stay clearly bursty.
    assert _cv(offsets) > 1.1
    # Every replayed row is a real row; superposed copies reuse rows.
    assert rows.min() >= 0 and rows.max() < len(sample)
    if factor < 1:
        assert len(np.unique(rows)) == len(rows)
    else:
        assert np.bincount(rows, minlength=len(sample)).min() == int(factor)


def test_rerating_after_speedup_and_seeding(sample):
    rate = trace_rate(sample)
    a = trace_offsets(sample, 4.0, rate * 2, seed=5)
    b = trace_offsets(sample, 4.0, rate * 2, seed=5)
    c = trace_offsets(sample, 4.0, rate * 2, seed=6)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    # With a 4x speedup the trace already runs at 4x: reaching 2x means thinning to half.
    assert len(a[0]) == pytest.approx(len(sample) / 2, abs=1)
    assert a[0][-1] <= sample["timestamp_s"].iloc[-1] / 4


def test_rerating_a_trace_without_span_is_an_input_error(tmp_path):
    path = _write(tmp_path, "m.jsonl", MC_ROW + MC_ROW)
    frame = read_trace(path)
    with pytest.raises(BenchInputError) as exc:
        trace_offsets(frame, 1.0, 5.0, seed=0)
    assert _one_line(exc).startswith(f"{path}: load.trace.target_rate")


def test_build_schedule_from_a_trace(sample):
    rate = trace_rate(sample)
    load = Load.model_validate({"trace": {"file": "x", "speedup": 2, "target_rate": 2 * rate},
                                "max_requests": 250})
    schedule = build_schedule(load, seed=3, trace=sample)
    assert len(schedule) == 250
    assert schedule.item is not None and schedule.item.dtype == np.int64 and len(schedule.item) == 250
    assert schedule.offered_rate == pytest.approx(2 * rate, rel=0.01)
    (stage,) = schedule.stages
    assert stage.kind == "open" and stage.duration_s == pytest.approx(trace_period(sample) / 2)
    plain = build_schedule(Load.model_validate({"trace": {"file": "x"}}), seed=3, trace=sample)
    np.testing.assert_array_equal(plain.offsets, sample["timestamp_s"].to_numpy())
    np.testing.assert_array_equal(plain.item, np.arange(len(sample)))


# --- prompts -------------------------------------------------------------------------------


def test_trace_prompts_lengths_and_shared_prefixes():
    frame = pd.DataFrame({
        "timestamp_s": [0.0, 1.0, 2.0, 3.0, 4.0],
        "input_tokens": [20, 25, 7, 12, 12],
        "output_tokens": [3, 0, 9, 4, 4],
        "hash_ids": [[1, 2, 3], [1, 2, 4, 5], [1], None, None],
    })
    prompts = trace_prompts(frame, block_tokens=8, seed=0)
    words = [p.text.split() for p in prompts]
    assert [len(w) for w in words] == [20, 25, 7, 12, 12]
    assert [p.max_tokens for p in prompts] == [3, 1, 9, 4, 4]
    assert all(p.messages is None for p in prompts)
    assert words[0][:16] == words[1][:16]  # blocks 1 and 2 shared
    assert words[0][16:20] != words[1][16:20]  # block 3 vs block 4
    assert words[2] == words[0][:7]  # a partial first block
    assert words[3] != words[4] and words[3][0] == "3" and words[4][0] == "4"
    assert words[0] != words[3]
    again = trace_prompts(frame, block_tokens=8, seed=0)
    assert [p.text for p in again] == [p.text for p in prompts]
    other = trace_prompts(frame, block_tokens=8, seed=1)
    assert other[0].text != prompts[0].text


def test_trace_prompts_past_the_last_block_are_unique():
    frame = pd.DataFrame({"timestamp_s": [0.0, 1.0], "input_tokens": [12, 12], "output_tokens": [1, 1],
                          "hash_ids": [[7], [7]]})
    a, b = (p.text.split() for p in trace_prompts(frame, block_tokens=8, seed=0))
    assert a[:8] == b[:8] and a[8:] != b[8:]


def test_sample_prompts_have_the_trace_lengths():
    frame = read_trace(MOONCAKE)
    prompts = trace_prompts(frame, block_tokens=512, seed=0)
    assert [len(p.text.split()) for p in prompts] == frame["input_tokens"].tolist()
    assert [p.max_tokens for p in prompts] == frame["output_tokens"].tolist()


BURSTGPT = SAMPLES / "burstgpt_sample.csv"


def test_burstgpt_csv_is_detected_and_failed_rows_are_left_out_and_counted():
    frame = read_trace(BURSTGPT)  # auto: the header names Response tokens
    raw = pd.read_csv(BURSTGPT)
    served = raw[raw["Response tokens"] > 0]
    assert frame.attrs["left_out"] == 2 == len(raw) - len(served)
    assert frame["timestamp_s"].tolist() == (served["Timestamp"] - served["Timestamp"].iloc[0]).astype(float).tolist()
    assert frame["input_tokens"].tolist() == served["Request tokens"].tolist()
    assert frame["output_tokens"].tolist() == served["Response tokens"].tolist()
    assert read_trace(BURSTGPT, "burstgpt").equals(frame)


def test_burstgpt_bad_rows_are_one_line(tmp_path):
    head = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
    path = _write(tmp_path, "b.csv", head + "1,ChatGPT,10,5,15,API log\n2,ChatGPT,ten,5,15,API log\n")
    with pytest.raises(BenchInputError) as err:
        read_trace(path)
    assert _one_line(err) == f"{path}: line 3: Request tokens 'ten' is not a non-negative integer"
    path = _write(tmp_path, "c.csv", head + "1,ChatGPT,10,0,10,API log\n")
    with pytest.raises(BenchInputError, match="every logged request failed"):
        read_trace(path)
