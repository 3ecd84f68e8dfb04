"""The streaming scan over stored batches, cut anywhere, against the plain pandas oracle.

Stores cut batches between records and inside them, interleave choices, send events out of
time order and, in a foreign layout, put one request's chunks in two places: the scan must
give the oracle's token statistics, ITL gaps (with their times) and token rate every time.
Written against mutants of bench/metrics/scan.py that survived tests/unit/metrics/test_metrics.py
(benchmarks/mutation.py); the survivors that cannot change any result are listed with their
reason in docs/mutation.md.
"""

from __future__ import annotations

import itertools

import numpy as np
import oracle
import pandas as pd
import pytest

from bench.metrics import scan
from bench.records import CHUNK_KINDS, ChunkBatch
from bench.store import frame_batch

KINDS = ["role", "content", "reasoning", "usage", "other", "tool_call", "function_call", "refusal"]


def chunk_frame(seed: int, requests: int = 12) -> pd.DataFrame:
    """Records in stored order (each request's events together), ids increasing with gaps."""
    rng = np.random.default_rng(seed)
    rows = []
    ids = np.cumsum(rng.integers(1, 4, requests)) + 2
    for rid in ids:
        n = int(rng.integers(0, 9))
        choices = int(rng.integers(1, 3))
        t = np.round(rng.uniform(0, 6, n), 3)
        if rng.random() < 0.5:
            t = np.sort(t)
        for i in range(n):
            kind = KINDS[int(rng.choice(8, p=[.1, .45, .1, .05, .05, .1, .05, .1]))]
            tokens = float(rng.integers(1, 5)) if rng.random() < 0.6 else np.nan
            rows.append((int(rid), float(t[i]), kind, tokens, int(rng.integers(0, choices))))
    return pd.DataFrame(rows, columns=["request_id", "t_s", "kind", "tokens", "choice"])


def cut(batch: ChunkBatch, at: list[int]) -> list[ChunkBatch]:
    edges = [0, *sorted(at), len(batch.request_id)]
    return [ChunkBatch(*(col[a:b] for col in batch)) for a, b in itertools.pairwise(edges)]


class Passes:
    """The batches of a stored file, counting how often the scan reads them: one pass when
    each request's chunks are in one place (whatever the cuts), two otherwise."""

    def __init__(self, parts: list[ChunkBatch]) -> None:
        self.parts = parts
        self.count = 0

    def __call__(self) -> list[ChunkBatch]:
        self.count += 1
        return self.parts


