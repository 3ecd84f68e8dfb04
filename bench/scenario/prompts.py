"""Prompts: inline lists, JSONL datasets, ShareGPT files and synthetic text, each a `Prompt`.

Synthetic prompts are words from a fixed vocabulary; on the built-in simulator one word is
one token. A fresh synthetic prompt is made for every draw, so none repeats within a run
(a repeat would be answered from the server's prefix cache). Dataset records whose user
text is empty or only whitespace are never sent: they are skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.errors import BenchInputError
from bench.scenario.schema import Fixed, LengthDist, LogNormal, Normal, Uniform

__all__ = [
    "SKIP_REASONS",
    "VOCAB",
    "VOCAB_ITEMS",
    "Messages",
    "Prompt",
    "PromptSet",
    "SyntheticPrompts",
    "TokenModel",
    "blank",
    "read_jsonl_prompts",
    "sample_lengths",
    "synthetic_text",
]


Messages = list[dict[str, str]]


VOCAB = (
    "the of and to in is was for on that with as by at from his her an were are which this "
    "be or had not but have one all their they there been has more when will would who so "
    "into time only some could new about two than first other after over may these then "
    "made its out most many years before through people back also any where such water long "
    "very world under state three year city house place group part number system program "
    "question during work play government run small home light large point hand high music "
    "model server token request latency stream batch memory cache engine queue river garden "
    "window mountain history science letter market island winter summer morning evening"
).split()


@dataclass(frozen=True, slots=True)
class Prompt:
    messages: Messages | None
    text: str | None
    max_tokens: int | None = None
    later_turns: tuple[Prompt, ...] = ()  # a dataset conversation's further user turns


@dataclass(frozen=True, slots=True)
class PromptSet:
    """A run's prompts and what reading their source left out.

    `prompts` lists dataset or inline prompts (empty for a synthetic source, whose prompts
    `synthetic` makes on demand); `records` is how many records the source had and
    `skipped` how many of them were left out, by reason (`SKIP_REASONS`)."""

    source: str  # inline | file | synthetic | trace
    prompts: list[Prompt]
    records: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    synthetic: SyntheticPrompts | None = None


@dataclass(frozen=True, slots=True)
class TokenModel:
    """Prompt tokens the server counts for a prompt of `words` words: overhead + per_word x words
    (measured by probing; on the built-in simulator a word is a token, plus the chat template)."""

    overhead: float = 0.0
    per_word: float = 1.0

    def words_for(self, tokens: int) -> int:
        return max(1, round((tokens - self.overhead) / self.per_word))


def blank(text: str) -> bool:
    """True for text that must never be sent as a prompt or user turn ("" or whitespace)."""
    return not text.strip()


def read_jsonl_prompts(path: Path) -> PromptSet:
    """A JSONL dataset; records whose prompt or a user message is empty or only whitespace
    are skipped and counted. BenchInputError (one line) on a malformed line, and when no
    record is usable."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise BenchInputError(f"{path}: cannot read dataset: {exc.strerror or exc}") from None
    parsed = [_jsonl_prompt(path, number, line) for number, line in enumerate(lines, 1) if line.strip()]
    if not parsed:
        raise BenchInputError(f"{path}: dataset is empty")
    prompts = [p for p in parsed if p is not None]
    if not prompts:
        raise BenchInputError(f"{path}: no usable prompt among {len(parsed)} records: every one has an empty "
                              "or whitespace-only prompt or user message")
    skipped = len(parsed) - len(prompts)
    return PromptSet("file", prompts, len(parsed), {"empty_text": skipped} if skipped else {})


