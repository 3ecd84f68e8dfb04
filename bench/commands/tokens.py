"""Counting each answer's output tokens after a run (the scenario's `tokens:` section): with
the server's own /tokenize and/or a local tokenizer.json, from the text the records kept.

Runs once sending has ended and the run's records are closed, before the metrics are
derived: the counts go to `token_counts.parquet` (bench.store.token_counts) and the metrics
read them from there. Counting never adds load to the server while it is measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench import store
from bench.scenario.token_counts import TokenCounting
from bench.target.tokenize_client import open_tokenize
from bench.target.tokenizer_file import LocalTokenizer

__all__ = ["CountOutcome", "answer_texts", "count_output_tokens"]


@dataclass
class CountOutcome:
    """What the counting did: run notes, and why the run fails (None: it does not)."""

    notes: list[str] = field(default_factory=list)
    failure: str | None = None


@dataclass(frozen=True)
class AnswerTexts:
    """The texts to count, one per choice of an ok answer: `owner[i]` is the request of text i."""

    request_ids: np.ndarray  # int64, the requests counted
    owner: np.ndarray  # int64 index into request_ids, per text
    texts: list[str]
    models: list[str | None]


def answer_texts(raw: pd.DataFrame) -> AnswerTexts:
    """Each ok request's kept choice texts (`output_texts`), flattened."""
    rows = raw[(raw["status"] == "ok") & raw["output_texts"].notna()]
    owner: list[int] = []
    texts: list[str] = []
    models: list[str | None] = []
    for i, (choices, model) in enumerate(zip(rows["output_texts"], rows["model"], strict=True)):
        for text in choices:
            owner.append(i)
            texts.append(str(text))
            models.append(None if pd.isna(model) else str(model))
    return AnswerTexts(rows["request_id"].to_numpy(dtype=np.int64), np.array(owner, dtype=np.int64), texts, models)


async def count_output_tokens(run_dir: Path, settings: TokenCounting, tokenizer: LocalTokenizer | None,
                              base_url: str, api_key: str | None, model: str, timeout_s: float) -> CountOutcome:
    """Count the run's kept answer texts by every source the settings give and store the
    counts; RunFailed when they cannot be stored."""
    answers = answer_texts(store.read_raw_requests(run_dir))
    outcome = CountOutcome()
    frames: list[pd.DataFrame] = []
    if settings.server_tokenize is not False:
        counts = await _server_counts(answers, settings, base_url, api_key, model, timeout_s, outcome)
        if counts is not None:
            frames.append(_per_request(answers, counts, store.SOURCE_SERVER_TOKENIZE))
    if tokenizer is not None:
        frames.append(_per_request(answers, list(tokenizer.count(answers.texts)), store.SOURCE_TOKENIZER))
        outcome.notes.append(f"output tokens counted after the run with the local tokenizer {tokenizer.path} "
                             f"({answers.request_ids.size} answers)")
    if frames:
        store.write_token_counts(run_dir, pd.concat(frames, ignore_index=True))
    return outcome


async def _server_counts(answers: AnswerTexts, settings: TokenCounting, base_url: str, api_key: str | None,
                         model: str, timeout_s: float, outcome: CountOutcome) -> list[int | str] | None:
    """Each text's count from the server's /tokenize (an error message where it failed); None
    when the server has none (a note, or the run's failure when `server_tokenize: true`)."""
    session = await open_tokenize(base_url, api_key, model, timeout_s)
    if session is None:
        message = (f"tokens.server_tokenize: the server has no POST /tokenize that counts text "
                   f"(tried the vLLM/SGLang and llama.cpp shapes at {base_url})")
        if settings.server_tokenize is True:
            outcome.failure = message
        else:
            outcome.notes.append(message + "; output tokens were not counted by the server")
        return None
    try:
        counts = await session.count_all(answers.texts, answers.models)
    finally:
        await session.aclose()
    failed = [c for c in counts if isinstance(c, str)]
    note = (f"output tokens counted after the run with the server's POST /tokenize ({session.dialect} shape, "
            f"{answers.request_ids.size} answers)")
    if failed:
        note += f"; {len(failed)} of {len(counts)} texts could not be counted (first: {failed[0]})"
    outcome.notes.append(note)
    return counts


def _per_request(answers: AnswerTexts, counts: list[int | str], source: str) -> pd.DataFrame:
    """Choice counts summed per request; null for a request with a choice that failed."""
    values = np.array([c if isinstance(c, int) else np.nan for c in counts], dtype="float64")
    sums = np.zeros(answers.request_ids.size)
    np.add.at(sums, answers.owner, values)  # NaN (a failed choice) spreads to its request's sum
    return pd.DataFrame({"request_id": answers.request_ids, "source": source,
                         "count": pd.array(sums, dtype="Float64").astype("Int64")})
