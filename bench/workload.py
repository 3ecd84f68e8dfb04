"""Workload: the sequence of request bodies a run sends, deterministic given the seed.

Prompts come from inline lists, a JSONL dataset, a ShareGPT file or a synthetic generator.
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
from bench.scenario import Fixed, LengthDist, LogNormal, Normal, Scenario, Uniform, resolve_path

Messages = list[dict[str, str]]

_VOCAB = (
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


# Why a dataset record was left out (keys of PromptSet.skipped, stored in run.json).
SKIP_REASONS = {
    "empty_text": "its user text is empty or only whitespace",
    "no_reply": "no assistant reply follows its first non-empty user turn",
    "malformed": "it is not a readable conversation",
}


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


@dataclass(frozen=True, slots=True)
class ConversationState:
    """Where a multi-turn chat stands: the history sent so far and the user turns to come."""

    history: tuple[dict[str, str], ...]
    upcoming: tuple[Prompt, ...]


@dataclass(frozen=True, slots=True)
class RequestSpec:
    prompt_index: int
    body: bytes
    max_tokens: int | None
    n: int = 1
    variant: str = ""
    block: int = -1  # requests of one block carry the same prompt, one per variant
    conversation: int = -1
    turn: int = 0
    state: ConversationState | None = None


# One drawn request before its body is built: prompt index, variant, block, later turns.
_Draw = tuple[int, str, int, tuple[Prompt, ...] | None]


class Workload:
    """Hands out request specs in order; `order: random` draws dataset prompts with
    replacement, `cycle` takes them in turn. Synthetic prompts ignore `order`: draw i gets
    synthetic prompt i, made for it, so no synthetic prompt comes twice in a run; worker
    processes draw the same global sequence and keep their own share of it, so they never
    send the same one either.

    With variants, each drawn prompt becomes a block of one request per variant, in an
    order shuffled per block, so every variant sees the same prompts under the same load.
    With `conversation`, each drawn prompt opens a chat whose later turns are sent by the
    runner through `follow_up`, carrying the replies the server actually gave.
    """

    def __init__(self, scenario: Scenario, scenario_path: Path, model: str,
                 prompts: list[Prompt] | None = None, token_model: TokenModel | None = None) -> None:
        self._endpoint = scenario.target.endpoint
        self._bases = variant_bodies(scenario, model)
        # A variant's explicit max_tokens beats per-prompt output lengths: it is the point of it.
        self._pinned = {name: set(v.model_dump(exclude_unset=True)) for name, v in scenario.variants.items()}
        self._order = scenario.requests.order if scenario.requests else "cycle"
        self._rng = np.random.default_rng([scenario.seed, 0xC0FFEE])
        self._variant_rng = np.random.default_rng([scenario.seed, 0xB10C])
        self._think_rng = np.random.default_rng([scenario.seed, 0x7A1C])
        self.prompt_set = (PromptSet("trace", prompts, len(prompts)) if prompts is not None
                           else load_prompts(scenario, scenario_path, token_model))
        self.prompts = self.prompt_set.prompts
        self._synthetic = self.prompt_set.synthetic
        self._conversation = scenario.requests.conversation if scenario.requests else None
        self._prefixes = _shared_prefixes(scenario)
        self.keep_text = self._conversation is not None
        self._next = 0
        self._queue: list[_Draw] = []

    @property
    def variants(self) -> list[str]:
        return list(self._bases)

    def next_spec(self, item: int | None = None) -> RequestSpec:
        """The next request; `item` picks a prompt directly (trace replay: one per row)."""
        return self.spec_for(*self._draw(item))

    def skip_spec(self, item: int | None = None) -> None:
        """Pass over the next request without building it (another worker process sends it):
        every generator stays in step with a single-process run."""
        self._draw(item)

    def _draw(self, item: int | None) -> _Draw:
        if not self._queue:
            self._queue = self._next_block(item)
        return self._queue.pop()

    def follow_up(self, spec: RequestSpec, reply: str) -> tuple[RequestSpec, float] | None:
        state = spec.state
        if state is None or not state.upcoming:
            return None
        nxt, rest = state.upcoming[0], state.upcoming[1:]
        history = (*state.history, {"role": "assistant", "content": reply}, *_user_messages(nxt))
        new_state = ConversationState(history, rest)
        body = self._body(list(history), nxt.max_tokens, spec.variant)
        return (RequestSpec(spec.prompt_index, orjson.dumps(body), body.get("max_tokens"), body.get("n", 1),
                            spec.variant, spec.block, spec.conversation, spec.turn + 1, new_state),
                self._think_time())

    def _next_block(self, item: int | None) -> list[_Draw]:
        if item is not None:
            index = item
        elif self._synthetic is not None:
            index = self._next  # a prompt of its own for every block
        elif self._order == "cycle":
            index = self._next % len(self.prompts)
        else:
            index = int(self._rng.integers(len(self.prompts)))
        block = self._next
        self._next += 1
        names = list(self._bases)
        if len(names) > 1:
            names = [names[i] for i in self._variant_rng.permutation(len(names))]
        upcoming = self._upcoming_turns(index)
        return [(index, name, block, upcoming) for name in reversed(names)]  # popped from the end

    def spec_for(self, index: int, variant: str = "", block: int = -1,
                 upcoming: tuple[Prompt, ...] | None = ()) -> RequestSpec:
        """The request for prompt `index`; `upcoming` None: a synthetic chat's later turns,
        made here (only for the requests this process sends)."""
        if self._synthetic is not None:
            prompt = self._synthetic[index]
            if upcoming is None and self._conversation is not None:
                upcoming = self._synthetic.later_turns(index, self._conversation.turns - 1)
        else:
            prompt = self.prompts[index]
        upcoming = upcoming or ()
        messages = self._prefixed(_user_messages(prompt), block)
        body = self._body(messages if self._endpoint == "chat" or prompt.text is None else None,
                          prompt.max_tokens, variant, text=prompt.text if self._endpoint != "chat" else None)
        state = ConversationState(tuple(messages), upcoming) if self._conversation is not None else None
        conversation = block if state is not None else -1
        return RequestSpec(index, orjson.dumps(body), body.get("max_tokens"), body.get("n", 1), variant, block,
                           conversation, 0, state)

    def _body(self, messages: list[dict[str, str]] | None, max_tokens: int | None, variant: str,
              text: str | None = None) -> dict[str, Any]:
        body = dict(self._bases[variant])
        if self._endpoint == "chat":
            body["messages"] = messages or []
        else:
            body["prompt"] = text if text is not None else _flatten(messages or [])
        if max_tokens is not None and "max_tokens" not in self._pinned.get(variant, ()):
            body["max_tokens"] = max_tokens
        return body

    def _prefixed(self, messages: Messages, block: int) -> Messages:
        if not self._prefixes:
            return messages
        prefix = self._prefixes[max(block, 0) % len(self._prefixes)]
        return [{"role": "system", "content": prefix}, *messages]

    def _upcoming_turns(self, index: int) -> tuple[Prompt, ...] | None:
        conv = self._conversation
        if conv is None:
            return ()
        if self._synthetic is not None:
            return None  # seeded by the index alone: made when the request is built
        own = self.prompts[index].later_turns
        if own:
            return own[: conv.turns - 1]
        picks = self._rng.integers(len(self.prompts), size=conv.turns - 1)
        return tuple(self.prompts[int(i)] for i in picks)

    def _think_time(self) -> float:
        assert self._conversation is not None
        think = self._conversation.think_time_s
        if think.dist == "uniform":
            return float(self._think_rng.uniform(think.min, max(think.min, think.max)))
        if think.dist == "exponential":
            return float(self._think_rng.exponential(think.mean)) if think.mean > 0 else 0.0
        return think.value


def _user_messages(prompt: Prompt) -> Messages:
    if prompt.messages is not None:
        return list(prompt.messages)
    return [{"role": "user", "content": prompt.text or ""}]


def _shared_prefixes(scenario: Scenario) -> list[str]:
    shared = scenario.requests.shared_prefix if scenario.requests else None
    if shared is None:
        return []
    rng = np.random.default_rng([scenario.seed, 0x9F1E])
    vocab = np.array(_VOCAB)
    return [f"group {g}: " + " ".join(vocab[rng.integers(len(vocab), size=max(shared.tokens - 2, 1))])
            for g in range(shared.groups)]


def variant_bodies(scenario: Scenario, model: str) -> dict[str, dict[str, Any]]:
    """The request body template of each variant ("" when the scenario has none)."""
    base = _base_body(scenario.sampling.model_dump(exclude_none=True), model)
    if not scenario.variants:
        return {"": base}
    bodies = {}
    for name, variant in scenario.variants.items():
        overrides = variant.model_dump(exclude_none=True, exclude_unset=True)
        merged = {**scenario.sampling.model_dump(exclude_none=True), **overrides}
        merged["extra_body"] = {**scenario.sampling.extra_body, **overrides.get("extra_body", {})}
        bodies[name] = _base_body(merged, merged.pop("model", model))
    return bodies


def _base_body(sampling: dict[str, Any], model: str) -> dict[str, Any]:
    sampling = dict(sampling)
    extra = sampling.pop("extra_body", {}) or {}
    body: dict[str, Any] = {"model": model, **sampling}
    body.update(extra)
    body["stream"] = True
    options = dict(body.get("stream_options") or {})
    options["include_usage"] = True
    body["stream_options"] = options
    return body


def _flatten(messages: Messages) -> str:
    return "\n".join(m["content"] for m in messages)


# --- prompt sources ---------------------------------------------------------------------


def load_prompts(scenario: Scenario, scenario_path: Path, token_model: TokenModel | None = None) -> PromptSet:
    req = scenario.requests
    assert req is not None, "validated: requests is only absent with a trace"
    if req.inline is not None:
        # validated: scenario.Requests refuses an empty inline prompt (one line, exit 2)
        return PromptSet("inline", [_inline_prompt(item) for item in req.inline], len(req.inline))
    if req.file is not None:
        path = resolve_path(scenario_path, req.file)
        if req.format == "sharegpt" or (req.format == "auto" and path.suffix == ".json"):
            from bench.datasets import sharegpt_dataset

            return sharegpt_dataset(path)
        return read_jsonl_prompts(path)
    assert req.synthetic is not None
    seed = req.synthetic.seed if req.synthetic.seed is not None else scenario.seed
    synthetic = SyntheticPrompts(req.synthetic.prompt_tokens, req.synthetic.output_tokens, seed, token_model)
    return PromptSet("synthetic", [], synthetic=synthetic)


def blank(text: str) -> bool:
    """True for text that must never be sent as a prompt or user turn ("" or whitespace)."""
    return not text.strip()


def _inline_prompt(item: Any) -> Prompt:
    if isinstance(item, str):
        return Prompt(messages=None, text=item)
    return Prompt(messages=[m.model_dump() for m in item], text=None)


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


# --- synthetic prompts ------------------------------------------------------------------

_SIZES_BATCH = 1024  # prompt lengths drawn at a time (batch 0 seeded as the former fixed pool)
_WORDS_BATCH = 64  # prompts whose words are drawn at a time: ~0.2 ms at 250 words, not 3.5 ms
_VOCAB_ITEMS = np.array(_VOCAB, dtype=object)  # `take` then `tolist`: 4x faster than a list lookup per word


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
    return bounds, rng.integers(len(_VOCAB_ITEMS), size=int(bounds[-1]), dtype=np.uint8)


def _prompt(bounds: np.ndarray, picks: np.ndarray, j: int, label: str, max_tokens: int | None) -> Prompt:
    words = _VOCAB_ITEMS.take(picks[bounds[j]:bounds[j + 1]]).tolist()
    words[0] = label
    return Prompt(messages=None, text=" ".join(words), max_tokens=max_tokens)


def synthetic_text(words: int, rng: np.random.Generator, first: str) -> str:
    """`words` words from the vocabulary, the first replaced by `first` (a label that keeps
    prompts distinct so prefix caches do not flatter TTFT)."""
    # a list, not a numpy str array: that would cut `first` to the longest word's width
    picked = _VOCAB_ITEMS.take(rng.integers(len(_VOCAB_ITEMS), size=max(1, words))).tolist()
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