def _jsonl_prompt(path: Path, number: int, line: bytes) -> Prompt | None:
    """The line's prompt; None when its text is blank (skipped, not an error)."""
    where = f"{path}: line {number}"
    try:
        item = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BenchInputError(f"{where}: invalid JSON: {exc}") from None
    if isinstance(item, str):
        return None if blank(item) else Prompt(messages=None, text=item)
    if isinstance(item, list):
        item = {"messages": item}
    if not isinstance(item, dict):
        raise BenchInputError(f"{where}: expected an object with 'messages' or 'prompt'")
    max_tokens = item.get("max_tokens", item.get("output_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise BenchInputError(f"{where}: max_tokens must be a positive integer")
    if "messages" in item:
        messages = _check_messages(where, item["messages"])
        blank_user = any(m["role"] == "user" and blank(m["content"]) for m in messages)
        if blank_user or all(blank(m["content"]) for m in messages):
            return None
        return Prompt(messages=messages, text=None, max_tokens=max_tokens)
    if isinstance(item.get("prompt"), str):
        return None if blank(item["prompt"]) else Prompt(messages=None, text=item["prompt"], max_tokens=max_tokens)
    raise BenchInputError(f"{where}: expected 'messages' (a list) or 'prompt' (a string)")


def _check_messages(where: str, messages: Any) -> Messages:
    ok = isinstance(messages, list) and messages and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in messages
    )
    if not ok:
        raise BenchInputError(f"{where}: messages must be a non-empty list of {{role, content}} strings")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


VOCAB_ITEMS = np.array(VOCAB, dtype=object)  # `take` then `tolist`: 4x faster than a list lookup per word


class SyntheticPrompts:
    """Synthetic prompt i, for any i >= 0, the same for a given seed wherever it is asked for.

    Lengths are drawn 1,024 prompts at a time and words 64 prompts at a time, each from a
    generator seeded by (seed, batch), so a prompt does not depend on which others were
    asked for (a worker process asks for its own share only) and no draw holds a request
    up for long; a prompt's text is joined only when asked for. Every prompt starts with
    its own index as its first word, so no two are alike; a conversation's later turns
    start with "i.t" (turn t of conversation i). Lengths are in words, converted from
    tokens with `token_model` when the server was probed.
    """

    def __init__(self, prompt_len: LengthDist, output_len: LengthDist | None, seed: int,
                 token_model: TokenModel | None = None) -> None:
        self._prompt_len = prompt_len
        self._output_len = output_len
        self._seed = seed
        self._token_model = token_model
        self._sizes: tuple[int, np.ndarray, np.ndarray | None] = (-1, np.zeros(0, np.int64), None)
        self._words: tuple[int, np.ndarray, np.ndarray] = (-1, np.zeros(1, np.int64), np.zeros(0, np.uint8))
        self._last: tuple[int, Prompt] | None = None  # the variants of a block ask for one prompt in turn

    def __getitem__(self, index: int) -> Prompt:
        if index < 0:
            raise IndexError(index)
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        batch, offset = divmod(index, _SIZES_BATCH)
        if self._sizes[0] != batch:
            rng = np.random.default_rng([self._seed, 0x5EED] if batch == 0 else [self._seed, 0x5EED, batch])
            self._sizes = (batch, *self._lengths(_SIZES_BATCH, rng))
        chunk, j = divmod(index, _WORDS_BATCH)
        if self._words[0] != chunk:
            first = offset - j
            words = self._sizes[1][first:first + _WORDS_BATCH]
            self._words = (chunk, *_pick(words, np.random.default_rng([self._seed, 0x5EED, 0x3D5, chunk])))
        outputs = self._sizes[2]
        prompt = _prompt(self._words[1], self._words[2], j, str(index),
                         int(outputs[offset]) if outputs is not None else None)
        self._last = (index, prompt)
        return prompt

    def later_turns(self, index: int, count: int) -> tuple[Prompt, ...]:
        """The `count` user turns that follow synthetic prompt `index` in a multi-turn chat."""
        rng = np.random.default_rng([self._seed, 0x5EED, 0x7E2, index])
        words, outputs = self._lengths(count, rng)
        bounds, picks = _pick(words, rng)
        return tuple(_prompt(bounds, picks, t, f"{index}.{t + 1}", int(outputs[t]) if outputs is not None else None)
                     for t in range(count))

    def _lengths(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        """Words (from the token lengths asked for) and output tokens of `count` prompts."""
        tokens = sample_lengths(self._prompt_len, count, rng)
        outputs = sample_lengths(self._output_len, count, rng) if self._output_len is not None else None
        if self._token_model is not None:
            return np.array([self._token_model.words_for(int(n)) for n in tokens], dtype=np.int64), outputs
        return np.maximum(tokens.astype(np.int64), 1), outputs


def _pick(words: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Vocabulary indices for prompts of `words` words: prompt j's are picks[bounds[j]:bounds[j + 1]]."""
    bounds = np.concatenate([[0], np.cumsum(words)])
    return bounds, rng.integers(len(VOCAB_ITEMS), size=int(bounds[-1]), dtype=np.uint8)


def _prompt(bounds: np.ndarray, picks: np.ndarray, j: int, label: str, max_tokens: int | None) -> Prompt:
    words = VOCAB_ITEMS.take(picks[bounds[j]:bounds[j + 1]]).tolist()
    words[0] = label
    return Prompt(messages=None, text=" ".join(words), max_tokens=max_tokens)


def synthetic_text(words: int, rng: np.random.Generator, first: str) -> str:
    """`words` words from the vocabulary, the first replaced by `first` (a label that keeps
    prompts distinct so prefix caches do not flatter TTFT)."""
    # a list, not a numpy str array: that would cut `first` to the longest word's width
    picked = VOCAB_ITEMS.take(rng.integers(len(VOCAB_ITEMS), size=max(1, words))).tolist()
    picked[0] = first
    return " ".join(picked)


def sample_lengths(dist: LengthDist, count: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(dist, Fixed):
        return np.full(count, dist.value, dtype=np.int64)
    if isinstance(dist, Uniform):
        return rng.integers(dist.min, dist.max + 1, size=count)
    if isinstance(dist, Normal):
        values = rng.normal(dist.mean, dist.std, size=count)
    elif isinstance(dist, LogNormal):
        mu = np.log(dist.mean) - dist.sigma**2 / 2  # so the mean in tokens is `mean`
        values = rng.lognormal(mu, dist.sigma, size=count)
    else:  # pragma: no cover - the schema admits nothing else
        raise TypeError(dist)
    upper = dist.max if dist.max is not None else np.inf
    return np.clip(np.rint(values), dist.min, upper).astype(np.int64)


# Why a dataset record was left out (keys of PromptSet.skipped, stored in run.json).
SKIP_REASONS = {
    "empty_text": "its user text is empty or only whitespace",
    "no_reply": "no assistant reply follows its first non-empty user turn",
    "malformed": "it is not a readable conversation",
}


_SIZES_BATCH = 1024  # prompt lengths drawn at a time (batch 0 seeded as the former fixed pool)


_WORDS_BATCH = 64  # prompts whose words are drawn at a time: ~0.2 ms at 250 words, not 3.5 ms
