"""Workload: the sequence of request bodies a run sends, deterministic given the seed.

Prompts come from `bench.scenario.prompts`; this module turns them into request bodies
(variants, shared prefixes, multi-turn conversations).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.scenario.prompts import VOCAB, Messages, Prompt, PromptSet, TokenModel
from bench.scenario.routing import model_split
from bench.scenario.schema import Scenario
from bench.scenario.sources import load_prompts
from bench.workload.bodies import MAX_TOKENS_FIELD, base_body, prompt_fields, tool_fields
from bench.workload.images import ImagePool, with_images
from bench.workload.turns import ModelPicker, tool_turn

__all__ = ["ConversationState", "RequestSpec", "Workload", "variant_bodies"]


@dataclass(frozen=True, slots=True)
class ConversationState:
    """Where a multi-turn chat stands: the history sent so far and the user turns to come."""

    history: tuple[dict[str, Any], ...]
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
    inputs: int | None = None  # embeddings: the inputs the body carries
    model: str = ""  # the body's model


# One drawn request before its body is built: prompt index, variant, block, later turns,
# model (None: the variant's).
_Draw = tuple[int, str, int, tuple[Prompt, ...] | None, str | None]


class Workload:
    """Hands out request specs in order; `order: random` draws dataset prompts with
    replacement, `cycle` takes them in turn. Synthetic prompts ignore `order`: draw i gets
    synthetic prompt i, made for it, so no synthetic prompt comes twice in a run; worker
    processes draw the same global sequence and keep their own share of it, so they never
    send the same one either.

    With variants, each drawn prompt becomes a block of one request per variant, in an
    order shuffled per block, so every variant sees the same prompts under the same load.
    With `conversation`, each drawn prompt opens a chat whose later turns are sent by the
    runner through `follow_up`, carrying the replies the server actually gave; a reply
    with tool calls (requests.tools) is answered by a turn of `tool` messages first.
    With `target.models`, each drawn prompt (its block and its conversation) goes to one
    model (`bench.workload.turns.ModelPicker`).
    """

    def __init__(self, scenario: Scenario, scenario_path: Path, model: str,
                 prompts: list[Prompt] | None = None, token_model: TokenModel | None = None) -> None:
        self._endpoint = scenario.target.endpoint
        self._batch = scenario.requests.batch if scenario.requests else 1
        self._bases = variant_bodies(scenario, model)
        # A variant's explicit max_tokens beats per-prompt output lengths: it is the point of it.
        self._pinned = {name: set(v.model_dump(exclude_unset=True)) for name, v in scenario.variants.items()}
        self._order = scenario.requests.order if scenario.requests else "cycle"
        self._rng = np.random.default_rng([scenario.seed, 0xC0FFEE])
        self._variant_rng = np.random.default_rng([scenario.seed, 0xB10C])
        self._models = ModelPicker(model_split(scenario.target.models), scenario.seed)
        self._think_rng = np.random.default_rng([scenario.seed, 0x7A1C])
        self.prompt_set = (PromptSet("trace", prompts, len(prompts)) if prompts is not None
                           else load_prompts(scenario, scenario_path, token_model))
        self.prompts = self.prompt_set.prompts
        self._synthetic = self.prompt_set.synthetic
        self._conversation = scenario.requests.conversation if scenario.requests else None
        self._prefixes = _shared_prefixes(scenario)
        images = scenario.requests.images if scenario.requests else None
        self._images = ImagePool(images, scenario.seed) if images is not None else None
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

    def follow_up(self, spec: RequestSpec, reply: str,
                  tool_calls: tuple[dict[str, Any], ...] = ()) -> tuple[RequestSpec, float] | None:
        """The next turn of a chat: the reply, then the next user turn; or, when the reply
        called tools, the tool results (a turn of its own, taking one from those left)."""
        state = spec.state
        if state is None or not state.upcoming:
            return None
        if tool_calls:
            assert self._conversation is not None
            history = tool_turn(state.history, reply, tool_calls, self._conversation.tool_result)
            new_state = ConversationState(history, state.upcoming[:-1])
            max_tokens = state.upcoming[0].max_tokens
        else:
            nxt, rest = state.upcoming[0], state.upcoming[1:]
            history = (*state.history, {"role": "assistant", "content": reply}, *_user_messages(nxt))
            new_state = ConversationState(history, rest)
            max_tokens = nxt.max_tokens
        body = self._body(list(history), max_tokens, spec.variant, model=spec.model or None)
        return (RequestSpec(spec.prompt_index, orjson.dumps(body), body.get("max_tokens"), body.get("n", 1),
                            spec.variant, spec.block, spec.conversation, spec.turn + 1, new_state,
                            model=body.get("model", "")),
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
        model = self._models.pick()
        return [(index, name, block, upcoming, model) for name in reversed(names)]  # popped from the end

    def spec_for(self, index: int, variant: str = "", block: int = -1,
                 upcoming: tuple[Prompt, ...] | None = (), model: str | None = None) -> RequestSpec:
        """The request for prompt `index`; `upcoming` None: a synthetic chat's later turns,
        made here (only for the requests this process sends); `model` None: the variant's."""
        if self._synthetic is not None:
            prompt = self._synthetic[index]
            if upcoming is None and self._conversation is not None:
                upcoming = self._synthetic.later_turns(index, self._conversation.turns - 1)
        else:
            prompt = self.prompts[index]
        upcoming = upcoming or ()
        messages = self._prefixed(_user_messages(prompt), block)
        if self._images is not None:  # chat only (the loader checks): the request's images join its user turn
            messages = with_images(messages, self._images.parts_for(block))
        text = prompt.text if not self._prefixes else None
        batch = self._batch_texts(index, prompt, block) if self._batch > 1 else None
        body = self._body(messages, prompt.max_tokens, variant, text, batch, model)
        state = ConversationState(tuple(messages), upcoming) if self._conversation is not None else None
        conversation = block if state is not None else -1
        limit = MAX_TOKENS_FIELD[self._endpoint]
        inputs = (len(batch) if batch else 1) if self._endpoint == "embeddings" else None
        return RequestSpec(index, orjson.dumps(body), body.get(limit) if limit else None, body.get("n", 1), variant,
                           block, conversation, 0, state, inputs, body.get("model", ""))

    def _body(self, messages: Messages, max_tokens: int | None, variant: str, text: str | None = None,
              batch: list[str] | None = None, model: str | None = None) -> dict[str, Any]:
        body = dict(self._bases[variant])
        if model is not None:
            body["model"] = model
        body.update(prompt_fields(self._endpoint, messages, text, batch))
        limit = MAX_TOKENS_FIELD[self._endpoint]
        if limit is not None and max_tokens is not None and "max_tokens" not in self._pinned.get(variant, ()):
            body[limit] = max_tokens
        return body

    def _batch_texts(self, index: int, first: Prompt, block: int) -> list[str]:
        """Embeddings: the inputs of the request drawn at `index`: its prompt, then the prompts
        after it in the dataset; synthetic prompts index * batch ... (index + 1) * batch - 1,
        made for this draw alone (no input comes twice in a run)."""
        size = self._batch
        if self._synthetic is not None:
            prompts = [self._synthetic[index * size + j] for j in range(size)]
        else:
            prompts = [first, *(self.prompts[(index + j) % len(self.prompts)] for j in range(1, size))]
        return [p.text if p.text is not None and not self._prefixes
                else _flatten(self._prefixed(_user_messages(p), block)) for p in prompts]

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
    vocab = np.array(VOCAB)
    prefixes = []
    for g in range(shared.groups):
        # exactly `tokens` words (one token each, by the synthetic prompts' convention); each
        # group's differs from the first word
        head = ["group", f"{g}:"] if shared.tokens > 1 else [f"group-{g}:"]
        prefixes.append(" ".join([*head, *vocab[rng.integers(len(vocab), size=shared.tokens - len(head))]]))
    return prefixes


def variant_bodies(scenario: Scenario, model: str) -> dict[str, dict[str, Any]]:
    """The request body template of each variant ("" when the scenario has none)."""
    endpoint = scenario.target.endpoint
    tools = tool_fields(scenario.requests)
    base = {**base_body(scenario.sampling.model_dump(exclude_none=True), model, endpoint), **tools}
    if not scenario.variants:
        return {"": base}
    bodies = {}
    for name, variant in scenario.variants.items():
        overrides = variant.model_dump(exclude_none=True, exclude_unset=True)
        merged = {**scenario.sampling.model_dump(exclude_none=True), **overrides}
        merged["extra_body"] = {**scenario.sampling.extra_body, **overrides.get("extra_body", {})}
        bodies[name] = {**base_body(merged, merged.pop("model", model), endpoint), **tools}
    return bodies


def _flatten(messages: Messages) -> str:
    return "\n".join(m["content"] for m in messages)


# --- prompt sources ---------------------------------------------------------------------


# --- synthetic prompts ------------------------------------------------------------------

