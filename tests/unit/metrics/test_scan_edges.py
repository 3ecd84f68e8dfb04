"""scan's edges: tokens stamped before t=0 (even a bin or more before) count in the first bin of the token rate, known
token counts weigh their chunk, and a kind code outside CHUNK_KINDS never counts as a token,
even for a scan of every kind (whose rows are otherwise taken without a lookup)."""

from __future__ import annotations

import numpy as np

from bench.metrics import scan
from bench.records import CHUNK_KINDS, KIND_CONTENT, NO_TOKENS, ChunkBatch


def _batch(ids: list[int], t: list[float], kinds: list[int], tokens: list[int] | None = None) -> ChunkBatch:
    n = len(ids)
    return ChunkBatch(np.asarray(ids, np.int64), np.asarray(t, np.float64), np.asarray(kinds, np.int8),
                      np.asarray(tokens if tokens is not None else [NO_TOKENS] * n, np.int32), np.zeros(n, np.int32))


def test_a_token_before_t0_counts_in_the_first_bin_and_known_counts_weigh_their_chunk():
    batch = _batch([0, 0, 1], [-1.5, 0.2, 1.5], [KIND_CONTENT] * 3, [NO_TOKENS, 3, NO_TOKENS])
    rate = scan.token_rate([batch], 1.0)
    assert rate["t_s"].tolist() == [0.0, 1.0]
    assert rate["tokens_per_s"].tolist() == [4.0, 2.0]  # 1 + 3 tokens in 1 s; 1 token in the 0.5 s to the last


def test_a_kind_code_outside_chunk_kinds_is_no_token_for_a_scan_of_every_kind():
    unknown = len(CHUNK_KINDS)  # the first code no kind has
    batch = _batch([0, 0, 0], [0.1, 0.2, 0.4], [unknown, KIND_CONTENT, KIND_CONTENT])
    every = scan.scan(lambda: [batch], [0], kinds=CHUNK_KINDS)
    assert every.stats.loc[0, "first_token_s"] == 0.2 and every.stats.loc[0, "chunk_tokens"] == 2
    assert every.gaps.values.tolist() == [200.0]
    alone = _batch([5], [0.3], [unknown])
    assert scan.scan(lambda: [alone], [5], kinds=CHUNK_KINDS).stats.empty