def expected_gaps(chunks: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    gaps = oracle.itl_gaps(chunks)
    return gaps[gaps["request_id"].isin(keep)].reset_index(drop=True)


def check(result: scan.ScanResult, chunks: pd.DataFrame, keep: np.ndarray) -> None:
    want = oracle.token_stats(chunks).sort_index()
    got = result.stats.sort_index()
    assert list(got.index) == list(want.index)
    np.testing.assert_array_equal(got["first_token_s"], want["first_token_s"])
    np.testing.assert_array_equal(got["last_token_s"], want["last_token_s"])
    np.testing.assert_array_equal(got["chunk_tokens"], want["chunk_tokens"])
    frame = result.gaps.frame()
    gaps = expected_gaps(chunks, keep)
    np.testing.assert_array_equal(frame["request_id"], gaps["request_id"])
    np.testing.assert_allclose(frame["t_s"], gaps["t_s"], rtol=0, atol=0)
    np.testing.assert_allclose(frame["itl_ms"], gaps["itl_ms"], rtol=1e-12)
    assert frame["request_id"].dtype == np.int32


@pytest.mark.parametrize("seed", range(6))
def test_any_cut_into_batches_gives_the_oracles_numbers(seed):
    chunks = chunk_frame(seed)
    whole = frame_batch(chunks)
    rng = np.random.default_rng(100 + seed)
    ids = chunks["request_id"].unique()
    for trial in range(8):
        at = sorted(rng.choice(np.arange(1, len(chunks)), size=int(rng.integers(1, 6)), replace=False).tolist())
        keep = ids if trial % 2 == 0 else np.sort(rng.choice(ids, size=len(ids) // 2, replace=False))
        parts = cut(whole, at)
        rows = len(chunks) if trial % 3 == 0 else None
        passes = Passes(parts)
        check(scan.scan(passes, keep, rows=rows, times=True), chunks, keep)
        assert passes.count == 1, at  # a request cut across batches is carried over, not read again


def test_empty_batches_and_a_batch_of_no_tokens_between_parts_of_a_request():
    chunks = pd.DataFrame({"request_id": [5, 5, 5, 5, 9, 9], "t_s": [0.1, 0.2, 0.3, 0.5, 0.1, 0.4],
                           "kind": ["content", "content", "role", "content", "content", "content"],
                           "tokens": [np.nan] * 6, "choice": [0] * 6})
    whole = frame_batch(chunks)
    parts = cut(whole, [0, 2, 2, 3, 5])  # an empty batch, a role-only batch, one request across four batches
    passes = Passes(parts)
    result = scan.scan(passes, [5, 9], times=True)
    check(result, chunks, np.array([5, 9]))
    assert passes.count == 1
    np.testing.assert_allclose(result.gaps.take([5]), [100.0, 300.0])  # the role chunk is no token


@pytest.mark.parametrize("seed", range(4))
def test_a_request_in_two_places_still_gives_the_oracles_numbers(seed):
    chunks = chunk_frame(seed, requests=6)
    ids = chunks["request_id"].unique()
    # move the first half of the first request with tokens to the end of the file
    first = chunks[chunks["kind"].isin(oracle.TOKEN_KINDS)]["request_id"].iloc[0]
    mine = chunks.index[chunks["request_id"] == first]
    moved = mine[: max(1, len(mine) // 2)]
    layout = pd.concat([chunks.drop(moved), chunks.loc[moved]], ignore_index=True)
    parts = cut(frame_batch(layout), [len(layout) // 2])
    passes = Passes(parts)
    check(scan.scan(passes, ids, rows=len(layout), times=True), chunks, ids)
    assert passes.count == 2  # the second pass reads each request's chunks sorted together
    check(scan.scan(lambda: parts, ids[::-1], times=True), chunks, ids)  # keep in any order


def test_take_selects_and_consume_hands_over_once():
    chunks = chunk_frame(7)
    ids = chunks["request_id"].unique()
    gaps = scan.scan_frame(chunks, ids, times=True).gaps
    want = expected_gaps(chunks, ids)
    some = ids[::3]
    np.testing.assert_allclose(gaps.take(some), want.loc[want["request_id"].isin(some), "itl_ms"], rtol=1e-12)
    np.testing.assert_allclose(gaps.take(list(ids)), want["itl_ms"], rtol=1e-12)  # not consumed by default
    part = gaps.take(some, consume=True)  # not every request: a copy, nothing consumed
    assert part.size == int(want["request_id"].isin(some).sum()) and gaps.values is not None
    values = gaps.values
    assert gaps.take(ids, consume=True) is values and gaps.values is None
    with pytest.raises(ValueError, match=r"^these ITL gaps were consumed by an earlier take\(consume=True\)$"):
        gaps.take(ids)
    with pytest.raises(ValueError, match=r"^a gap frame needs the gaps and their times: scan\(\.\.\., times=True\)$"):
        gaps.frame()


def test_a_gap_frame_needs_times():
    gaps = scan.scan_frame(chunk_frame(1), [1, 2, 3]).gaps
    assert gaps.times is None
    with pytest.raises(ValueError, match="times=True"):
        gaps.frame()


def test_request_ids_beyond_int32_keep_their_width():
    big = 2**40
    chunks = pd.DataFrame({"request_id": [big, big], "t_s": [0.0, 0.25], "kind": ["content"] * 2,
                           "tokens": [np.nan] * 2, "choice": [0, 0]})
    frame = scan.scan_frame(chunks, [big], times=True).gaps.frame()
    assert frame["request_id"].tolist() == [big] and frame["itl_ms"].tolist() == [250.0]
    empty = scan.scan_frame(chunks.iloc[:0], [], times=True).gaps.frame()
    assert len(empty) == 0 and empty["request_id"].dtype == np.int32


@pytest.mark.parametrize("bin_s", [0.5, 1.0, 2.5])
def test_token_rate_over_several_batches_matches_the_oracle(bin_s):
    chunks = chunk_frame(11, requests=20)
    whole = frame_batch(chunks)
    for at in ([5], [3, 40, 41], [len(chunks) // 2, len(chunks) - 1]):
        got = scan.token_rate(cut(whole, at), bin_s)
        pd.testing.assert_frame_equal(got, oracle.token_rate(chunks, bin_s))


def test_token_rate_when_a_later_batch_reaches_fewer_bins():
    chunks = pd.DataFrame({"request_id": [1, 1, 2, 2], "t_s": [0.5, 3.2, 0.2, 1.5],
                           "kind": ["content"] * 4, "tokens": [2, 1, np.nan, 3], "choice": [0] * 4})
    got = scan.token_rate(cut(frame_batch(chunks), [2]), 1.0)
    assert got["t_s"].tolist() == [0.0, 1.0, 2.0, 3.0]
    np.testing.assert_allclose(got["tokens_per_s"], [3.0, 3.0, 0.0, 1.0 / 0.2])
    assert scan.token_rate([], 1.0).empty


def test_token_rate_last_bin_is_never_divided_by_less_than_a_thousandth_of_a_bin():
    chunks = pd.DataFrame({"request_id": [1, 1], "t_s": [0.5, 2.0], "kind": ["content"] * 2,
                           "tokens": [1, 4], "choice": [0, 0]})
    got = scan.token_rate([frame_batch(chunks)], 1.0)
    np.testing.assert_allclose(got["tokens_per_s"], [1.0, 0.0, 4.0 / 1e-3])
    with pytest.raises(ValueError, match=r"^bin_s must be positive$"):
        scan.token_rate([frame_batch(chunks)], -1.0)


def test_column_types_also_when_nothing_is_a_token():
    chunks = chunk_frame(3)
    stats = scan.scan_frame(chunks, chunks["request_id"].unique()).stats
    assert stats.index.dtype == np.int64 and stats["chunk_tokens"].dtype == np.int64
    roles = chunks.assign(kind="role")
    empty = scan.scan_frame(roles, roles["request_id"].unique()).stats
    assert len(empty) == 0 and empty.index.dtype == np.int64
    assert empty["chunk_tokens"].dtype == np.int64 and empty["first_token_s"].dtype == np.float64


def test_gap_times_only_when_asked():
    batch = frame_batch(chunk_frame(4))
    assert scan.scan(lambda: [batch], [3, 4, 5]).gaps.times is None
    assert scan.scan(lambda: [batch], [3, 4, 5], times=True).gaps.times is not None


@pytest.mark.parametrize("seed", [0, 1])
def test_gap_blocks_are_the_floor_of_their_times_over_the_block(seed):
    chunks = chunk_frame(seed, requests=40)
    keep = np.arange(0, 40, 3)
    timed = scan.scan_frame(chunks, keep, times=True).gaps
    cut = [frame_batch(chunks.iloc[i:i + 97].reset_index(drop=True)) for i in range(0, len(chunks), 97)]  # several batches
    blocked = scan.scan(lambda: cut, keep, block_s=0.01).gaps
    assert blocked.times is None and blocked.blocks is not None and blocked.blocks.dtype == np.int32
    assert np.array_equal(blocked.values, timed.values)
    assert np.array_equal(blocked.blocks, np.floor(timed.times / 0.01))


@pytest.mark.parametrize("keep", [[9, 5], [5, 9, 7], [9, 7, 5]])
def test_keep_in_any_order(keep):
    rows = [(rid, 0.1 * k, "content", np.nan, 0) for rid in (5, 7, 9) for k in range(3)]
    chunks = pd.DataFrame(rows, columns=["request_id", "t_s", "kind", "tokens", "choice"])
    gaps = scan.scan_frame(chunks, keep, times=True).gaps.frame()
    assert sorted(set(gaps["request_id"])) == sorted(keep) and len(gaps) == 2 * len(keep)


def test_the_largest_int32_request_id_stays_int32():
    top = 2**31 - 1
    chunks = pd.DataFrame({"request_id": [top, top], "t_s": [0.0, 0.5], "kind": ["content"] * 2,
                           "tokens": [np.nan] * 2, "choice": [0, 0]})
    assert scan.scan_frame(chunks, [top], times=True).gaps.frame()["request_id"].dtype == np.int32


def test_token_rate_edges():
    early = pd.DataFrame({"request_id": [1, 1, 1], "t_s": [-0.2, 0.1, 0.4], "kind": ["content"] * 3,
                          "tokens": [np.nan] * 3, "choice": [0] * 3})
    got = scan.token_rate([frame_batch(early)])  # 1 s bins by default; a chunk before 0 counts in the first
    assert got["t_s"].tolist() == [0.0] and got["tokens_per_s"].tolist() == [pytest.approx(3 / 0.4)]
    role_first = [frame_batch(early.assign(kind="role")), frame_batch(early.assign(t_s=[1.2, 1.5, 2.5]))]
    got = scan.token_rate(role_first)  # a batch without tokens does not end the count
    assert got["t_s"].tolist() == [0.0, 1.0, 2.0]
    np.testing.assert_allclose(got["tokens_per_s"], [0.0, 2.0, 1 / 0.5])
    on_edge = scan.token_rate([frame_batch(early.assign(t_s=[0.5, 1.0, 4.0]))], 2.0)
    np.testing.assert_allclose(on_edge["tokens_per_s"], [1.0, 0.0, 1 / 2e-3])  # last bin: 1e-3 of a 2 s bin
    empty = scan.token_rate([frame_batch(early.assign(kind="role"))])
    assert list(empty.columns) == ["t_s", "tokens_per_s"] and len(empty) == 0
    with pytest.raises(ValueError, match=r"^bin_s must be positive$"):
        scan.token_rate([frame_batch(early)], 0.0)


def test_other_kinds_count_when_asked_in_a_frame_too():
    chunks = pd.DataFrame({"request_id": [1, 1, 1], "t_s": [0.1, 0.2, 0.4], "kind": ["role", "content", "content"],
                           "tokens": [np.nan] * 3, "choice": [0] * 3})
    default = scan.scan_frame(chunks, [1])
    with_role = scan.scan_frame(chunks, [1], kinds=["role", "content"])
    assert default.stats.loc[1, "first_token_s"] == 0.2 and with_role.stats.loc[1, "first_token_s"] == 0.1
    np.testing.assert_allclose(with_role.gaps.take([1]), [100.0, 200.0])


def test_an_unknown_kind_is_named_with_the_known_ones():
    with pytest.raises(ValueError) as err:
        scan.scan_frame(pd.DataFrame({"request_id": [1], "t_s": [0.1], "kind": ["content"], "tokens": [np.nan],
                                      "choice": [0]}), [1], kinds=["content", "bogus"])
    known = ", ".join(CHUNK_KINDS)
    assert str(err.value) == f"not a chunk kind: 'bogus' (one of {known})"
