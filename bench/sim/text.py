"""Deterministic, readable generated text and the token-count convention.

Tokenisation convention (the client's synthetic prompt generator relies on it):
one token = one whitespace-separated word.

- ``/v1/completions``: prompt_tokens = number of words in the prompt (a list of token ids
  counts its length).
- ``/v1/chat/completions``: prompt_tokens = words in all message contents + 4 per message
  (chat-template overhead).
- Each generated token is ``" word"`` (leading space), so a completion of N tokens is N
  words and ``usage.completion_tokens`` == number of tokens streamed.

Text comes from a corpus of simple English sentences generated once per server seed; a
choice reads it from an offset derived from (server seed, request seed or counter,
choice index), so output is deterministic, cheap (one list index per token) and readable.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from bench.sim.faults import mix, uniform

__all__ = [
    "CHAT_TEMPLATE_TOKENS_PER_MESSAGE", "CORPUS_TOKENS", "Corpus", "build_corpus", "choice_offset",
    "count_words", "draw_output_len", "logprob_of", "stable_hash",
]

CHAT_TEMPLATE_TOKENS_PER_MESSAGE = 4
CORPUS_TOKENS = 1 << 16

_DET = "the a this that every one some another each our their".split()
_ADJ = (
    "quiet bright small large old young green warm cold quick slow careful gentle "
    "distant simple clever happy busy calm heavy light narrow wide early late final "
    "curious silver golden hidden open steady patient brave honest sudden strange"
).split()
_NOUN = (
    "river garden window engine city teacher student farmer market village road bridge "
    "tower forest mountain valley ship harbor train station library letter story song "
    "painter doctor machine server request model kitchen table lamp door field morning "
    "evening winter summer cloud storm island castle friend neighbor child dog cat bird"
).split()
_VERB = (
    "watched crossed found built carried opened followed answered painted remembered "
    "visited described measured repaired noticed reached counted explained shared moved "
    "guarded cleaned loaded planted"
).split()
_ADV = "slowly quietly carefully often suddenly gladly early again together softly".split()
_PREP = "near under behind across beyond beside through toward after before".split()


def _sentence(rng: random.Random) -> list[str]:
    words = [rng.choice(_DET)]
    if rng.random() < 0.6:
        words.append(rng.choice(_ADJ))
    words += [rng.choice(_NOUN), rng.choice(_VERB), rng.choice(_DET)]
    if rng.random() < 0.5:
        words.append(rng.choice(_ADJ))
    words.append(rng.choice(_NOUN))
    if rng.random() < 0.5:
        words += [rng.choice(_PREP), rng.choice(_DET), rng.choice(_NOUN)]
    if rng.random() < 0.4:
        words.append(rng.choice(_ADV))
    words[0] = words[0].capitalize()
    words[-1] += "."
    return words


@dataclass(frozen=True)
class Corpus:
    """Generated tokens as str and as pre-encoded bytes (the hot path uses the bytes)."""

    words: tuple[str, ...]  # each with its leading space
    encoded: tuple[bytes, ...]

    def text(self, offset: int, count: int) -> str:
        n = len(self.words)
        return "".join(self.words[(offset + i) % n] for i in range(count))


def build_corpus(seed: int, size: int = CORPUS_TOKENS) -> Corpus:
    rng = random.Random(seed)
    words: list[str] = []
    while len(words) < size:
        words.extend(_sentence(rng))
    tokens = tuple(" " + w for w in words[:size])
    return Corpus(tokens, tuple(t.encode("ascii") for t in tokens))


def count_words(text: str) -> int:
    return len(text.split())


def stable_hash(text: str) -> int:
    """Process-independent hash of a string (Python's hash() is salted per process)."""
    h = 1469598103934665603
    for b in text.encode("utf-8", "surrogatepass")[:4096]:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h ^ len(text)


def choice_offset(server_seed: int, key: int, index: int) -> int:
    return mix(server_seed, key, index, 0x7E47) % CORPUS_TOKENS


def draw_output_len(dist: object, server_seed: int, key: int, index: int) -> int:
    """Natural-EOS length of one choice from the profile's `output_len` distribution."""
    kind = dist.dist  # type: ignore[attr-defined]
    lo, hi = dist.min, dist.max  # type: ignore[attr-defined]
    u1 = uniform(server_seed, key, index, 0x1E4)
    if kind == "fixed":
        value = dist.mean  # type: ignore[attr-defined]
    elif kind == "uniform":
        value = lo + math.floor(u1 * (hi - lo + 1))
    else:
        u2 = uniform(server_seed, key, index, 0x1E5)
        z = math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)
        mean, sigma = dist.mean, dist.sigma  # type: ignore[attr-defined]
        if kind == "normal":
            value = mean + sigma * z
        else:  # lognormal with the given mean: mu = ln(mean) - sigma^2 / 2
            value = math.exp(math.log(mean) - sigma * sigma / 2.0 + sigma * z)
    return int(min(hi, max(lo, round(value))))


def logprob_of(server_seed: int, key: int, index: int, position: int) -> float:
    """A plausible log-probability for a generated token (mostly confident)."""
    u = uniform(server_seed, key, index, position, 0x106)
    return -round(-math.log(1.0 - 0.9 * u) * 0.5, 6)
